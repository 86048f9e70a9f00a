"""Stream sequences through a measurement in batches, with a resumable checkpoint.

A measurement is an *accumulator*: `add(rows)` takes one batch (indices into the record
list) and folds it into its state, `state_dict()` / `load_state_dict()` save and restore
that state, `result()` turns it into tables. `stream` feeds it length-sorted batches with a
progress bar. Given a `checkpoint` path and a `key` (what identifies the run), it saves the
state after every batch (atomically, at most every `every_s` seconds) and, when started
again with the same key, resumes after the last saved batch instead of recomputing the
finished sequences. The checkpoint is deleted when the run completes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from plmdepth.fasta import Record

CHECKPOINT_EVERY_S = 10.0


def length_sorted_batches(records: list[Record], batch_size: int) -> list[list[int]]:
    """Indices of `records` in batches of similar length (less padding)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    order = sorted(range(len(records)), key=lambda i: (len(records[i].sequence), i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _key_text(key) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def stream(accumulator, records: list[Record], batch_size: int, desc: str, progress: bool = True,
           checkpoint: str | Path | None = None, key=None, every_s: float | None = None):
    """Feed every batch to `accumulator`, resuming from `checkpoint` when its key matches."""
    batches = length_sorted_batches(records, batch_size)
    every_s = CHECKPOINT_EVERY_S if every_s is None else every_s
    done = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        saved = torch.load(checkpoint, weights_only=False)
        if saved.get("key") == _key_text(key) and saved.get("n_batches") == len(batches):
            accumulator.load_state_dict(saved["state"])
            done = saved["done"]
    last_save = time.monotonic()
    with tqdm(total=len(batches), initial=done, desc=desc, unit="batch", disable=not progress) as bar:
        for index in range(done, len(batches)):
            accumulator.add(batches[index])
            bar.update(1)
            now = time.monotonic()
            if checkpoint is not None and index + 1 < len(batches) and now - last_save >= every_s:
                _save(checkpoint, {"key": _key_text(key), "n_batches": len(batches), "done": index + 1,
                                   "state": accumulator.state_dict()})
                last_save = now
    if checkpoint is not None and Path(checkpoint).exists():
        os.unlink(checkpoint)
    return accumulator


def _save(path: str | Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
