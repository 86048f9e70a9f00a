"""Intervals by resampling sequences: the bootstrap every test number of the book carries.

A measurement on sequences writes its per-sequence sums (`<table>_per_sequence.csv`: per
sequence and key, the sum of a value over the sequence's positions or units and their count).
A resample draws the sequences with replacement; its mean for a key is the sum of the drawn
sequences' sums over the sum of their counts, exactly how the measurement's own mean pools
them. `Resampled` holds those means for the point estimate (row 0, every sequence once) and
`n_resamples` resamples (rows 1..B), so any statistic written with numpy over the last axis
gives its point value and its replicates in one call.

The draws depend only on the sorted sequence ids and the seed: two runs on the same sequences
(two models, or a model and its untrained twins) are resampled together, so a difference
between them is a paired bootstrap; runs on other sequences get independent draws.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

N_RESAMPLES = 1000
LEVEL = 0.95
SEED = 0


@lru_cache(maxsize=64)
def _weights(ids: tuple, n_resamples: int, seed: int) -> np.ndarray:
    """(1 + n_resamples, n) multinomial counts: row 0 all ones (the point estimate), then one
    bootstrap draw of the n sequences per row."""
    n = len(ids)
    digest = hashlib.sha256("\n".join(ids).encode()).digest()
    rng = np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])
    draws = rng.multinomial(n, np.full(n, 1 / n), size=n_resamples) if n_resamples else np.zeros((0, n))
    return np.vstack([np.ones((1, n)), draws])


def weights(ids, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> tuple[list, np.ndarray]:
    """The sorted ids and their resample weights (see `_weights`)."""
    ordered = tuple(sorted(map(str, ids)))
    return list(ordered), _weights(ordered, n_resamples, seed)


@dataclass
class Resampled:
    """Means per key (columns `keys`) for the point estimate (row 0) and every resample."""

    keys: pd.Index
    values: np.ndarray  # (1 + B, K)

    @property
    def point(self) -> np.ndarray:
        return self.values[0]

    def column(self, key) -> np.ndarray:
        return self.values[:, self.keys.get_loc(key)]


def resampled_means(table: pd.DataFrame, keys, value: str, count: str, n_resamples: int = N_RESAMPLES,
                    seed: int = SEED) -> Resampled:
    """Pooled means of `value` (a per-sequence sum) over `count` per key, for the point estimate and
    every resample of the table's sequences."""
    keys = [keys] if isinstance(keys, str) else list(keys)
    sums = table.pivot_table(index="sequence", columns=keys, values=value, aggfunc="sum", fill_value=0.0)
    counts = table.pivot_table(index="sequence", columns=keys, values=count, aggfunc="sum", fill_value=0.0)
    ids, w = weights(sums.index, n_resamples, seed)
    columns = sums.columns
    sums, counts = sums.loc[ids, columns].to_numpy(float), counts.loc[ids, columns].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return Resampled(columns, (w @ sums) / (w @ counts))


def interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of the replicates; NaN when none is finite."""
    finite = np.asarray(replicates, float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def estimate(values: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """(point, low, high) from a statistic computed on a `Resampled` (row 0 the point)."""
    values = np.asarray(values, float)
    low, high = interval(values[1:], level)
    return float(values[0]), low, high


def side(low: float, high: float, threshold: float, below: bool, inclusive: bool = False) -> str:
    """Where an interval lies against a threshold, the paper's side being below it (`below`) or above:
    "agrees" when all of it lies on the paper's side, "disagrees" when all of it lies on the other,
    "inconclusive" when it spans the threshold or is missing. `inclusive`: the threshold itself
    belongs to the paper's side (a test written "<=" or ">=")."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    if below:
        paper = high <= threshold if inclusive else high < threshold
        other = low > threshold if inclusive else low >= threshold
    else:
        paper = low >= threshold if inclusive else low > threshold
        other = high < threshold if inclusive else high <= threshold
    return "agrees" if paper else "disagrees" if other else "inconclusive"
