"""Stream sequences through a measurement in batches, with a resumable checkpoint.

A measurement is an *accumulator*: `add(rows)` takes one batch (indices into the record
list) and folds it into its state, `state_dict()` / `load_state_dict()` save and restore
that state (numpy arrays, numbers, strings, and dicts and lists of them), `result()` turns
it into tables. `stream` feeds it length-sorted batches with a progress bar. Given a
`checkpoint` path and a `key` (what identifies the run), it saves the state after every
batch (atomically, at most every `every_s` seconds) and, when started again with the same
key, resumes after the last saved batch instead of recomputing the finished sequences. The
checkpoint is deleted when the run completes.

The checkpoint lies in the results folder, which anyone who can write there could replace,
so it holds only tensors (the numpy arrays, converted) and plain values, and is read with
`torch.load(..., weights_only=True)`, which builds nothing else and runs no code. A checkpoint
that cannot be read that way, or that belongs to another run, is renamed to
`<name>.rejected`, one warning line says so and why, and the run starts from the beginning.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from plmdepth.fasta import Record

CHECKPOINT_EVERY_S = 10.0

log = logging.getLogger(__name__)


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
    done = _resume(accumulator, Path(checkpoint), _key_text(key), len(batches)) if checkpoint is not None else 0
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


def _resume(accumulator, path: Path, key: str, n_batches: int) -> int:
    """Load the state saved at `path` into `accumulator` and return how many batches it covers;
    0 when there is none, or when it is set aside (unreadable, or another run's)."""
    if not path.is_file():
        return 0
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or holding objects other than tensors
        return _reject(path, f"it could not be read safely ({type(err).__name__}: {_first_line(err)})")
    if not isinstance(saved, dict) or saved.get("key") != key:
        return _reject(path, "it belongs to another run (different model, data or settings)")
    if not (isinstance(saved.get("state"), dict) and saved.get("n_batches") == n_batches
            and type(saved.get("done")) is int and 0 < saved["done"] < n_batches):
        return _reject(path, "it does not hold this run's batches")
    fresh = accumulator.state_dict()
    try:
        accumulator.load_state_dict(_from_saved(saved["state"]))
    except Exception as err:
        accumulator.load_state_dict(fresh)
        return _reject(path, f"its state does not fit this measurement ({type(err).__name__}: {_first_line(err)})")
    return saved["done"]


def _reject(path: Path, why: str) -> int:
    """Rename `path` to `<name>.rejected`, say so in one line, and return 0 (start from the beginning)."""
    aside = path.with_name(path.name + ".rejected")
    try:
        os.replace(path, aside)
        moved = f"Set aside the checkpoint {path} as {aside.name}"
    except OSError:
        moved = f"Ignored the checkpoint {path} (it could not be renamed)"
    log.warning("%s because %s; starting this measurement from the beginning.", moved, why)
    return 0


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else "no message"


def _to_saved(value):
    """`value` with numpy arrays as tensors and numpy scalars as Python numbers (what weights_only reads)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _to_saved(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_saved(v) for v in value)
    return value


def _from_saved(value):
    """Inverse of `_to_saved`: tensors back to numpy arrays (same dtype and values)."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _from_saved(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_from_saved(v) for v in value)
    return value


def _save(path: str | Path, payload: dict) -> None:
    """Write `payload` to `path` through a temporary file and a rename, so `path` is never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(_to_saved(payload), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
