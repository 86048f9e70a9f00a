"""Results folders (SPEC §4): `results/<model-slug>/<measurement>.csv` + run.json + plan.json.

Files are written atomically (a temporary file in the same folder, then `os.replace`), so an
interrupted run never leaves a half-written CSV. `run.json` records what produced the
folder; `cached_run` says whether a folder already holds a run with the same parameters.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import pandas as pd

PACKAGES = ("plmdepth", "torch", "transformers", "numpy", "pandas")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, with the permissions an
    ordinary new file gets (mkstemp's own are owner-only, which would hide results from a team)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.8g"))


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = platform.python_version()
    return out


def cpu_kernels() -> dict[str, str]:
    """What decides the CPU arithmetic's last bits: the processor, the vector instructions torch's
    kernels use (`ATEN_CPU_CAPABILITY`) and the BLAS. Two machines that differ here may give float32
    results that differ in the last digit or two; on one machine, with these the same, runs give
    the same bytes."""
    import torch

    model = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor() or platform.machine())
    blas = next((line.strip(" -") for line in torch.__config__.show().splitlines()
                 if "Math Kernel Library" in line or "OpenBLAS" in line), "unknown")
    return {"processor": model, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "blas": blas}


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


@contextmanager
def folder_lock(folder: str | Path):
    """An exclusive lock (flock) on a results folder itself, held while the block runs; it leaves
    no file behind."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_run(folder: str | Path) -> dict | None:
    path = Path(folder) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_run(folder: str | Path, run: dict) -> None:
    atomic_write_text(Path(folder) / "run.json", json.dumps(run, indent=1, sort_keys=True, default=str) + "\n")


def cached_run(folder: str | Path, measurement: str, key: dict, outputs=None) -> bool:
    """True when `folder` holds the measurement's CSVs from a run whose `key` equals this one."""
    run = read_run(folder)
    if not run or not all((Path(folder) / f"{name}.csv").is_file() for name in (outputs or (measurement,))):
        return False
    return run.get("measurements", {}).get(measurement, {}).get("key") == json.loads(json.dumps(key, default=str))
