"""Every chapter of the book, defined once: its notebook, its parameters and the runs it needs.

    chapter = CHAPTERS["logit-lens"]
    params = chapter.parameters({"n_sequences": 50})   # notebooks/parameters.yml, its own, the changes
    chapter.requests(params)                           # {"logit_lens": [RunRequest, ...]}

The runs of a chapter are a function of its parameters. The notebook collects exactly these
(`publish.chapter.collect_chapter`) and the workflow makes exactly these as its jobs
(`publish.grid`), so the two cannot disagree. A chapter that also shows another chapter's
results (`reads`) asks for that chapter's runs with that chapter's parameters, changed by one
parameter of its own.

Adding a chapter: write its notebook in `notebooks/` (a `parameters` cell holding
`globals().update(CHAPTERS["<name>"].defaults())` and `CHAPTERS["<name>"].own_table()`, one
`collect_chapter` call, one library call per figure or table), add a `Chapter` row to `CHAPTERS`
below with its own parameters (`Parameter(default, meaning)`) and its runs, and its executed
notebook to `_toc.yml`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from plmdepth import paths
from plmdepth.models import ModelSpec, resolve, twin
from plmdepth.models.ladder import Recipe
from plmdepth.publish import BookError, ParameterError
from plmdepth.requests import RunRequest

# Contributions read every position of the unmasked sequence: one run per model (a diffusion
# model's at this ratio, in its folder of that ratio), whatever the chapter's masking ratio.
CONTRIBUTIONS_RATIO = 0.15
LADDER = Recipe()  # the committed depth ladder (models/ladder.py)


def shared_parameters() -> dict:
    """The parameters every chapter shares, from notebooks/parameters.yml."""
    return yaml.safe_load((paths.notebooks_dir() / "parameters.yml").read_text())


def model_list(models) -> list[str]:
    """A `models` parameter (comma-separated string or list) as a list."""
    if isinstance(models, str):
        return [m.strip() for m in models.split(",") if m.strip()]
    return [str(m) for m in models or ()]


def resolved(models, diffusion_models=()) -> list[ModelSpec]:
    """Every model of `models` resolved; those of `diffusion_models` as diffusion models although their
    config says masked (DPLM weights in a plain ESM folder)."""
    diffusion = set(model_list(diffusion_models))
    return [resolve(m, objective="diffusion" if m in diffusion else None) for m in model_list(models)]


def twin_seeds(p: dict) -> list[int]:
    """The initialisation seeds of the untrained twins: 0 .. twin_seeds - 1."""
    return list(range(int(p.get("twin_seeds") or 0)))


def sequence_runs(measurement: str, p: dict, structure: bool = True, mask_fraction: float | None = None,
                  untrained: bool = True, twins: bool = True, n_sequences: int | None = None,
                  **params) -> list[RunRequest]:
    """`measurement` of every model of the chapter on its FASTA file (and of its structure models on
    the chains of their structures): a diffusion model once per ratio of `diffusion_ratios`, every
    model at `mask_fraction` when it is given. Every model's untrained twins follow it (one per seed
    of `twin_seeds`; not without `twins`, nor for a model of the second environment), and the
    architectures of `untrained_models` run as twins only (with `untrained`: they stand for the
    paper's Figs. 1-4, which the tuned lens is not part of). `n_sequences` (at most the chapter's)
    takes the first sequences only. `params` are the measurement's own."""
    specs = [(spec, p["fasta"]) for spec in resolved(p["models"], p["diffusion_models"])]
    if structure and model_list(p.get("structure_models")):
        if not p.get("structure_fasta"):
            raise ValueError("structure_models need structure_fasta: the FASTA of the chains their structures hold")
        specs += [(spec, p["structure_fasta"]) for spec in resolved(p["structure_models"])]
    seeds = twin_seeds(p) if twins else []
    # twins are built in the main environment: a model of the second one (ESM C, ESM3) has none
    specs = [(s, data) for spec, data in specs
             for s in (spec, *(twin(spec, k) for k in (seeds if spec.environment == "main" else ())))]
    if untrained:
        specs += [(twin(spec, k), p["fasta"]) for spec in resolved(p.get("untrained_models")) for k in seeds]
    count = p["n_sequences"] if n_sequences is None else min(n_sequences, p["n_sequences"] or n_sequences)
    out = []
    for spec, data in specs:
        ratios = ([mask_fraction] if mask_fraction is not None else
                  list(p["diffusion_ratios"]) if spec.objective == "diffusion" else [p["mask_fraction"]])
        out += [RunRequest.build(measurement, spec, data, out=p["results_dir"], seed=p["seed"],
                                 n_sequences=count, mask_fraction=ratio, device=p["device"],
                                 dtype=p["dtype"], **params) for ratio in ratios]
    return out


def assay_runs(p: dict) -> list[RunRequest]:
    """Variant effects of every model of the chapter on the chosen sets of its reference table."""
    return [RunRequest.build("variant_effects", spec, p["reference"], out=p["results_dir"], seed=p["seed"],
                             device=p["device"], dtype=p["dtype"], assays=p["assays"], max_variants=p["max_variants"],
                             scoring=p["scoring"], n_bootstrap=p["n_bootstrap"], batch_size=p["batch_size"])
            for spec in resolved(p["models"], p["diffusion_models"])]


def tuned_runs(p: dict) -> list[RunRequest]:
    """The tuned lens of every model of the lens-or-layers chapter with parameters `p` (their twins too;
    not the architectures run untrained only, nor the structure models)."""
    return sequence_runs("tuned_lens", p, structure=False, untrained=False, vocab=p["vocab"],
                         train_fraction=p["train_fraction"], epochs=p["epochs"])


@dataclass(frozen=True)
class Parameter:
    """One of a chapter's own parameters: its default and what it means."""

    default: object
    meaning: str


@dataclass(frozen=True)
class Chapter:
    """One chapter: its name on the command line, its notebook, its own parameters (name -> default)
    and the runs it needs as a function of its parameters."""

    name: str
    stem: str  # notebooks/<stem>.py, executed to book/chapters/<stem>.ipynb
    runs: Callable[[dict], dict[str, list[RunRequest]]]
    own: dict[str, Parameter] = field(default_factory=dict)
    reads: tuple[str, str] | None = None  # (chapter, parameter): that chapter's runs, changed by that parameter

    @property
    def notebook(self) -> Path:
        return paths.notebooks_dir() / f"{self.stem}.py"

    @property
    def executed(self) -> Path:
        return paths.book_dir() / "chapters" / f"{self.stem}.ipynb"

    def defaults(self) -> dict:
        """Its parameters and their defaults: the shared ones (notebooks/parameters.yml), then its own."""
        return {**shared_parameters(), **{name: p.default for name, p in self.own.items()}}

    def parameters(self, changes: dict | None = None) -> dict:
        """Its defaults changed by `changes`; a parameter it does not have is refused in one sentence."""
        defaults, changes = self.defaults(), dict(changes or {})
        unknown = sorted(set(changes) - set(defaults))
        if unknown:
            raise ParameterError(f"chapter '{self.name}' has no parameter {', '.join(unknown)}; its parameters are "
                            f"{', '.join(defaults)}")
        return {**defaults, **changes}

    def own_table(self):
        """Its own parameters, their defaults and what they mean, as the book shows them (None when it has
        none; the values of a run that changes them follow in papermill's injected cell)."""
        import pandas as pd

        if not self.own:
            return None
        rows = [{"parameter": name, "default": repr(p.default), "meaning": p.meaning} for name, p in self.own.items()]
        return (pd.DataFrame(rows).style.hide(axis="index").set_properties(**{"text-align": "left"})
                .set_table_styles([{"selector": "th", "props": [("text-align", "left")]}]))

    def requests(self, params: dict) -> dict[str, list[RunRequest]]:
        """The runs it makes with `params` (all of its parameters), by the name the notebook reads them by."""
        return self.runs(params)


def parameters_for(name: str, values: dict, changes: dict | None = None) -> dict:
    """Chapter `name`'s parameters where the shared ones take `values` (those it does not set itself),
    changed by `changes` (its own or shared)."""
    definition, shared = chapter(name), shared_parameters()
    carried = {k: v for k, v in values.items() if k in shared and k not in definition.own and v != shared[k]}
    return definition.parameters({**carried, **(changes or {})})


def _read_chapter(name: str, p: dict) -> dict:
    """The parameters of chapter `name` as the chapter reading it sees them (see `Chapter.reads`): the
    reader's shared values, changed by the reader's parameter for it."""
    reader = next(c for c in CHAPTERS.values() if c.reads and c.reads[0] == name)
    return parameters_for(name, p, p.get(reader.reads[1]))


CHAPTERS: dict[str, Chapter] = {c.name: c for c in (
    Chapter("contributions", "contributions", lambda p: {
        "contributions": sequence_runs("contributions", p, mask_fraction=CONTRIBUTIONS_RATIO)}),
    Chapter("layer-skipping", "layer_skipping", lambda p: {
        "layer_skipping": sequence_runs("layer_skipping", p, mode=p["mode"]),
        "logit_lens": sequence_runs("logit_lens", p),  # claim (b) reads the logit lens too
        # the numerical noise floor of M1-M4 (Methods), of the trained models on their first sequences
        "noise_floor": sequence_runs("noise_floor", p, twins=False, untrained=False,
                                     n_sequences=p["noise_floor_sequences"]),
        # which sublayer: each block's attention and MLP skipped alone, of the trained models
        "part_skipping": sequence_runs("part_skipping", p, twins=False, untrained=False,
                                       n_sequences=p["part_sequences"])},
        own={"mode": Parameter("future", '"future" (skip outside F, measure at F) or "current" (skip and measure '
                                         'everywhere)'),
             "part_sequences": Parameter(50, "sequences (the first ones) of the part-skipping runs: each block's "
                                             "attention and MLP skipped alone"),
             "aggregate": Parameter("effect_max", '"effect_max" (the paper\'s) or "effect_mean"')}),
    Chapter("logit-lens", "logit_lens", lambda p: {
        "logit_lens": sequence_runs("logit_lens", p, vocab=p["vocab"]),
        "layer_skipping": sequence_runs("layer_skipping", p),  # claim (b) reads the output change too
        "tuned_lens": tuned_runs(_read_chapter("lens-or-layers", p))},  # its trivial baselines, for accuracy
        own={"vocab": Parameter("full", '"full" vocabulary or "amino_acids" (20 canonical, renormalised)'),
             "kl_direction": Parameter("kl", '"kl": KL(p_l ‖ p_L), Csordás et al.\'s and the paper\'s; "kl_reverse": '
                                             "KL(p_L ‖ p_l), the tuned-lens code's"),
             "lens_or_layers": Parameter({}, "the lens-or-layers chapter's parameters where they differ from its "
                                             "defaults (its tuned-lens runs hold the trivial baselines)")},
        reads=("lens-or-layers", "lens_or_layers")),
    Chapter("cross-model", "cross_model", lambda p: {
        "logit_lens": sequence_runs("logit_lens", p),
        "layer_skipping": sequence_runs("layer_skipping", p),
        "contributions": sequence_runs("contributions", p, mask_fraction=CONTRIBUTIONS_RATIO)},
        own={"tau": Parameter(0.1, "depth efficiency: output change (mean L2 of probabilities) below which a "
                                   "block refines"),
             "kappa": Parameter(0.5, "depth efficiency: logit-lens KL [nats] below which a layer refines"),
             "skippable_metric": Parameter("prob_l2_mean", 'output change in the skipping figure (or '
                                                           '"prob_l2_max")')}),
    Chapter("depth-ladder", "depth_ladder", lambda p: {
        "layer_skipping": sequence_runs("layer_skipping", p, structure=False),
        "logit_lens": sequence_runs("logit_lens", p, structure=False),
        "contributions": sequence_runs("contributions", p, structure=False, mask_fraction=CONTRIBUTIONS_RATIO),
        "tuned_lens": tuned_runs(p)},
        own={"models": Parameter(",".join(LADDER.name(d) for d in LADDER.depths),
                                 "the rungs: models of one architecture, width and training that differ in depth only"),
             "untrained_models": Parameter("", "architectures run untrained only (none: every rung has its twins)"),
             "structure_models": Parameter("", "structure-conditioned models (none here)"),
             "vocab": Parameter("full", '"full" vocabulary or "amino_acids" (20 canonical, renormalised)'),
             "train_fraction": Parameter(0.5, "tuned lens: share of the sequences its translators are trained on"),
             "epochs": Parameter(50, "tuned lens: training epochs of the translators")}),
    Chapter("variant-effects", "variant_effects", lambda p: {"variant_effects": assay_runs(p)},
            own={"models": Parameter("unirep-64,unirep-256,unirep-1900", "the models scored (comma-separated)"),
                 "reference": Parameter("data/dms/DMS_substitutions.csv",
                                        "ProteinGym-style reference table; the assay CSVs lie beside it"),
                 "assays": Parameter("TADBP_HUMAN_Bolognesi_2019,A4_HUMAN_Seuma_2022_subset",
                                     'the sets of the table to score, comma-separated ("all": every set); by '
                                     "default ProteinGym's own TDP-43 set and the Aβ42 set (singles and doubles)"),
                 "max_variants": Parameter(None, "None: every variant; N: a seeded subset of N per assay"),
                 "scoring": Parameter("auto", "auto, masked_marginal, wt_marginal, pseudo_likelihood or "
                                              "log_likelihood_ratio"),
                 "n_bootstrap": Parameter(200, "bootstrap resamples of the variants for the 95% intervals"),
                 "batch_size": Parameter(64, "sequences per forward pass")}),
    Chapter("lens-or-layers", "lens_or_layers", lambda p: {
        "tuned_lens": tuned_runs(p),
        "layer_skipping": sequence_runs("layer_skipping", p, structure=False, untrained=False),
        "variant_effects": assay_runs(_read_chapter("variant-effects", p))},
        own={"vocab": Parameter("full", '"full" vocabulary or "amino_acids" (20 canonical, renormalised)'),
             "kl_direction": Parameter("kl", '"kl": KL(p_l ‖ p_L), the logit lens\'s; "kl_reverse": KL(p_L ‖ p_l), '
                                             "what the translators are trained on and the tuned-lens code reports"),
             "train_fraction": Parameter(0.5, "share of the sequences the translators are trained on (the rest "
                                              "is held out)"),
             "epochs": Parameter(50, "training epochs of the translators"),
             "kept_threshold": Parameter(0.9, 'late layers "mainly refine" when the first 3/4 of the blocks keep '
                                              "this share of the accuracy"),
             "basis_share": Parameter(0.5, "the tuned lens removing this share of the logit lens's KL at 3/4 reads "
                                           'as "a change of basis"'),
             "variant_effects": Parameter({}, "the variant-effects chapter's parameters where they differ from "
                                              "its defaults")},
        reads=("variant-effects", "variant_effects")),
)}


def chapter(name: str) -> Chapter:
    """The chapter called `name`, or one sentence listing them."""
    if name not in CHAPTERS:
        raise BookError(f"unknown chapter '{name}'; choose from {', '.join(CHAPTERS)}")
    return CHAPTERS[name]
