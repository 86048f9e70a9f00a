"""Masking plans (SPEC §2, §4): which residues are masked, held out, or split.

A plan is drawn once per (sequence id, seed), written next to the results as `plan.json`,
and can be passed back in so that any run is repeated exactly. Each sequence's positions
come from its own generator seeded by (seed, crc32(id)), so a sequence's plan does not
depend on which other sequences are in the file or in what order.

- masked / diffusion: `masked` = round(fraction * n) residue positions (at least 1),
  `future` = a random half of them (the held-out "future" set F of layer skipping).
- autoregressive: `splits` = up to 4 split points t with 8 <= t <= n - 4; F = positions >= t.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plmdepth.fasta import Record
from plmdepth.results import atomic_write_text


@dataclass
class SequencePlan:
    id: str
    masked: list[int] = field(default_factory=list)
    future: list[int] = field(default_factory=list)
    splits: list[int] = field(default_factory=list)


@dataclass
class MaskingPlan:
    objective: str
    sequences: list[SequencePlan]
    params: dict = field(default_factory=dict)

    def for_id(self, seq_id: str) -> SequencePlan:
        return self._index()[seq_id]

    def _index(self) -> dict[str, SequencePlan]:
        cached = self.__dict__.get("_by_id")
        if cached is None or len(cached) != len(self.sequences):
            cached = self.__dict__["_by_id"] = {s.id: s for s in self.sequences}
        return cached

    def to_json(self) -> dict:
        seqs = []
        for s in self.sequences:
            row = {"id": s.id}
            if self.objective == "autoregressive":
                row["splits"] = s.splits
            else:
                row["masked"], row["future"] = s.masked, s.future
            seqs.append(row)
        return {"objective": self.objective, "params": self.params, "sequences": seqs}

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "MaskingPlan":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"plan {path} does not exist.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"plan {path} is not a JSON file ({err}); give the plan.json of an earlier run.") from None
        if not isinstance(data, dict) or data.get("objective") not in ("masked", "autoregressive", "diffusion"):
            raise ValueError(f"{path}: 'objective' must be masked, autoregressive or diffusion")
        if not isinstance(data.get("sequences"), list):
            raise ValueError(f"{path}: 'sequences' must be a list of {{id, masked, future, splits}} entries")
        seqs = []
        for i, s in enumerate(data["sequences"]):
            if not isinstance(s, dict) or not isinstance(s.get("id"), str):
                raise ValueError(f"{path}: sequence entry {i + 1} has no string 'id'")
            lists = {k: s.get(k, []) for k in ("masked", "future", "splits")}
            for k, v in lists.items():
                if not isinstance(v, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in v):
                    raise ValueError(f"{path}: '{k}' of sequence '{s['id']}' must be a list of whole numbers")
            seqs.append(SequencePlan(s["id"], list(lists["masked"]), list(lists["future"]), list(lists["splits"])))
        return cls(data["objective"], seqs, data.get("params", {}))

    def check(self, records: list[Record]) -> None:
        """Raise if the plan does not cover `records` or names positions outside them."""
        index = self._index()
        for rec in records:
            if rec.id not in index:
                raise ValueError(f"the masking plan has no entry for sequence '{rec.id}'")
            s, n = index[rec.id], len(rec.sequence)
            for p in s.masked + s.future + s.splits:
                if not 0 <= p < n:
                    raise ValueError(f"plan for '{rec.id}' names position {p}, outside 0..{n - 1}")
            if not set(s.future) <= set(s.masked):
                raise ValueError(f"plan for '{rec.id}': future positions must be a subset of masked ones")


def _rng(seed: int, seq_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(seq_id.encode())])


def make_plan(
    records: list[Record],
    objective: str,
    seed: int = 0,
    mask_fraction: float = 0.15,
    future_fraction: float = 0.5,
    n_splits: int = 4,
    min_split: int = 8,
    min_after_split: int = 4,
) -> MaskingPlan:
    """Draw a plan for `records` (see the module docstring for the rules)."""
    if not 0 < mask_fraction <= 1:
        raise ValueError(f"mask_fraction must be in (0, 1], not {mask_fraction}")
    if not 0 <= future_fraction <= 1:
        raise ValueError(f"future_fraction must be in [0, 1], not {future_fraction}")
    params = {"seed": seed}
    seqs = []
    for rec in records:
        rng, n = _rng(seed, rec.id), len(rec.sequence)
        if objective == "autoregressive":
            candidates = np.arange(min_split, n - min_after_split + 1)
            k = min(n_splits, len(candidates))
            splits = sorted(int(t) for t in rng.choice(candidates, size=k, replace=False)) if k else []
            seqs.append(SequencePlan(rec.id, splits=splits))
        elif objective in ("masked", "diffusion"):
            k = max(1, int(round(mask_fraction * n)))
            masked = rng.choice(n, size=k, replace=False)
            n_future = int(round(future_fraction * k))
            future = rng.choice(masked, size=n_future, replace=False) if n_future else []
            seqs.append(SequencePlan(rec.id, sorted(int(p) for p in masked), sorted(int(p) for p in future)))
        else:
            raise ValueError(f"objective must be masked, autoregressive or diffusion, not {objective!r}")
    if objective == "autoregressive":
        params.update(n_splits=n_splits, min_split=min_split, min_after_split=min_after_split)
    else:
        params.update(mask_fraction=mask_fraction, future_fraction=future_fraction)
    return MaskingPlan(objective, seqs, params)
