"""The measurements the runner knows, by name: what each takes, computes and writes.

A measurement is a function `compute(lm, units, [plan,] config, progress=, checkpoint=, key=)`
built on an accumulator streamed by `streaming.stream` (so every one resumes after an
interruption), a config dataclass written to run.json, and the CSV files it returns in order.
Measurements on sequences also write their per-sequence sums (`<table>_per_sequence.csv`):
what the book's intervals resample (`analysis.bootstrap`). Its `inputs` say what its units are:

- "sequences": records of a FASTA file, with a masking plan (SPEC M1-M4);
- "assays": the deep-mutational scans of a ProteinGym-style reference table (M5).

To add a measurement, write its module here in `probes/` and add one row to `MEASUREMENTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from plmdepth.probes import (contributions, layer_skipping, logit_lens, noise_floor, part_skipping, tuned_lens,
                             variant_effects)


@dataclass(frozen=True)
class Measurement:
    name: str
    config: type
    compute: Callable
    outputs: tuple[str, ...]
    inputs: str = "sequences"  # or "assays"


MEASUREMENTS: dict[str, Measurement] = {m.name: m for m in (
    Measurement("logit_lens", logit_lens.LogitLensConfig, partial(logit_lens.logit_lens, per_sequence=True),
                ("logit_lens", "logit_lens_per_sequence")),
    Measurement("layer_skipping", layer_skipping.SkipConfig, partial(layer_skipping.layer_skipping, per_sequence=True),
                ("skip_effect", "skip_output", "skip_effect_per_sequence", "skip_output_per_sequence")),
    Measurement("part_skipping", part_skipping.PartSkipConfig, part_skipping.part_skipping,
                ("part_skipping", "part_skipping_per_sequence")),
    Measurement("contributions", contributions.ContributionsConfig,
                partial(contributions.contributions, per_sequence=True), ("contributions", "contributions_per_sequence")),
    Measurement("tuned_lens", tuned_lens.TunedLensConfig, partial(tuned_lens.tuned_lens, per_sequence=True),
                ("tuned_lens", "tuned_lens_split", "tuned_lens_training", "tuned_lens_baselines",
                 "tuned_lens_per_sequence")),
    Measurement("noise_floor", noise_floor.NoiseFloorConfig, noise_floor.noise_floor, ("noise_floor",)),
    Measurement("variant_effects", variant_effects.VariantEffectsConfig, variant_effects.variant_effects,
                ("variant_effects", "variant_effects_by_depth", "variant_effects_replicates"), inputs="assays"),
)}


def measurement(name: str) -> Measurement:
    """The measurement called `name` (dashes or underscores), or one sentence listing them."""
    key = name.replace("-", "_")
    if key not in MEASUREMENTS:
        raise ValueError(f"unknown measurement '{name}'; choose from {', '.join(MEASUREMENTS)}")
    return MEASUREMENTS[key]
