"""Run a measurement on a model into `results/<model-slug>/`; returns that folder.

    folder = run("logit_lens", "antiberty", "data/antibody_vh.fasta", out="results", n_sequences=200)
    tables = read_tables(folder, "logit_lens")

`model` is a model argument, a resolved `ModelSpec` or a loaded `ProteinLM`. The data are a
FASTA file for the sequence measurements (read, validated, masked by a seeded plan or a given
plan.json) and a ProteinGym-style reference table for variant effects. A folder that already
holds a run with the same key (model checksum, data checksums, plan, parameters) is reused;
otherwise the measurement is computed (resumably) and its CSVs, `plan.json` and `run.json`
are written atomically. A model of the second environment (ESM C, ESM3) asked for from the
main one is run in .venv-esm (`second_env`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from plmdepth import second_env
from plmdepth.fasta import check_residues, read_fasta
from plmdepth.model import ProteinLM
from plmdepth.models import ModelSpec, check_device, load_model, resolve
from plmdepth.plan import MaskingPlan, make_plan
from plmdepth.probes.measurements import Measurement, measurement as find_measurement
from plmdepth.probes.variant_effects import assay_checksum, read_assays
from plmdepth.results import cached_run, cpu_kernels, folder_lock, package_versions, read_run, write_csv, write_run


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def results_folder(out: str | Path, model: "ModelSpec | ProteinLM", mask_fraction: float = 0.15) -> Path:
    """`out/<slug>/`; diffusion models get one folder per masking ratio (`…@mask0.5`)."""
    if isinstance(model, ProteinLM):
        slug, objective = (model.spec.slug if model.spec else model.info.name), model.objective
    else:
        slug, objective = model.slug, model.objective
    return Path(out) / (f"{slug}@mask{mask_fraction:g}" if objective == "diffusion" else slug)


def curve_name(lm: ProteinLM, mask_fraction: float) -> str:
    """The model's name in tables and legends (with the masking ratio for diffusion models)."""
    return f"{lm.info.name} (mask {mask_fraction:g})" if lm.objective == "diffusion" else lm.info.name


def read_tables(folder: str | Path, measurement: str) -> dict[str, pd.DataFrame]:
    """The CSV tables a measurement wrote into a results folder, keyed by name."""
    return {name: pd.read_csv(Path(folder) / f"{name}.csv") for name in find_measurement(measurement).outputs}


def _save(folder: Path, lm: ProteinLM, argument: str, measure: Measurement, key: dict, config,
          tables: dict, wall: float, entry: dict, run: dict) -> None:
    """Write a measurement's CSVs and record it in run.json (kept: other measurements' entries).

    run.json is read and rewritten under a lock on the folder, so that two processes finishing two
    measurements of one model at once (a workflow's parallel jobs) both keep their entry."""
    with folder_lock(folder):
        _record(folder, lm, argument, measure, key, config, tables, wall, entry, run)


def _record(folder, lm, argument, measure, key, config, tables, wall, entry, run) -> None:
    previous = read_run(folder) or {}
    measurements = previous.get("measurements", {})
    measurements[measure.name] = {
        "key": json.loads(json.dumps(key, default=str)),
        "config": asdict(config),
        **entry,
        "outputs": [f"{name}.csv" for name in tables],
        "wall_time_s": round(wall, 3),
        "device": str(lm.device),
        "torch_threads": torch.get_num_threads(),
        **({"cpu_kernels": cpu_kernels()} if lm.device.type == "cpu" else {}),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for name, table in tables.items():
        write_csv(table, folder / f"{name}.csv")
    write_run(folder, {**previous, "model": lm.info.__dict__, "model_argument": argument,
                       "block_weights": lm.block_weights(), **run, "versions": package_versions(),
                       "measurements": measurements})


def _sequences(lm: ProteinLM, fasta, records, plan, given, seed, n_sequences, mask_fraction, unknown, too_long):
    """The first `n_sequences` of `records` (read from `fasta`) checked for this model, their masking
    plan (`given`, loaded from `plan`, or a new one), and what identifies them."""
    records = records[:n_sequences] if n_sequences is not None else records
    records = check_residues(records, lm.alphabet.residues, lm.max_residues, unknown=unknown, too_long=too_long)
    if lm.inputs_for is not None:  # e.g. a structure for every sequence: refuse before any work, not mid-run
        lm.inputs_for([r.id for r in records], [r.sequence for r in records])
    if given is not None:
        masking = given
        if (masking.objective == "autoregressive") != (lm.objective == "autoregressive"):
            raise ValueError(f"plan {plan} is for a {masking.objective} model but {lm.info.name} is {lm.objective}")
    else:
        masking = make_plan(records, lm.objective, seed=seed, mask_fraction=mask_fraction)
    masking.check(records)
    plan_sha = "sha256:" + hashlib.sha256(json.dumps(masking.to_json(), sort_keys=True).encode()).hexdigest()
    key = {"fasta_sha256": _sha256(Path(fasta)), "n_sequences": len(records), "plan_sha256": plan_sha,
           "unknown": unknown, "too_long": too_long}
    entry = {"fasta": str(fasta), "n_sequences": len(records), "seed": seed, "plan_sha256": plan_sha}
    run = {"fasta": str(fasta), "fasta_sha256": key["fasta_sha256"], "n_sequences": len(records), "plan": "plan.json",
           "plan_sha256": plan_sha, "plan_given": str(plan) if plan is not None else None, "seed": seed,
           "mask_fraction": mask_fraction}
    return records, masking, key, entry, run


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


def _assays(reference, assays, max_variants, seed):
    """Assays of a reference table, and what identifies them."""
    data = read_assays(reference, assays=assays, max_variants=max_variants, seed=seed)
    files = {a.id: assay_checksum(a) for a in data}
    key = {"assays": files, "max_variants": max_variants}
    entry = {"reference": str(reference), "assays": files, "max_variants": max_variants, "seed": seed,
             "n_sequences": int(sum(len(a.variants) for a in data))}
    return data, key, entry


def _run_in_second_env(measure: Measurement, request: dict) -> Path:
    """`run` with these arguments in .venv-esm; the folder it wrote, checked to hold the measurement."""
    folder = second_env.run_request(json.loads(json.dumps(request, default=str)), progress=request["progress"])
    if measure.name not in (read_run(folder) or {}).get("measurements", {}):
        raise RuntimeError(f"the run of '{request['model']}' in .venv-esm wrote no {measure.name} to {folder}")
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


def _asked(measure: Measurement, spec: ModelSpec | None, data, plan, seed, n_sequences, mask_fraction, unknown,
           too_long, dtype, config, assays_key) -> dict:
    """What a run is asked for, in terms known before the model is loaded (JSON values)."""
    if spec is None:  # a ProteinLM built by hand: nothing to compare without it
        return {}
    inputs = ({"fasta_sha256": _sha256(Path(data)), "plan_sha256": _sha256(Path(plan)) if plan is not None else None,
               "n_sequences": n_sequences, "unknown": unknown, "too_long": too_long}
              if measure.inputs == "sequences" else {"reference": str(data), **assays_key})
    asked = {"measurement": measure.name, "model": spec.argument, "objective": spec.objective, "data": str(data),
             **inputs, "seed": seed, "mask_fraction": mask_fraction, "dtype": str(dtype), "config": asdict(config)}
    return json.loads(json.dumps(asked, default=str))


def _made_as_asked(folder: Path, measure: Measurement, asked: dict) -> bool:
    """Whether `folder` holds `measure`'s tables from a run asked for exactly `asked`."""
    entry = ((read_run(folder) or {}).get("measurements") or {}).get(measure.name) or {}
    return bool(asked) and entry.get("request") == asked and all(
        (folder / f"{name}.csv").is_file() for name in measure.outputs)


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


def run(
    measurement: str,
    model: "str | ModelSpec | ProteinLM",
    data: str | Path,
    out: str | Path = "results",
    plan: str | Path | None = None,
    seed: int = 0,
    n_sequences: int | None = None,
    mask_fraction: float = 0.15,
    unknown: str = "error",
    too_long: str = "error",
    assays: list[str] | None = None,
    max_variants: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    force: bool = False,
    progress: bool = True,
    **params,
) -> Path:
    """Compute (or reuse) one measurement of `model` on `data`; returns the results folder.

    `data` is a FASTA file, or for variant effects a ProteinGym-style reference table (`assays`
    picks assay ids, `max_variants` a seeded subset of each). `params` go to the measurement's
    config (e.g. `vocab`, `batch_size`, `mode`, `scoring`). `mask_fraction` is the share of masked
    residues of the plan, and names the results folder of a diffusion model.
    """
    arguments = {k: v for k, v in locals().items() if k != "params"} | params  # as given, for the second environment
    measure = find_measurement(measurement)
    config = measure.config(seed=seed, **params)
    if measure.inputs == "sequences" and (assays is not None or max_variants is not None):
        raise ValueError(f"{measure.name} runs on a FASTA file; assays and max_variants are for variant effects")
    if measure.inputs == "assays" and (plan is not None or n_sequences is not None):
        raise ValueError("variant effects run on the assays of a reference table; plan and n_sequences are for "
                         "the sequence measurements")
    reading = cached_only()  # a chapter run by the workflow: it reads, on any machine
    if not reading:
        check_device(device)
        writable(Path(out))
    # the data are read (and so checked) before a possibly large model is loaded
    if measure.inputs == "sequences":
        records, given_plan = read_fasta(data), (MaskingPlan.load(plan) if plan is not None else None)
    else:
        assay_data = _assays(data, assays, max_variants, seed)
    lm = model if isinstance(model, ProteinLM) else None
    spec = lm.spec if lm is not None else resolve(model)
    asked = _asked(measure, spec, data, plan, seed, n_sequences, mask_fraction, unknown, too_long, dtype, config,
                   assay_data[1] if measure.inputs == "assays" else None)
    if reading:
        if lm is None and _made_as_asked(results_folder(out, spec, mask_fraction), measure, asked):
            return results_folder(out, spec, mask_fraction)  # read without loading the model (see CACHED_ONLY)
        check_device(device)
        writable(Path(out))
    if lm is None and second_env.needed(spec):
        return _run_in_second_env(measure, {**arguments, "measurement": measure.name, "model": spec.argument})
    lm = lm if lm is not None else load_model(spec, device=device, dtype=dtype)
    argument = spec.argument if spec is not None else lm.info.name  # a ProteinLM built by hand has no spec
    folder = results_folder(out, lm, mask_fraction)
    writable(folder)

    if measure.inputs == "sequences":
        units, masking, data_key, entry, run_info = _sequences(lm, data, records, plan, given_plan, seed, n_sequences,
                                                               mask_fraction, unknown, too_long)
        args = (lm, units, masking, config)
    else:
        units, data_key, entry = assay_data
        masking, run_info, args = None, {}, (lm, units, config)
    key = {"model_checksum": lm.info.checksum, **data_key, "config": asdict(config), "dtype": dtype}
    if not force and cached_run(folder, measure.name, key, measure.outputs):
        return folder
    if reading:
        raise ResultsMissing(f"{folder} holds no {measure.name} of {argument} with these parameters, and "
                             f"{CACHED_ONLY} is set (a chapter run by the workflow reads results, it does not "
                             "compute them): the workflow's jobs and the chapter's calls disagree.")

    started = time.perf_counter()
    result = measure.compute(*args, progress=progress, checkpoint=folder / f".{measure.name}.partial.pt", key=key)
    wall = time.perf_counter() - started
    tables = dict(zip(measure.outputs, result if isinstance(result, tuple) else (result,)))
    label = curve_name(lm, mask_fraction) if measure.inputs == "sequences" else lm.info.name
    for table in tables.values():
        table.insert(0, "model", label)
    if masking is not None:
        run_info["plan"] = entry["plan"] = _plan_file(folder, masking, run_info["plan_sha256"])
        masking.save(folder / run_info["plan"])
    entry["request"] = asked
    _save(folder, lm, argument, measure, key, config, tables, wall, entry, run_info)
    return folder
