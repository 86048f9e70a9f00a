"""Which sublayer carries a block's effect: its attention or its MLP skipped alone, in total and directly.

For every block s and part (the whole block, only its attention, only its MLP; layer skipping's
`part`), at every residue (the intervened and the measured positions are the same):

- ``total``: the part skipped and every later block recomputed (layer skipping in mode
  "current": the cascade through later blocks included);
- ``direct``: the part's update taken out of the last residual stream, nothing recomputed
  (mode "local", Csordás et al.'s local effect). Defined for pre-LN and parallel blocks, which
  carry each update additively to the output; post-LN models get the total effect only.

The output change is layer skipping's M3: max and mean over units of the largest L2 distance
between output probability vectors, and the mean KL(p ‖ p'). One table, `part_skipping.csv`
(per skipped block, part and effect), and its per-sequence sums for intervals by resampling
sequences (`part_skipping_per_sequence.csv`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from plmdepth.fasta import Record
from plmdepth.model import ProteinLM
from plmdepth.plan import MaskingPlan
from plmdepth.probes.layer_skipping import SkipConfig, layer_skipping

EFFECTS = {"total": "current", "direct": "local"}  # effect -> layer skipping's mode


@dataclass
class PartSkipConfig:
    """Parameters of a part-skipping run (written to run.json verbatim)."""

    vocab: str = "full"
    batch_size: int = 8
    max_rows: int = 64
    seed: int = 0


def runs(lm: ProteinLM) -> list[tuple[str, str]]:
    """(part, effect) pairs `lm` supports: every part where its sublayers are known (else the block
    alone); the direct effect where its blocks are pre-LN or parallel."""
    parts = ["block", "attention", "mlp"] if {"attention", "mlp"} <= set(lm.sublayers) else ["block"]
    additive = lm.sublayers.get("kind", lm.info.norm) in ("pre-LN", "parallel")
    return [(part, effect) for part in parts for effect in EFFECTS if effect == "total" or additive]


def part_skipping(lm: ProteinLM, records: list[Record], plan: MaskingPlan, config: PartSkipConfig | None = None,
                  progress: bool = True, checkpoint=None, key=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The `part_skipping.csv` table and its per-sequence sums (module docstring)."""
    config = config or PartSkipConfig()
    tables, per_sequence = [], []
    for part, effect in runs(lm):
        skip = SkipConfig(mode=EFFECTS[effect], vocab=config.vocab, batch_size=config.batch_size,
                          max_rows=config.max_rows, seed=config.seed, part=part)
        # one checkpoint per (part, effect), so that an interrupted run resumes the one it was in
        sub_checkpoint = None if checkpoint is None else Path(checkpoint).with_suffix(f".{part}-{effect}.pt")
        _, output, _, output_seq = layer_skipping(lm, records, plan, skip, progress=progress,
                                                  checkpoint=sub_checkpoint, key=key, per_sequence=True)
        for table in (output, output_seq):
            table["part"], table["effect"] = part, effect
        tables.append(output.drop(columns=["mode"]))
        per_sequence.append(output_seq)
    return pd.concat(tables, ignore_index=True), pd.concat(per_sequence, ignore_index=True)
