"""The book as a grid of jobs, for the Snakemake workflow (`workflow/Snakefile`).

One job per results folder and measurement (a model, measured once on its data), one per
chapter (the notebook executed by papermill, reading those results) and one for the book:

    params = chapter_parameters("logit-lens", config)       # what the notebook will see
    for request in chapter_requests("logit-lens", params):  # the runs its collect_chapter() makes
        request.folder, request.to_json()

`config` is `notebooks/parameters.yml` (the chapters' shared parameters) as Snakemake read it,
with `--config` overrides, plus an optional `chapters: {name: {parameter: value}}` for a
chapter's own parameters. The runs come from each chapter's definition (`publish.chapters`),
the same the notebook collects; the workflow executes chapters with `PLMDEPTH_CACHED_ONLY` set,
so a chapter that asked for a run its jobs did not make would fail instead of computing it.

`resources` sizes a job for a scheduler from the model's registered size and the dtype; the
rules are in its docstring. `code_files` lists the library files a job's numbers depend on (the
workflow's inputs, so that changing one reruns the job).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from plmdepth import paths, requests
from plmdepth.models import REGISTRY
from plmdepth.publish.chapters import CHAPTERS, chapter, parameters_for
from plmdepth.requests import RunRequest


def chapter_parameters(name: str, config: dict | None = None) -> dict:
    """The parameters chapter `name` runs with: its defaults (notebooks/parameters.yml, then its
    own), shared values that `config` changes (unless the chapter sets them itself), then
    `config["chapters"][name]`. A chapter that reads another's runs gets that chapter's parameters
    as the workflow runs it, in the parameter that carries them."""
    definition, config = chapter(name), dict(config or {})
    chapters = config.pop("chapters", None) or {}
    params = parameters_for(name, config, chapters.get(name))
    if definition.reads:
        other, key = definition.reads
        params[key] = {**injected(other, chapter_parameters(other, {**config, "chapters": chapters})),
                       **(params.get(key) or {})}
    return params


def injected(name: str, params: dict) -> dict:
    """The parameters papermill must inject for the notebook to see `params` (those that differ
    from its defaults)."""
    defaults = chapter(name).defaults()
    return {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}


def chapter_requests(name: str, params: dict) -> list[RunRequest]:
    """Every run chapter `name` makes with `params`, in the order it collects them."""
    return [request for runs in chapter(name).requests(params).values() for request in runs]


@dataclass(frozen=True)
class Job:
    """One measurement of one results folder, and the chapters that read it."""

    request: RunRequest
    chapters: tuple[str, ...]

    @property
    def outputs(self) -> list[str]:
        return [str(self.request.folder / f"{table}.csv") for table in self.request.measure.outputs]

    @property
    def name(self) -> str:
        return f"{self.request.folder.name}/{self.request.measurement}"


@dataclass(frozen=True)
class FolderJob:
    """Every measurement of one results folder: one workflow job, one process, the model loaded once."""

    jobs: tuple[Job, ...]

    @property
    def folder(self):
        return self.jobs[0].request.folder

    @property
    def outputs(self) -> list[str]:
        return [out for job in self.jobs for out in job.outputs]

    @property
    def rule(self) -> str:
        """A Snakemake rule name for the folder (letters, digits and underscores)."""
        return "measure_" + re.sub(r"\W", "_", self.folder.name)

    def to_json(self) -> str:
        """The requests as one JSON list (what `python -m plmdepth run-request` reads)."""
        return json.dumps([job.request.to_json() for job in self.jobs], sort_keys=True, default=str)

    def code_files(self) -> list[str]:
        return sorted({f for job in self.jobs for f in code_files(job.request)})

    def resources(self, dtype: str = "float32", gpu: bool = False) -> dict:
        """`resources` of its measurements run one after another: the largest of each, the runtimes summed."""
        each = [resources(job.request, dtype, gpu) for job in self.jobs]
        out = {key: max(r.get(key, 0) for r in each) for key in set().union(*each)}
        out["runtime"] = sum(r["runtime"] for r in each)
        return out


def folder_jobs(jobs: list[Job]) -> list[FolderJob]:
    """`jobs` grouped by results folder (in order of first appearance)."""
    by_folder: dict[str, list[Job]] = {}
    for job in jobs:
        by_folder.setdefault(str(job.request.folder), []).append(job)
    return [FolderJob(tuple(group)) for group in by_folder.values()]


def jobs(config: dict | None = None, chapters=None) -> tuple[list[Job], dict[str, list[Job]]]:
    """The jobs of the chapters (all by default) and, per chapter, the jobs it reads.

    Two chapters asking for one measurement of one folder with different parameters cannot both
    be kept (a folder holds one run per measurement): that is refused in one sentence."""
    jobs: dict[tuple, Job] = {}
    per_chapter: dict[str, list[Job]] = {}
    for name in chapters or CHAPTERS:
        keys = []
        for request in chapter_requests(name, chapter_parameters(name, config)):
            key = (str(request.folder), request.measurement)
            known = jobs.get(key)
            if known is not None and known.request.effective() != request.effective():
                raise ValueError(f"chapters {', '.join(known.chapters)} and {name} ask for {request.measurement} of "
                                 f"{request.model.argument} in {request.folder} with different parameters "
                                 f"({_difference(known.request.effective(), request.effective())}); make them agree")
            jobs[key] = Job(request, (known.chapters if known else ()) + (name,))
            keys.append(key)
        per_chapter[name] = keys
    return list(jobs.values()), {name: [jobs[k] for k in dict.fromkeys(keys)] for name, keys in per_chapter.items()}


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def _difference(a: dict, b: dict) -> str:
    a, b = _flat(a), _flat(b)
    return ", ".join(f"{k.rsplit('.', 1)[-1]}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b))
                     if a.get(k) != b.get(k))


# ---- sizing jobs for a scheduler -------------------------------------------------------------

BYTES = {"float32": 4, "mixed-bfloat16": 4, "bfloat16": 2, "float16": 2, "float64": 8}  # per weight
GPU_MEMORY_GB = 80  # one A100/H100 80 GB; an H200 has 141


def parameter_count(model: str) -> float | None:
    """Parameters of a registered model from its size ("650M", "1.4B", "0.15M"), else None."""
    entry = REGISTRY.get(model)
    match = re.fullmatch(r"([\d.]+)\s*([MB])", entry.size if entry else "")
    return float(match.group(1)) * (1e6 if match.group(2) == "M" else 1e9) if match else None


def resources(request: RunRequest, dtype: str = "float32", gpu: bool = False) -> dict:
    """Scheduler resources of one job: host memory, GPUs and a runtime limit.

    - Weights take parameters x bytes per parameter of `dtype`. The host needs room for them
      twice while loading (a checkpoint read into memory and the model) plus 4 GB for Python,
      the data and activations: `mem_mb` = 2 x weights + 4 GB.
    - On a GPU the weights and the activations of one batch must fit: weights x 1.5 + 8 GB
      (the probes keep every layer's hidden states of a batch and the logits at evaluated
      positions; 8 GB covers ESM-2 15B's 49 layers x 8 x 1,024 tokens x 5,120 in bfloat16, 4 GB).
      One GPU per job; a job that would need more than one GPU_MEMORY_GB GPU is refused.
      ESM-2 15B in bfloat16: 30 GB of weights -> 53 GB, one 80 GB GPU.
    - The runtime limit grows with the model: 30 min up to 1B parameters, then 30 min per
      billion (unknown sizes: 2 h); on a CPU, four times longer.
    """
    params = parameter_count(request.model.argument)
    weights_gb = (params or 1e9) * BYTES[dtype] / 1e9
    out = {"mem_mb": int(math.ceil((2 * weights_gb + 4) * 1024)), "cpus_per_task": 4 if gpu else 2}
    minutes = 120 if params is None else max(30, int(30 * params / 1e9))
    if gpu:
        need = weights_gb * 1.5 + 8
        if need > GPU_MEMORY_GB:
            raise ValueError(f"{request.model.argument} in {dtype} needs about {need:.0f} GB of GPU memory, more "
                             f"than one {GPU_MEMORY_GB} GB GPU; run it in bfloat16 or on a larger GPU")
        out.update(gpu=1, gpu_mem_gb=int(math.ceil(need)))
    else:
        minutes *= 4
    out["runtime"] = minutes
    return out


def code_files(request: RunRequest) -> list[str]:
    """The library files a job's numbers depend on (`requests.code_files`): its job's code inputs."""
    return requests.code_files(request)
