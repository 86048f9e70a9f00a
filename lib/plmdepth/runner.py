"""Run a measurement on a model into `results/<model-slug>/`; returns that folder.

    request = RunRequest.build("logit_lens", "antiberty", "data/antibody_vh.fasta", n_sequences=200)
    folder = run(request)                       # or: measure("logit_lens", "antiberty", ..., n_sequences=200)
    tables = Results([folder]).tables("logit_lens")

The request (`plmdepth.requests`) holds the measurement, the model, its inputs (a FASTA file with
a masking plan, or the assays of a reference table) and the measurement's parameters. A folder
that already holds a run with the same key (model checksum, data checksums, plan, parameters, and
the digest of the code it depends on, `requests.code_digest`) is reused; otherwise the measurement
is computed (resumably) and its CSVs, `plan.json` and
`run.json` are written atomically. A model of the second environment (ESM C, ESM3) asked for
from the main one is run in .venv-esm (`second_env`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

from plmdepth import second_env
from plmdepth.model import ProteinLM
from plmdepth.models import ModelSpec, check_device, load_model
from plmdepth.models.device import computing_in
from plmdepth.plan import MaskingPlan
from plmdepth.probes.measurements import Measurement
from plmdepth.requests import RunRequest, code_digest, results_folder
from plmdepth.results import (DamagedResults, ResultsError, cached_run, cpu_kernels, damaged_tables, display_name,
                              folder_lock, package_versions, read_record, read_run, table_digest, write_csv,
                              write_run)


def curve_name(lm: ProteinLM, mask_fraction: float) -> str:
    """The model's name in tables and legends (with the masking ratio for diffusion models)."""
    return display_name(lm.info.name, lm.objective, mask_fraction)


def _entry(lm: ProteinLM, key: dict, config, prepared, tables: dict, wall: float) -> dict:
    """What run.json records of one measurement (`model_load_s`: the time this process took to load
    the model, 0 when an earlier measurement of the process had loaded it; absent for a model given)."""
    load = getattr(lm, "load_seconds", None)
    lm.load_seconds = 0.0 if load is not None else None  # a later measurement of this process reuses it
    return {"key": json.loads(json.dumps(key, default=str)), "config": asdict(config), **prepared.entry,
            "outputs": [f"{name}.csv" for name in tables], "wall_time_s": round(wall, 3),
            **({"model_load_s": round(load, 3)} if load is not None else {}), "device": str(lm.device),
            "torch_threads": torch.get_num_threads(),
            **({"cpu_kernels": cpu_kernels()} if lm.device.type == "cpu" else {}),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _save(folder: Path, lm: ProteinLM, argument: str, measurement: str, entry: dict, tables: dict,
          run_info: dict) -> None:
    """Write a measurement's CSVs and record it in run.json (kept: other measurements' entries).

    run.json is read and rewritten under a lock on the folder, so that two processes finishing two
    measurements of one model at once (a workflow's parallel jobs) both keep their entry."""
    with folder_lock(folder):
        previous = read_run(folder) or {}
        measurements = {**previous.get("measurements", {}), measurement: entry}
        for name, table in tables.items():
            write_csv(table, folder / f"{name}.csv")
        entry["tables"] = {f"{name}.csv": table_digest(folder / f"{name}.csv") for name in tables}
        write_run(folder, {**previous, "model": lm.info.__dict__, "model_argument": argument,
                           "block_weights": lm.block_weights(), **run_info, "versions": package_versions(),
                           "measurements": measurements})


def _plan_file(folder: Path, masking: MaskingPlan, plan_sha: str) -> str:
    """Where this run's plan goes: `plan.json`, unless it holds another plan (another measurement's,
    on other sequences), which stays; then `plan-<sha256 prefix>.json`. run.json names the file."""
    if not (folder / "plan.json").is_file():
        return "plan.json"
    try:
        same = MaskingPlan.load(folder / "plan.json").to_json() == masking.to_json()
    except (ValueError, KeyError, OSError):
        same = False
    return "plan.json" if same else f"plan-{plan_sha.removeprefix('sha256:')[:12]}.json"


def _run_in_second_env(request: RunRequest, progress: bool) -> Path:
    """`run(request)` in .venv-esm; the folder it wrote, checked to hold the measurement."""
    folder = second_env.run_request(request.to_json(), progress=progress)
    try:
        recorded = read_record(folder).measurements
    except ResultsError:
        recorded = {}
    if request.measurement not in recorded:
        raise RuntimeError(f"the run of '{request.model.argument}' in .venv-esm wrote no {request.measurement} to "
                           f"{folder}")
    return folder


# Set by the workflow (workflow/Snakefile) when it executes a chapter: every run must then be cached.
# A run is then found by what was asked of it (`_asked`, recorded in run.json as `request`) without
# loading the model: the workflow's measurement jobs made exactly these runs and rerun them when
# their parameters, data or code change. Without it, a cached run is found by its full key, which
# holds the weights' checksum and so needs the model loaded.
CACHED_ONLY = "PLMDEPTH_CACHED_ONLY"


def cached_only() -> bool:
    """Whether runs may only be read, not computed (a chapter run by the workflow: CACHED_ONLY is set)."""
    return bool(os.environ.get(CACHED_ONLY))


def _made_as_asked(folder: Path, measure: Measurement, asked: dict) -> bool:
    """Whether `folder` holds `measure`'s tables from a run asked for exactly `asked`; one sentence
    (`DamagedResults`) when it ran so but a table is missing or differs from what it wrote."""
    try:
        record = read_record(folder)
    except ResultsError:
        return False
    if not asked or record.entry(measure.name).get("request") != asked:
        return False
    damaged = damaged_tables(folder, record.entry(measure.name))
    if damaged:
        raise DamagedResults(folder, damaged[0], measure.name)
    return True


class ResultsMissing(RuntimeError):
    """A run a chapter asks for that the workflow did not make (with PLMDEPTH_CACHED_ONLY set)."""


class ResultsFolderError(ValueError):
    """A results folder that cannot be written, found before any work is done."""


def writable(folder: Path) -> None:
    """Say in one sentence, before any work, when results could not be written to `folder`:
    it (or a parent) is a file, or the nearest existing folder cannot be written. Creates nothing."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    why = None
    if not existing.is_dir():
        why = f"{existing} is a file"
    elif existing == folder:
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                pass
        except OSError as err:
            why = (err.strerror or str(err)).lower()
    elif not os.access(existing, os.W_OK | os.X_OK):
        why = f"{existing} is not writable"
    if why:
        raise ResultsFolderError(f"the results folder {folder} cannot be written ({why}); choose another with "
                                 "--out or make it writable.")


def run(request: RunRequest, lm: ProteinLM | None = None, force: bool = False, progress: bool = True,
        loaded: dict | None = None) -> Path:
    """Compute (or reuse) `request`; returns the results folder.

    `lm` is the request's model already loaded (or a `ProteinLM` built by hand, whose request has no
    spec); otherwise the model is loaded here, after the inputs are read and checked, or taken from
    `loaded` (models loaded by earlier requests of one process, by model, device and dtype: see
    `run_all`), where it is also kept."""
    measure = request.measure
    config = request.config()
    reading = cached_only()  # a chapter run by the workflow: it reads, on any machine
    if not reading:
        check_device(request.device)
        writable(Path(request.out))
    read = request.inputs.read(request.seed)  # the data are read (and so checked) before a model is loaded
    asked = request.asked(read)
    if reading:
        if lm is None and _made_as_asked(request.folder, measure, asked):
            return request.folder  # read without loading the model (see CACHED_ONLY)
        check_device(request.device)
        writable(Path(request.out))
    if lm is None and second_env.needed(request.model):
        return _run_in_second_env(request, progress)
    lm = lm if lm is not None else _load(request, loaded)
    argument = request.model.argument if request.model is not None else lm.info.name  # built by hand: no spec
    folder = results_folder(request.out, lm, request.mask_fraction)
    writable(folder)

    prepared = read.prepare(lm)
    key = {"model_checksum": lm.info.checksum, **prepared.key, "config": asdict(config), "dtype": request.dtype,
           "code": code_digest(request)}
    if not force and cached_run(folder, measure.name, key, measure.outputs):
        return folder
    if reading:
        raise ResultsMissing(f"{folder} holds no {measure.name} of {argument} with these parameters, and "
                             f"{CACHED_ONLY} is set (a chapter run by the workflow reads results, it does not "
                             "compute them): the workflow's jobs and the chapter's calls disagree.")

    started = time.perf_counter()
    with computing_in(request.dtype, lm.device):
        result = measure.compute(lm, *prepared.units, config, progress=progress,
                                 checkpoint=folder / f".{measure.name}.partial.pt", key=key)
    wall = time.perf_counter() - started
    tables = dict(zip(measure.outputs, result if isinstance(result, tuple) else (result,)))
    for table in tables.values():
        table.insert(0, "model", curve_name(lm, request.mask_fraction))
    run_info = prepared.run_info
    if prepared.plan is not None:
        run_info["plan"] = prepared.entry["plan"] = _plan_file(folder, prepared.plan, run_info["plan_sha256"])
        prepared.plan.save(folder / run_info["plan"])
    entry = {**_entry(lm, key, config, prepared, tables, wall), "request": asked}
    _save(folder, lm, argument, measure.name, entry, tables, run_info)
    return folder


def _load(request: RunRequest, loaded: dict | None) -> ProteinLM:
    """The request's model: from `loaded` when an earlier request of this process loaded it."""
    key = (request.model, str(request.device), str(request.dtype))
    if loaded is not None and key in loaded:
        return loaded[key]
    started = time.perf_counter()
    lm = load_model(request.model, device=request.device, dtype=request.dtype)
    lm.load_seconds = time.perf_counter() - started
    if loaded is not None:
        loaded.clear()  # one model in memory at a time
        loaded[key] = lm
    return lm


def run_all(requests: list[RunRequest], force: bool = False, progress: bool = True) -> list[Path]:
    """`run` every request in one process, each model loaded once for all the requests that use it
    (a workflow job: every measurement of one results folder). Finished runs are kept when a later
    one fails."""
    loaded: dict = {}
    return [run(request, force=force, progress=progress, loaded=loaded) for request in requests]


def measure(measurement: str, model: "str | ModelSpec | ProteinLM", data: str | Path, force: bool = False,
            progress: bool = True, **options) -> Path:
    """`run` for one call written out: `RunRequest.build(measurement, model, data, **options)`, with a
    loaded `model` used as it is."""
    lm = model if isinstance(model, ProteinLM) else None
    return run(RunRequest.build(measurement, model, data, **options), lm, force=force, progress=progress)
