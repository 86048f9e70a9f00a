"""Results folders (SPEC §4): `results/<model-slug>/<measurement>.csv` + run.json + plan.json.

Files are written atomically (a temporary file in the same folder, then `os.replace`), so an
interrupted run never leaves a half-written CSV. `run.json` records what produced the
folder; `cached_run` says whether a folder already holds a run with the same parameters.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
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


def table_digest(path: str | Path) -> dict:
    """What run.json records of a table it wrote: its size in bytes and its sha256."""
    data = Path(path).read_bytes()
    return {"bytes": len(data), "sha256": "sha256:" + hashlib.sha256(data).hexdigest()}


def damaged_tables(folder: str | Path, entry: dict) -> list[str]:
    """The tables of a measurement's run.json `entry` that are missing from `folder` or differ from
    what the run wrote (size or sha256; runs from before the digests were recorded: presence only)."""
    digests = entry.get("tables") or {}
    bad = []
    for name in entry.get("outputs", []):
        path = Path(folder) / name
        if not path.is_file():
            bad.append(name)
        elif name in digests and (path.stat().st_size != digests[name]["bytes"]
                                  or table_digest(path) != digests[name]):
            bad.append(name)
    return bad


def discard_damaged(root: str | Path) -> list[Path]:
    """Delete every table under the results root `root` that differs from what its run wrote (size or
    sha256 in run.json), so that a workflow, seeing it missing, recomputes it; returns the paths."""
    removed = []
    for run_json in sorted(Path(root).glob("*/run.json")):
        try:
            measurements = json.loads(run_json.read_text()).get("measurements") or {}
        except ValueError:
            continue  # a run.json that is not JSON: its folder's readers say so
        for entry in measurements.values():
            for name in damaged_tables(run_json.parent, entry):
                path = run_json.parent / name
                if path.is_file():
                    path.unlink()
                    removed.append(path)
    return removed


def cached_run(folder: str | Path, measurement: str, key: dict, outputs=None) -> bool:
    """True when `folder` holds the measurement's CSVs, as its run wrote them, from a run whose `key`
    equals this one."""
    run = read_run(folder)
    if not run or not all((Path(folder) / f"{name}.csv").is_file() for name in (outputs or (measurement,))):
        return False
    entry = run.get("measurements", {}).get(measurement, {})
    return entry.get("key") == json.loads(json.dumps(key, default=str)) and not damaged_tables(folder, entry)


# ---- reading results folders ------------------------------------------------------------------

def display_name(name: str, objective: str, mask_fraction: float | None) -> str:
    """A model's one name in tables, legends and sentences: its name, with the masking ratio for a
    diffusion model ("DPLM-150M (mask 0.5)")."""
    return f"{name} (mask {mask_fraction:g})" if objective == "diffusion" and mask_fraction is not None else name


class ResultsError(ValueError):
    """A results folder that cannot be read as one (no run.json, or no record of a measurement)."""


class DamagedResults(ResultsError):
    """A table that is missing or differs from what its run wrote (run.json records its size and sha256)."""

    def __init__(self, folder: Path, table: str, measurement: str):
        self.folder, self.table, self.measurement = Path(folder), table, measurement
        state = "is missing" if not (Path(folder) / table).is_file() else "differs from what its run wrote"
        super().__init__(f"{Path(folder) / table} {state} (run.json records its size and sha256), so it is not "
                         f"read; recompute it: `python -m plmdepth book` (or `python -m plmdepth run "
                         f"{measurement.replace('_', '-')} ... --force` with the run's arguments)")


@dataclass(frozen=True)
class ModelIdentity:
    """Who a results folder's model is, by every name it goes by."""

    name: str  # the model's own name (run.json's model.name)
    slug: str  # the results folder's name without the masking ratio
    argument: str  # what it was asked for by (a registry name, hub id, folder or file)
    family: str
    objective: str
    blocks: int
    mask_fraction: float | None  # a diffusion model's masking ratio (its folder's `@mask<ratio>`), else None
    twin_of: str | None = None  # an untrained twin's trained model (`models.untrained`), else None
    init_seed: int | None = None  # the twin's initialisation seed

    @property
    def display(self) -> str:
        """The name in tables, legends and sentences (the `model` column of every table)."""
        return display_name(self.name, self.objective, self.mask_fraction)


@dataclass(frozen=True)
class RunRecord:
    """One results folder: its run.json, the model's identity and its tables (read when asked for)."""

    folder: Path
    run: dict
    _tables: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def model(self) -> ModelIdentity:
        info, name = self.run["model"], self.folder.name
        slug, _, ratio = name.partition("@mask")
        twin_of = info.get("twin_of")
        return ModelIdentity(info["name"], slug, self.run.get("model_argument", info["name"]), info.get("family", ""),
                             info.get("objective", ""), int(info.get("n_layers", 0)), float(ratio) if ratio else None,
                             display_name(twin_of, info.get("objective", ""), float(ratio) if ratio else None)
                             if twin_of else None, info.get("init_seed"))

    @property
    def measurements(self) -> dict[str, dict]:
        return self.run.get("measurements") or {}

    @property
    def block_weights(self) -> list[int] | None:
        """The weights of each block's matrices (multiply-adds per token), as the run counted them."""
        return self.run.get("block_weights")

    def entry(self, measurement: str) -> dict:
        """What run.json records of `measurement` (empty when the folder holds none)."""
        return self.measurements.get(measurement) or {}

    def outputs(self, measurement: str) -> list[str]:
        return [Path(name).stem for name in self.entry(measurement).get("outputs", [])]

    def has(self, measurement: str) -> bool:
        """Whether the folder records `measurement` and holds every table it wrote, as it wrote them."""
        return bool(self.outputs(measurement)) and not damaged_tables(self.folder, self.entry(measurement))

    def table(self, name: str) -> pd.DataFrame:
        """The folder's `<name>.csv`, checked against the size and sha256 its run recorded."""
        if name not in self._tables:
            if not (self.folder / f"{name}.csv").is_file():
                raise ResultsError(f"{self.folder} holds no {name}.csv")
            for measurement, entry in self.measurements.items():
                if f"{name}.csv" in (entry.get("outputs") or []):
                    self._check(measurement, [f"{name}.csv"])
            self._read(name)
        return self._tables[name]

    def tables(self, measurement: str) -> dict[str, pd.DataFrame]:
        """The tables `measurement` wrote, by name (each checked once against what its run recorded)."""
        if not self.outputs(measurement):
            raise ResultsError(f"{self.folder} holds no {measurement} (its run.json records "
                               f"{', '.join(self.measurements) or 'no measurement'})")
        unread = [name for name in self.outputs(measurement) if name not in self._tables]
        self._check(measurement, [f"{name}.csv" for name in unread])
        return {name: self._read(name) for name in self.outputs(measurement)}

    def _check(self, measurement: str, names: list[str]) -> None:
        """`DamagedResults` for the first of `names` (files of `measurement`) that is missing or damaged."""
        entry = self.entry(measurement)
        damaged = damaged_tables(self.folder, {**entry, "outputs": [n for n in entry.get("outputs", []) if n in names]})
        if damaged:
            raise DamagedResults(self.folder, damaged[0], measurement)

    def _read(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            self._tables[name] = pd.read_csv(self.folder / f"{name}.csv")
        return self._tables[name]


def read_record(folder: str | Path) -> RunRecord:
    """The results folder `folder`, or one sentence when it has no run.json."""
    run = read_run(folder)
    if run is None:
        raise ResultsError(f"no run.json in {folder}: it is not a results folder (or its run has not finished)")
    return RunRecord(Path(folder), run)


class Results:
    """The results folders of a chapter or a build, in the order given (each once).

        results = Results(folders)                 # or Results.under("results"): every folder there
        [r.model.display for r in results.of("logit_lens")]
        results.tables("logit_lens")["logit_lens"]  # one table over the folders
    """

    def __init__(self, folders):
        self.records = [read_record(f) for f in dict.fromkeys(Path(f) for f in folders)]

    @classmethod
    def under(cls, root: str | Path) -> "Results":
        """Every results folder directly under `root` that holds a run.json, in name order."""
        return cls(sorted(p.parent for p in Path(root).glob("*/run.json")))

    def __iter__(self):
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def folders(self) -> list[Path]:
        return [r.folder for r in self.records]

    def of(self, measurement: str) -> list[RunRecord]:
        """The folders whose run.json records `measurement` (reading one whose tables are missing or
        damaged raises `DamagedResults`: such a folder is never left out silently)."""
        return [r for r in self.records if r.outputs(measurement)]

    def tables(self, measurement: str) -> dict[str, pd.DataFrame]:
        """`measurement`'s tables concatenated over the folders that hold it, by name. When some folders
        hold untrained twins, every table gains `twin_of` (the trained model's name; empty for a trained
        model) and `init_seed`."""
        records = self.of(measurement)
        if not records:
            raise ResultsError(f"none of {', '.join(map(str, self.folders)) or 'no folders'} holds {measurement}")
        twins = any(r.model.twin_of for r in records)
        per_run = [{name: t.assign(twin_of=r.model.twin_of, init_seed=r.model.init_seed) if twins else t
                    for name, t in r.tables(measurement).items()} for r in records]
        return {name: pd.concat([t[name] for t in per_run], ignore_index=True) for name in per_run[0]}


def read_tables(folder: str | Path, measurement: str) -> dict[str, pd.DataFrame]:
    """The tables `measurement` wrote into the results folder `folder`, by name (`RunRecord.tables`)."""
    return read_record(folder).tables(measurement)
