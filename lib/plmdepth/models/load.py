"""A model argument resolved once (`resolve` -> `ModelSpec`), and the one dispatcher that loads it.

`resolve` turns what a user typed (a registry name, a hub id, a local folder, a fair-esm `.pt`
file, an ESM C / ESM3 `.pth` file) into a small value that everything downstream uses: the
command line, the runner, the chapters and the book. It knows, before any weights are read,

- `slug`: the results folder name (`results/<slug>/`);
- `objective`: masked, autoregressive or diffusion (from the registry, or the folder's config);
- `environment`: "main", or "esm" for models that need EvolutionaryScale's `esm` (.venv-esm);
- `loader`: which family module loads it; `entry` the registry row, if any;
- `init_seed`: for an untrained twin (`<model>@random<seed>`, `models.untrained`), its seed.

`load_model(spec)` calls that loader once and returns a `ProteinLM` whose `.spec` is the spec.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from plmdepth.model import OBJECTIVES, ProteinLM
from plmdepth.models import adapter, dplm2, esm2, esmc, evolutionaryscale, fair_esm, progen2, protgpt2, untrained
from plmdepth.models.device import as_dtype, check_device
from plmdepth.models.hub import HubUnreachable, ModelLoadError, read_config, slug
from plmdepth.models.registry import REGISTRY, Entry, offline_names

# loader key -> (function taking the model argument and options, whether it takes `objective`)
LOADERS = {
    "esm2": (esm2.load_esm2, True),
    "dplm2": (dplm2.load_dplm2, False),
    "progen2": (progen2.load_progen2_model, False),
    "protgpt2": (protgpt2.load_protgpt2_model, False),
    "fair-esm": (fair_esm.load_fair_esm, True),
    "evolutionaryscale": (evolutionaryscale.load_esmc, False),
    "esmc": (esmc.load_esmc, False),
    "transformers": (adapter.load_transformers, False),
}


@dataclass(frozen=True)
class ModelSpec:
    """A model argument, resolved: what it is and where its results go, without its weights."""

    argument: str
    slug: str
    objective: str
    environment: str = "main"
    loader: str = "registry"  # "registry" (entry.loader) or a key of LOADERS
    entry: Entry | None = None
    objective_override: bool = False  # `objective` was asked for, not read from the registry or config
    init_seed: int | None = None  # an untrained twin (`<model>@random<seed>`): its initialisation seed

    def __str__(self) -> str:
        return self.argument


def _takes_objective(spec: ModelSpec) -> bool:
    return spec.entry.objective_option if spec.entry is not None else LOADERS[spec.loader][1]


def _resolve_path_or_id(text: str) -> tuple[str, str, str]:
    """(loader, objective, environment) of a hub id, a folder or a weights file, reading its config once."""
    if text.endswith(".pt"):
        return "fair-esm", "masked", "main"
    if text.endswith(".pth") or Path(text, "data", "weights").is_dir():
        # ESM C converts to transformers (esmc.py); ESM3 needs EvolutionaryScale's package (.venv-esm)
        if not Path(text).exists() or not esmc.is_esm3(esmc.read_state(esmc.weights_file(Path(text)))):
            return "esmc", "masked", "main"
        return "evolutionaryscale", "masked", "esm"
    if not ("/" in text or Path(text).exists()):
        raise ModelLoadError(
            f"unknown model '{text}'; use a registered name ({', '.join(REGISTRY)}), "
            "a Hugging Face hub id such as facebook/esm2_t12_35M_UR50D, or a local save_pretrained folder.")
    try:
        config = read_config(text)
    except HubUnreachable as err:
        raise HubUnreachable(f"{str(err).removesuffix('.')}, or use an offline model ({', '.join(offline_names())}).") \
            from None
    model_type = config.get("model_type")
    if model_type == "progen":
        return "progen2", "autoregressive", "main"
    if model_type == "gpt2" and protgpt2.has_gpt2_vocabulary(text):
        return "protgpt2", "autoregressive", "main"
    if model_type == "esm" and dplm2.is_dplm2_config(config):
        return "dplm2", "diffusion", "main"
    if model_type == "esm":
        return "esm2", esm2.objective_of_config(config), "main"
    if model_type is None:
        raise ModelLoadError(f"'{text}': its config.json names no model_type, so no transformers class reads it.")
    return "transformers", adapter.objective_of(config), "main"


def resolve(model: "str | Path | ModelSpec", objective: str | None = None) -> ModelSpec:
    """Resolve a model argument once; `objective` overrides it (ESM-2 networks only, e.g. DPLM
    weights in a folder whose config lacks `dplm_type`)."""
    if isinstance(model, ModelSpec):
        spec = model
    elif untrained.parse_twin(model)[1] is not None:
        base, seed = untrained.parse_twin(model)
        spec = twin(resolve(base), seed)
    else:
        text = str(model)
        entry = REGISTRY.get(text)
        if entry is not None:
            spec = ModelSpec(text, text, entry.objective, entry.environment, "registry", entry)
        else:
            loader, found, environment = _resolve_path_or_id(text)
            spec = ModelSpec(text, slug(text), found, environment, loader)
    if objective is None or objective == spec.objective:
        return spec
    if objective not in OBJECTIVES:
        raise ModelLoadError(f"objective must be one of {', '.join(OBJECTIVES)}, not '{objective}'.")
    if not _takes_objective(spec):
        raise ModelLoadError(f"'{spec.argument}' is a {spec.objective} model whose objective cannot be chosen; "
                             "--objective (or a chapter's diffusion_models) applies to ESM-2 networks only "
                             "(ESM-2 and DPLM folders, hub ids and .pt files).")
    return replace(spec, objective=objective, objective_override=True)


def twin(spec: ModelSpec, seed: int) -> ModelSpec:
    """The untrained twin of `spec` with initialisation seed `seed` (`<argument>@random<seed>`)."""
    if spec.init_seed is not None:
        raise ModelLoadError(f"'{spec.argument}' is already an untrained twin.")
    if spec.environment != "main":
        raise ModelLoadError(f"untrained twins are built in the main environment; '{spec.argument}' needs .venv-esm.")
    return replace(spec, argument=f"{spec.argument}@random{seed}", slug=f"{spec.slug}@random{seed}", init_seed=seed)


def places_weights(loader) -> bool:
    """Whether a loader takes `device` and `dtype` and puts its weights there itself."""
    return {"device", "dtype"} <= set(inspect.signature(loader).parameters)


def loader_of(spec: ModelSpec):
    """The family function that loads `spec`, and the positional arguments it takes for it."""
    return (spec.entry.loader, ()) if spec.loader == "registry" else (LOADERS[spec.loader][0], (spec.argument,))


def load_model(model: "str | Path | ModelSpec", device: str | torch.device = "cpu",
               dtype: torch.dtype | str = torch.float32, **options) -> ProteinLM:
    """Load a model argument (resolved first if it is not a `ModelSpec`) as a `ProteinLM` in eval mode.

    `options` go to the family's loader (e.g. IgLM's `chain`, ProteinMPNN's `structures`).
    Loaders that take `device` and `dtype` (ESM-2, DPLM, DPLM-2, ProGen2, ProtGPT2: the large
    models) read their weights onto the device in that dtype; the others load on the CPU and
    the finished model is moved and cast.
    """
    check_device(device)
    spec = resolve(model)
    dtype = as_dtype(dtype)
    if spec.init_seed is not None:
        lm = _load_twin(spec, device, dtype, options)
        lm.spec = spec
        return lm
    if spec.objective_override:
        options = {**options, "objective": spec.objective}
    loader, args = loader_of(spec)
    if places_weights(loader):
        lm = loader(*args, device=device, dtype=dtype, **options)
    else:
        lm = loader(*args, **options).to(device=device, dtype=dtype)
    lm.spec = spec
    return lm


def _load_twin(spec: ModelSpec, device, dtype: torch.dtype, options: dict) -> ProteinLM:
    """An untrained twin: an ESM-2 registry name from its published config alone (no weights read),
    any other model loaded and re-initialised (`untrained.untrained_twin`)."""
    base = replace(spec, argument=untrained.parse_twin(spec.argument)[0], init_seed=None)
    entry = spec.entry
    if entry is not None and entry.family == "ESM-2" and entry.loader_name == "esm2.load_esm2":
        lm = esm2.random_esm2(esm2.esm2_config(entry.size), seed=spec.init_seed, device=device, dtype=dtype,
                              name=entry.name)
        lm.info.objective = spec.objective
        lm.info.source = f"{entry.source} config.json"
        return untrained.named_twin(lm, spec.init_seed, "EsmForMaskedLM built from the published config")
    return untrained.untrained_twin(load_model(base, device=device, dtype=dtype, **options), spec.init_seed)
