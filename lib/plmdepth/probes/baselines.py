"""Trivial baselines for top-1 accuracy: what a predictor that never reads the model gets.

Both predictors are estimated on the training split's sequences and scored at the held-out
split's evaluated positions (those of `logit_lens.evaluated_positions`):

- "unigram": the most frequent residue over all residues of the training sequences;
- "position": the most frequent residue at that residue index (0-based) over the training
  sequences long enough to have it; beyond the longest training sequence, the unigram's residue.

Ties go to the letter first in alphabetical order. The predictors predict residue letters, so
they are the same whichever vocabulary the lens reads ("full" or "amino_acids"); a held-out
residue outside the 20 canonical amino acids counts as predicted when the baseline names that
letter, which the "amino_acids" lens cannot do (that takes such a letter being the most frequent).

`trivial_baselines` returns one row per predictor: `top1_accuracy`, its bootstrap 95% interval
over held-out sequences (resampled as `logit_lens.summarise` resamples them: position-weighted
means, the same seeded draws), `n_positions` and `n_sequences` (those with an evaluated position).
Models whose tokens hold several residues (byte pairs: ProtGPT2) are scored per token, not per
residue, so no residue baseline applies to them (`applies`): `model_positions` refuses them and
the tuned lens writes an empty table for them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from plmdepth.fasta import Record
from plmdepth.model import ProteinLM
from plmdepth.plan import MaskingPlan
from plmdepth.probes.logit_lens import evaluated_positions

PREDICTORS = ("unigram", "position")
COLUMNS = ["predictor", "top1_accuracy", "top1_accuracy_low", "top1_accuracy_high", "n_positions", "n_sequences"]


def most_frequent(counts: Counter) -> str:
    """The letter counted most often; of equally frequent ones, the first alphabetically."""
    return min(counts, key=lambda letter: (-counts[letter], letter))


def predictors(train: Sequence[str]) -> tuple[str, list[str]]:
    """The unigram's residue and, per residue index up to the longest training sequence, the
    position predictor's residue."""
    unigram = most_frequent(Counter("".join(train)))
    longest = max(map(len, train))
    by_position = [most_frequent(Counter(s[i] for s in train if i < len(s))) for i in range(longest)]
    return unigram, by_position


def applies(lm: ProteinLM) -> bool:
    """Whether the model's top-1 accuracy is per residue (not per multi-residue token)."""
    return lm.alphabet.one_residue_per_token


def model_positions(lm: ProteinLM, plan: MaskingPlan) -> Callable[[Record], list[int]]:
    """`positions(record)`: the residue indices the lenses are scored at, found as the measurement
    finds them (the record tokenized with its plan, `evaluated_positions`, the residue each
    evaluated token is scored against: masked residues, or every next residue the model predicts)."""
    if not applies(lm):
        raise ValueError("this model's tokens hold several residues each: its top-1 accuracy is per token, "
                         "and a residue baseline does not apply")

    def positions(record: Record) -> list[int]:
        plans = [plan.for_id(record.id)]
        masked = [plans[0].masked] if lm.objective != "autoregressive" else None
        batch = lm.tokenize([record.id], [record.sequence], masked=masked)
        return batch.target_index[evaluated_positions(lm, batch, plans)].tolist()

    return positions


def trivial_baselines(train_records: Sequence[Record], held_out_records: Sequence[Record],
                      positions: Callable[[Record], Sequence[int]], n_bootstrap: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """Top-1 accuracy of the "unigram" and "position" predictors (module docstring), fitted on
    `train_records` and scored at `positions(record)` of each of `held_out_records`."""
    unigram, by_position = predictors([r.sequence for r in train_records])
    correct = np.zeros((len(held_out_records), len(PREDICTORS)))
    counts = np.zeros(len(held_out_records))
    for row, record in enumerate(held_out_records):
        for i in positions(record):
            truth = record.sequence[i]
            correct[row] += [truth == unigram, truth == (by_position[i] if i < len(by_position) else unigram)]
            counts[row] += 1
    keep = counts > 0
    if not keep.any():
        raise ValueError("no held-out sequence has an evaluated position: there is no accuracy to compare with")
    correct, counts = correct[keep], counts[keep]
    frame = pd.DataFrame({"predictor": PREDICTORS, "top1_accuracy": correct.sum(0) / counts.sum()})
    rng = np.random.default_rng(seed)  # the draws of logit_lens.summarise with the same seed
    weights = rng.multinomial(len(counts), np.full(len(counts), 1 / len(counts)), size=n_bootstrap)
    boot = (weights @ correct) / (weights @ counts)[:, None] if n_bootstrap else np.full((1, 2), np.nan)
    frame["top1_accuracy_low"], frame["top1_accuracy_high"] = np.percentile(boot, [2.5, 97.5], axis=0)
    frame["n_positions"], frame["n_sequences"] = int(counts.sum()), int(keep.sum())
    return frame[COLUMNS]


def no_baselines() -> pd.DataFrame:
    """The table of a model no residue baseline applies to: the columns, no rows."""
    return pd.DataFrame(columns=COLUMNS)
