"""Run a measurement on a model and a FASTA file into `results/<model-slug>/`.

    run("logit_lens", "antiberty", "data/antibody_vh.fasta", out="results", n_sequences=200)

reads and validates the sequences, draws (or loads) the masking plan, reuses the cached CSV
when the folder already holds a run with the same key (model checksum, FASTA checksum,
plan, parameters), and otherwise computes it and writes `<measurement>.csv`, `plan.json`
and `run.json` atomically. A run on another model writes another folder.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from plmdepth import contributions as contributions_module
from plmdepth import layer_skipping as skipping_module
from plmdepth import logit_lens as lens_module
from plmdepth import variant_effects as variant_module
from plmdepth.fasta import check_residues, read_fasta
from plmdepth.plan import MaskingPlan, make_plan
from plmdepth.registry import REGISTRY, ModelLoadError, environment_of, load_model, model_slug
from plmdepth.results import cached_run, package_versions, read_run, write_csv, write_run

# measurement -> (config class, function, names of the CSV files it writes, in return order)
MEASUREMENTS = {
    "logit_lens": (lens_module.LogitLensConfig, lens_module.logit_lens, ("logit_lens",)),
    "layer_skipping": (skipping_module.SkipConfig, skipping_module.layer_skipping, ("skip_effect", "skip_output")),
    "contributions": (contributions_module.ContributionsConfig, contributions_module.contributions,
                      ("contributions",)),
}


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_run(folder: Path, lm, model: str, measurement: str, key: dict, config, tables: dict, wall: float,
             entry: dict, run: dict) -> None:
    """Write a measurement's CSVs and record it in run.json (kept: other measurements' entries)."""
    previous = read_run(folder) or {}
    measurements = previous.get("measurements", {})
    measurements[measurement] = {
        "key": json.loads(json.dumps(key, default=str)),
        "config": asdict(config),
        **entry,
        "outputs": [f"{name}.csv" for name in tables],
        "wall_time_s": round(wall, 3),
        "device": str(lm.device),
        "torch_threads": torch.get_num_threads(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for name, table in tables.items():
        write_csv(table, folder / f"{name}.csv")
    write_run(folder, {**previous, "model": lm.info.__dict__, "model_argument": str(model), **run,
                       "versions": package_versions(), "measurements": measurements})


def results_folder(out: str | Path, model: str, objective: str, mask_fraction: float) -> Path:
    """`out/<model-slug>/`; diffusion models get one folder per masking ratio (`…@mask0.5`)."""
    slug = model_slug(model)
    return Path(out) / (f"{slug}@mask{mask_fraction:g}" if objective == "diffusion" else slug)


def curve_name(lm, mask_fraction: float) -> str:
    """The model's name in tables and legends (with the masking ratio for diffusion models)."""
    return f"{lm.info.name} (mask {mask_fraction:g})" if lm.objective == "diffusion" else lm.info.name


# ------------------------------------------------------------- the second environment (.venv-esm)
# ESM C and ESM3 need EvolutionaryScale's `esm`, which cannot live beside fair-esm (same import name).
# Asked for from the main environment, a run goes to `.venv-esm/bin/python -m plmdepth ...` (the same
# command line, the same results folder), and its tables are read back from that folder.
ESM_ENV = Path(__file__).resolve().parents[2] / ".venv-esm"
# run() / run_variant_effects() arguments -> the command line's flags, per subcommand
CLI_FLAGS = {
    "run": {"fasta": "--fasta", "out": "--out", "plan": "--plan", "seed": "--seed", "n_sequences": "--n-sequences",
            "mask_fraction": "--mask-fraction", "vocab": "--vocab", "batch_size": "--batch-size", "mode": "--mode",
            "max_rows": "--max-rows", "unknown": "--unknown", "too_long": "--too-long", "device": "--device",
            "dtype": "--dtype", "force": "--force"},
    "variant-effects": {"reference": "--reference", "assays": "--assay", "max_variants": "--max-variants",
                        "scoring": "--scoring", "n_bootstrap": "--n-bootstrap", "batch_size": "--batch-size",
                        "out": "--out", "seed": "--seed", "device": "--device", "dtype": "--dtype", "force": "--force"},
}


def needs_esm_env(model: str) -> bool:
    """True when `model` loads only with EvolutionaryScale's `esm` and this environment lacks it."""
    from plmdepth.evolutionaryscale import package_status

    return environment_of(model) == "esm" and package_status() != "evolutionaryscale"


def run_in_esm_env(command: list[str], model: str, options: dict, progress: bool = True) -> None:
    """Run `python -m plmdepth <command> --model MODEL <options as flags>` in .venv-esm."""
    python = ESM_ENV / "bin" / "python"
    if not python.is_file():
        raise ModelLoadError(f"'{model}' runs in the second environment {ESM_ENV} (EvolutionaryScale's esm package), "
                             "which does not exist yet; create it with `make esm-env`.")
    flags = CLI_FLAGS[command[0]]
    argv = [str(python), "-m", "plmdepth", *command, "--model", str(model)]
    for key, value in options.items():
        if value is None or value is False:
            continue
        if key not in flags:
            raise ValueError(f"'{key}' cannot be passed to the run of '{model}' in .venv-esm: "
                             f"`plmdepth {command[0]}` has no flag for it.")
        if value is True:
            argv.append(flags[key])
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            argv += [flags[key], str(item)]
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=None if progress else subprocess.PIPE, text=True)
    if done.returncode != 0:
        lines = (done.stderr or "").strip().splitlines()
        why = lines[-1].removeprefix("error: ") if lines else "its messages are above"
        raise ModelLoadError(f"the run of '{model}' in .venv-esm failed ({why}).")


def objective_of(model: str) -> str:
    """The objective of a model run elsewhere (not loaded here): its registry entry's; weights files are masked."""
    return REGISTRY[model].objective if model in REGISTRY else "masked"


def run(
    measurement: str,
    model: str,
    fasta: str | Path,
    out: str | Path = "results",
    plan: str | Path | None = None,
    seed: int = 0,
    n_sequences: int | None = None,
    mask_fraction: float = 0.15,
    unknown: str = "error",
    too_long: str = "error",
    device: str = "cpu",
    dtype: str = "float32",
    force: bool = False,
    progress: bool = True,
    lm=None,
    **params,
) -> dict[str, pd.DataFrame]:
    """Compute (or reuse) one measurement; returns its tidy tables keyed by CSV name.

    The results go to `results_folder(out, model, ...)`; pass `lm` to reuse a loaded model. A model
    of the second environment (ESM C, ESM3) asked for from the main one is run in .venv-esm.
    """
    if measurement not in MEASUREMENTS:
        raise ValueError(f"unknown measurement '{measurement}'; choose from {', '.join(MEASUREMENTS)}")
    config_cls, measure, outputs = MEASUREMENTS[measurement]
    config = config_cls(seed=seed, **params)
    if lm is None and needs_esm_env(model):
        run_in_esm_env(["run", measurement.replace("_", "-")], model, progress=progress, options=dict(
            fasta=fasta, out=out, plan=plan, seed=seed, n_sequences=n_sequences, mask_fraction=mask_fraction,
            unknown=unknown, too_long=too_long, device=device, dtype=dtype, force=force, **params))
        folder = results_folder(out, model, objective_of(model), mask_fraction)
        return {name: pd.read_csv(folder / f"{name}.csv") for name in outputs}
    lm = lm if lm is not None else load_model(model, device=device, dtype=dtype)
    folder = results_folder(out, model, lm.objective, mask_fraction)

    records = read_fasta(fasta, limit=n_sequences)
    records = check_residues(records, lm.alphabet.residues, lm.max_residues, unknown=unknown, too_long=too_long)
    if lm.inputs_for is not None:  # e.g. a structure for every sequence: refuse before any work, not mid-run
        lm.inputs_for([r.id for r in records], [r.sequence for r in records])
    if plan is not None:
        masking = MaskingPlan.load(plan)
        if (masking.objective == "autoregressive") != (lm.objective == "autoregressive"):
            raise ValueError(f"plan {plan} is for a {masking.objective} model but {model} is {lm.objective}")
    else:
        masking = make_plan(records, lm.objective, seed=seed, mask_fraction=mask_fraction)
    masking.check(records)
    plan_json = masking.to_json()

    key = {
        "model_checksum": lm.info.checksum,
        "fasta_sha256": _sha256(Path(fasta)),
        "n_sequences": len(records),
        "plan_sha256": "sha256:" + hashlib.sha256(json.dumps(plan_json, sort_keys=True).encode()).hexdigest(),
        "config": asdict(config),
        "unknown": unknown,
        "too_long": too_long,
        "dtype": dtype,
    }
    if not force and cached_run(folder, measurement, key, outputs):
        return {name: pd.read_csv(folder / f"{name}.csv") for name in outputs}

    started = time.perf_counter()
    result = measure(lm, records, masking, config, progress=progress,
                     checkpoint=folder / f".{measurement}.partial.pt", key=key)
    wall = time.perf_counter() - started
    tables = dict(zip(outputs, result if isinstance(result, tuple) else (result,)))
    for table in tables.values():
        table.insert(0, "model", curve_name(lm, mask_fraction))

    masking.save(folder / "plan.json")
    save_run(folder, lm, model, measurement, key, config, tables, wall,
             entry={"fasta": str(fasta), "n_sequences": len(records), "seed": seed,
                    "plan_sha256": key["plan_sha256"]},
             run={"fasta": str(fasta), "fasta_sha256": key["fasta_sha256"], "n_sequences": len(records),
                  "plan": "plan.json", "plan_sha256": key["plan_sha256"],
                  "plan_given": str(plan) if plan is not None else None, "seed": seed,
                  "mask_fraction": mask_fraction})
    return tables


def run_variant_effects(
    model: str,
    reference: str | Path,
    out: str | Path = "results",
    assays: list[str] | None = None,
    max_variants: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "float32",
    force: bool = False,
    progress: bool = True,
    lm=None,
    **params,
) -> pd.DataFrame:
    """Compute (or reuse) M5 on the ProteinGym-style assays of `reference` into `out/<model-slug>/`."""
    config = variant_module.VariantEffectsConfig(seed=seed, **params)
    if lm is None and needs_esm_env(model):
        run_in_esm_env(["variant-effects"], model, progress=progress, options=dict(
            reference=reference, assays=assays, max_variants=max_variants, seed=seed, device=device, dtype=dtype,
            force=force, out=out, **params))
        return pd.read_csv(results_folder(out, model, objective_of(model), 0.15) / "variant_effects.csv")
    lm = lm if lm is not None else load_model(model, device=device, dtype=dtype)
    folder = results_folder(out, model, lm.objective, 0.15)
    data = variant_module.read_assays(reference, assays=assays, max_variants=max_variants, seed=seed)
    files = {a.id: variant_module.assay_checksum(a) for a in data}
    key = {"model_checksum": lm.info.checksum, "assays": files, "max_variants": max_variants,
           "config": asdict(config), "dtype": dtype}
    if not force and cached_run(folder, "variant_effects", key, ("variant_effects",)):
        return pd.read_csv(folder / "variant_effects.csv")
    started = time.perf_counter()
    table = variant_module.variant_effects(lm, data, config, progress=progress)
    wall = time.perf_counter() - started
    table.insert(0, "model", lm.info.name)
    save_run(folder, lm, model, "variant_effects", key, config, {"variant_effects": table}, wall,
             entry={"reference": str(reference), "assays": files, "max_variants": max_variants, "seed": seed,
                    "n_sequences": int(sum(len(a.variants) for a in data))},
             run={})
    return table
