"""A run request: one measurement of one model on its inputs, as one typed value.

    request = RunRequest.build("logit_lens", "antiberty", "data/antibody_vh.fasta", n_sequences=200)
    request.folder              # results/antiberty
    request.to_json()           # what a workflow job or the second environment receives
    RunRequest.from_json(data)  # the same request again
    runner.run(request)         # computes (or reuses) it; returns the results folder

The inputs are of one of two kinds, each of which reads, checks, keys and records itself:

- `Sequences`: a FASTA file, the first `n_sequences` of it, and a masking plan (a given
  plan.json, or one drawn with the request's seed at `mask_fraction`): measurements M1-M4;
- `Assays`: the deep-mutational scans of a ProteinGym-style reference table (`assays` picks
  ids, `max_variants` a seeded subset of each): M5.

`params` are the measurement's own config fields (`vocab`, `mode`, `scoring`, `batch_size`, ...);
`effective()` fills in the rest, so two requests that differ only in defaults they spell out
are the same run.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import sys
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import ClassVar

from plmdepth import paths, weights
from plmdepth.fasta import check_residues, read_fasta
from plmdepth.model import ProteinLM
from plmdepth.models import ModelSpec, resolve
from plmdepth.models.load import loader_of
from plmdepth.plan import MaskingPlan, make_plan
from plmdepth.probes.measurements import Measurement, measurement as find_measurement
from plmdepth.probes.variant_effects import assay_checksum, read_assays

DEFAULT_MASK_FRACTION = 0.15


def sha256_file(path: str | Path) -> str:
    """"sha256:<hex>" of a file (read in chunks, by `weights.sha256_of`)."""
    return "sha256:" + weights.sha256_of(Path(path))


def folder_name(slug: str, objective: str, mask_fraction: float) -> str:
    """A results folder's name: the model's slug, with `@mask<ratio>` for a diffusion model."""
    return f"{slug}@mask{mask_fraction:g}" if objective == "diffusion" else slug


def results_folder(out: str | Path, model: "ModelSpec | ProteinLM",
                   mask_fraction: float = DEFAULT_MASK_FRACTION) -> Path:
    """`out/<slug>/`; diffusion models get one folder per masking ratio (`…@mask0.5`)."""
    if isinstance(model, ProteinLM):
        slug, objective = (model.spec.slug if model.spec else model.info.name), model.objective
    else:
        slug, objective = model.slug, model.objective
    return Path(out) / folder_name(slug, objective, mask_fraction)


@dataclass
class Prepared:
    """Inputs checked against a loaded model: the compute function's arguments after the model, what
    identifies them in the cache key, what run.json records of them, and the masking plan (if any)."""

    units: tuple
    key: dict
    entry: dict
    run_info: dict = field(default_factory=dict)
    plan: MaskingPlan | None = None


@dataclass(frozen=True)
class Sequences:
    """Sequences of a FASTA file with a masking plan."""

    fasta: str
    n_sequences: int | None = None
    plan: str | None = None
    mask_fraction: float = DEFAULT_MASK_FRACTION
    unknown: str = "error"
    too_long: str = "error"
    kind: ClassVar[str] = "sequences"

    @property
    def data(self) -> str:
        return self.fasta

    def read(self, seed: int) -> "_ReadSequences":
        """Read (and so check) the FASTA file and a given plan, before any model is loaded."""
        given = MaskingPlan.load(self.plan) if self.plan is not None else None
        return _ReadSequences(self, read_fasta(self.fasta), given, seed, sha256_file(self.fasta))

    def to_json(self) -> dict:
        return {"kind": self.kind, "fasta": self.fasta, "n_sequences": self.n_sequences, "plan": self.plan,
                "mask_fraction": self.mask_fraction, "unknown": self.unknown, "too_long": self.too_long}


@dataclass
class _ReadSequences:
    inputs: Sequences
    records: list
    given: MaskingPlan | None
    seed: int
    fasta_sha256: str  # of the file as it was read

    def asked(self) -> dict:
        """What identifies these inputs before the model is loaded."""
        s = self.inputs
        return {"fasta_sha256": self.fasta_sha256, "plan_sha256": sha256_file(s.plan) if s.plan else None,
                "n_sequences": s.n_sequences, "unknown": s.unknown, "too_long": s.too_long}

    def prepare(self, lm: ProteinLM) -> Prepared:
        """The first `n_sequences` records checked for `lm`, and their masking plan (the given one, or a
        new one drawn with the seed)."""
        s = self.inputs
        records = self.records[:s.n_sequences] if s.n_sequences is not None else self.records
        records = check_residues(records, lm.alphabet.residues, lm.max_residues, unknown=s.unknown,
                                 too_long=s.too_long)
        if lm.inputs_for is not None:  # e.g. a structure for every sequence: refuse before any work, not mid-run
            lm.inputs_for([r.id for r in records], [r.sequence for r in records])
        if self.given is not None:
            masking = self.given
            if (masking.objective == "autoregressive") != (lm.objective == "autoregressive"):
                raise ValueError(f"plan {s.plan} is for a {masking.objective} model but {lm.info.name} is "
                                 f"{lm.objective}")
        else:
            masking = make_plan(records, lm.objective, seed=self.seed, mask_fraction=s.mask_fraction)
        masking.check(records)
        plan_sha = "sha256:" + hashlib.sha256(json.dumps(masking.to_json(), sort_keys=True).encode()).hexdigest()
        fasta_sha = self.fasta_sha256
        key = {"fasta_sha256": fasta_sha, "n_sequences": len(records), "plan_sha256": plan_sha,
               "unknown": s.unknown, "too_long": s.too_long}
        entry = {"fasta": str(s.fasta), "n_sequences": len(records), "seed": self.seed, "plan_sha256": plan_sha}
        run_info = {"fasta": str(s.fasta), "fasta_sha256": fasta_sha, "n_sequences": len(records),
                    "plan": "plan.json", "plan_sha256": plan_sha, "plan_given": s.plan, "seed": self.seed,
                    "mask_fraction": s.mask_fraction}
        return Prepared((records, masking), key, entry, run_info, masking)


@dataclass(frozen=True)
class Assays:
    """The assays of a ProteinGym-style reference table (all of them, or the `assays` ids)."""

    reference: str
    assays: tuple[str, ...] | None = None
    max_variants: int | None = None
    kind: ClassVar[str] = "assays"
    mask_fraction: ClassVar[float] = DEFAULT_MASK_FRACTION  # names a diffusion model's folder

    @staticmethod
    def chosen(text) -> tuple[str, ...] | None:
        """A chapter's `assays` parameter as ids: None ("all", "" or None: every set) or the listed ids."""
        if text in (None, "", "all"):
            return None
        items = text.split(",") if isinstance(text, str) else text
        return tuple(a.strip() for a in items if a.strip())

    @property
    def data(self) -> str:
        return self.reference

    def read(self, seed: int) -> "_ReadAssays":
        assays = read_assays(self.reference, assays=list(self.assays) if self.assays else None,
                             max_variants=self.max_variants, seed=seed)
        return _ReadAssays(self, assays, seed, {a.id: assay_checksum(a) for a in assays})

    def to_json(self) -> dict:
        return {"kind": self.kind, "reference": self.reference,
                "assays": list(self.assays) if self.assays is not None else None, "max_variants": self.max_variants}


@dataclass
class _ReadAssays:
    inputs: Assays
    assays: list
    seed: int
    checksums: dict  # assay id -> checksum of its wild type and the variants used

    def asked(self) -> dict:
        return {"reference": str(self.inputs.reference), "assays": self.checksums,
                "max_variants": self.inputs.max_variants}

    def prepare(self, lm: ProteinLM) -> Prepared:
        files, n = self.checksums, int(sum(len(a.variants) for a in self.assays))
        key = {"assays": files, "max_variants": self.inputs.max_variants}
        entry = {"reference": str(self.inputs.reference), "assays": files, "max_variants": self.inputs.max_variants,
                 "seed": self.seed, "n_sequences": n}
        return Prepared((self.assays,), key, entry)


INPUTS = {Sequences.kind: Sequences, Assays.kind: Assays}


@dataclass(frozen=True)
class RunRequest:
    """One measurement of one model on its inputs: what `runner.run` computes, a workflow job runs and
    the second environment receives, as one value."""

    measurement: str
    model: ModelSpec | None  # None only for a ProteinLM built by hand (then given to `run` itself)
    inputs: Sequences | Assays
    params: tuple[tuple[str, object], ...] = ()  # the measurement's config fields asked for, by name
    seed: int = 0
    out: str = "results"
    device: str = "cpu"
    dtype: str = "float32"

    @classmethod
    def build(cls, measurement: str, model: "str | ModelSpec | ProteinLM", data: str | Path, *,
              out: str | Path = "results", seed: int = 0, device: str = "cpu", dtype: str = "float32",
              n_sequences: int | None = None, plan: str | Path | None = None,
              mask_fraction: float = DEFAULT_MASK_FRACTION, unknown: str = "error", too_long: str = "error",
              assays=None, max_variants: int | None = None, objective: str | None = None,
              **params) -> "RunRequest":
        """The request for `measurement` of `model` on `data` (a FASTA file, or for variant effects a
        reference table), checked: options of the other input kind, or config fields the measurement
        does not have, are refused in one sentence."""
        measure = find_measurement(measurement)
        if measure.inputs == "sequences":
            if assays is not None or max_variants is not None:
                raise ValueError(f"{measure.name} runs on a FASTA file; assays and max_variants are for variant "
                                 "effects")
            inputs = Sequences(str(data), n_sequences, str(plan) if plan is not None else None, mask_fraction,
                               unknown, too_long)
        else:
            if plan is not None or n_sequences is not None:
                raise ValueError("variant effects run on the assays of a reference table; plan and n_sequences are "
                                 "for the sequence measurements")
            inputs = Assays(str(data), Assays.chosen(assays), max_variants)
        if isinstance(model, ProteinLM):
            spec = model.spec
        elif isinstance(model, ModelSpec):
            spec = model
        else:
            spec = resolve(str(model), objective=objective)
        request = cls(measure.name, spec, inputs, tuple(sorted(params.items())), seed, str(out), device, dtype)
        request.config()  # an unknown config field fails here, before any work
        return request

    @property
    def measure(self) -> Measurement:
        return find_measurement(self.measurement)

    def config(self):
        """The measurement's config dataclass for this request (its seed is the request's)."""
        return self.measure.config(seed=self.seed, **dict(self.params))

    @property
    def mask_fraction(self) -> float:
        return self.inputs.mask_fraction

    @property
    def data(self) -> str:
        return self.inputs.data

    @property
    def folder(self) -> Path:
        if self.model is None:
            raise ValueError("a request for a model built by hand has no folder of its own; give the model")
        return results_folder(self.out, self.model, self.mask_fraction)

    def asked(self, read) -> dict:
        """What the run is asked for, in terms known before the model is loaded (JSON values): recorded
        in run.json as `request`, and how a chapter run by the workflow finds the run without loading
        the model."""
        if self.model is None:  # a ProteinLM built by hand: nothing to compare without it
            return {}
        asked = {"measurement": self.measurement, "model": self.model.argument, "objective": self.model.objective,
                 "data": str(self.data), **read.asked(), "seed": self.seed, "mask_fraction": self.mask_fraction,
                 "dtype": str(self.dtype), "config": asdict(self.config())}
        return json.loads(json.dumps(asked, default=str))

    def to_json(self) -> dict:
        """The request as JSON values (`from_json` reads it back)."""
        if self.model is None:
            raise ValueError("a request for a model built by hand cannot be sent elsewhere")
        objective = {"objective": self.model.objective} if self.model.objective_override else {}
        return {"measurement": self.measurement, "model": self.model.argument, **objective,
                "inputs": self.inputs.to_json(), "params": dict(self.params), "seed": self.seed, "out": self.out,
                "device": self.device, "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict) -> "RunRequest":
        data = dict(data)
        spec = resolve(data.pop("model"), objective=data.pop("objective", None))
        inputs = dict(data.pop("inputs"))
        kind = inputs.pop("kind")
        if kind not in INPUTS:
            raise ValueError(f"unknown input kind '{kind}'; choose from {', '.join(INPUTS)}")
        if inputs.get("assays") is not None:
            inputs["assays"] = tuple(inputs["assays"])
        params = tuple(sorted((data.pop("params", None) or {}).items()))
        request = cls(data.pop("measurement"), spec, INPUTS[kind](**inputs), params, **data)
        request.config()
        return request

    def effective(self) -> dict:
        """The request with the measurement's config filled in: equal for two requests that make one run."""
        out = self.to_json()
        out.pop("params")
        return {**out, "config": asdict(self.config())}


# ---- the code a request's numbers depend on ----------------------------------------------------

# every measurement runs through these (its inputs read, checked and masked for the model)
CORE_CODE = ("fasta", "tokens", "plan", "model", "cpu_math", "requests", "probes.streaming")
# plmdepth modules that hold no numbers of a measurement: their changes rerun no measurement
NOT_NUMERIC = ("plmdepth.publish", "plmdepth.analysis", "plmdepth.cli", "plmdepth.runner", "plmdepth.results",
               "plmdepth.paths", "plmdepth.second_env", "plmdepth.models.registry", "plmdepth.models.load")


def code_modules(request: "RunRequest") -> list:
    """The plmdepth modules a request's numbers depend on beyond its data and parameters: the core
    modules (`CORE_CODE`), the measurement's module and the plmdepth modules it imports from, and the
    model's family module (its loader; none for a model built by hand) and the plmdepth modules that one
    imports from, each followed through the modules they import in turn (`_imports`), by name."""
    compute = getattr(request.measure.compute, "func", request.measure.compute)  # a partial: its function
    found = {importlib.import_module(f"plmdepth.{name}") for name in CORE_CODE} | _imports(inspect.getmodule(compute))
    if request.model is not None:
        loader, _ = loader_of(request.model)
        found |= _imports(inspect.getmodule(loader.func if isinstance(loader, partial) else loader))
    return sorted(found, key=lambda m: m.__name__)


def _imports(module) -> set:
    """`module` and the plmdepth modules it imports names or modules from, and theirs in turn (a
    family's loader through the generic adapter, say), leaving out `NOT_NUMERIC`."""
    found, todo = {module}, [module]
    while todo:
        for value in vars(todo.pop()).values():
            owner = value if inspect.ismodule(value) else sys.modules.get(getattr(value, "__module__", None) or "")
            if (owner is None or owner in found or not owner.__name__.startswith("plmdepth.")
                    or not hasattr(owner, "__file__") or owner.__name__.startswith(NOT_NUMERIC)):
                continue
            found.add(owner)
            todo.append(owner)
    return found


def code_files(request: "RunRequest") -> list[str]:
    """`code_modules`' files, relative to the project when the package is installed from it
    (`pip install -e .`): the workflow's code inputs of the request's job."""
    return sorted({paths.relative_to_project(m.__file__) for m in code_modules(request)})


def code_digest(request: "RunRequest") -> str:
    """sha256 over `code_modules`' names and bytes: part of a run's cache key, so that a run is reused
    only by the code that computed it (wherever the package is installed)."""
    h = hashlib.sha256()
    for module in code_modules(request):
        h.update(module.__name__.encode() + b"\0" + Path(module.__file__).read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()
