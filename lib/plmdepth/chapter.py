"""What every chapter notebook does: run a measurement on its models, glue figures.

Keeps the notebooks thin (parameters, one call, one chart, one caption):

    result = collect("layer_skipping", models, fasta, results_dir, n_sequences=..., seed=...)
    result.tables["skip_effect"], result.folders      # tables over models, results folders used
    publish_figure("fig-skip-effect", chart, data)  # glued SVG + SVG/PNG/CSV/HTML downloads

Diffusion models are run once per masking ratio in `diffusion_ratios` (one curve each).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

from tqdm import TqdmWarning

# Inside a kernel, tqdm.auto (imported by transformers) warns that ipywidgets is missing.
# Chapters show no progress widgets on purpose (they would need JavaScript from a CDN).
warnings.filterwarnings("ignore", category=TqdmWarning)

from pathlib import Path

import pandas as pd

from plmdepth.figures import to_svg
from plmdepth.registry import load_model as _load_model
from plmdepth.runner import needs_esm_env, objective_of, results_folder, run, run_variant_effects

DIFFUSION_RATIOS = (0.15, 0.5, 0.9)


@lru_cache(maxsize=None)
def load_model(name_or_path: str, device: str = "cpu", objective: str | None = None):
    """`registry.load_model`, once per (model, device, objective) in a chapter's kernel: a chapter
    that runs several measurements (the cross-model page) loads and checksums each model once."""
    return _load_model(name_or_path, device=device, **({"objective": objective} if objective else {}))


@dataclass
class Collected:
    """A measurement's tables concatenated over models, and the results folders they came from."""

    tables: dict[str, pd.DataFrame]
    folders: list[Path] = field(default_factory=list)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]


def model_list(models) -> list[str]:
    """A papermill `models` parameter (comma-separated string or list) as a list."""
    return [m.strip() for m in models.split(",") if m.strip()] if isinstance(models, str) else list(models)


def collect(measurement: str, models, fasta: str, results_dir: str = "results", device: str = "cpu",
            diffusion_ratios=DIFFUSION_RATIOS, diffusion_models=(), mask_fraction: float = 0.15,
            structure_models=(), structure_fasta: str | None = None, **kwargs) -> Collected:
    """Run (or reuse) `measurement` on every model (every ratio for diffusion models).

    `diffusion_models` names models to treat as diffusion models although their loader says
    masked (e.g. a local folder holding DPLM weights). `structure_models` (structure-conditioned
    models such as ProteinMPNN) run on `structure_fasta`, the chains of the structures they
    read, instead of `fasta`.
    """
    structure = model_list(structure_models)
    if structure and not structure_fasta:
        raise ValueError("structure_models need structure_fasta: the FASTA of the chains their structures hold")
    per_run, folders = [], []
    for m in model_list(models) + structure:
        # a model of the second environment (ESM C, ESM3) is not loaded here: `run` sends it to .venv-esm
        objective = "diffusion" if m in model_list(diffusion_models) else None
        lm = None if needs_esm_env(m) else load_model(m, device, objective)
        objective = lm.objective if lm is not None else objective_of(m)
        ratios = list(diffusion_ratios) if objective == "diffusion" else [mask_fraction]
        for ratio in ratios:
            per_run.append(run(measurement, m, structure_fasta if m in structure else fasta, out=results_dir,
                               lm=lm, mask_fraction=ratio, progress=False, device=device, **kwargs))
            folders.append(results_folder(results_dir, m, objective, ratio))
    tables = {name: pd.concat([t[name] for t in per_run], ignore_index=True) for name in per_run[0]}
    return Collected(tables, folders)


# where publish_figure writes the downloads; PLMDEPTH_FIGURES redirects them (tests executing a
# chapter on a toy model must not overwrite the book's figures)
FIGURES = Path(os.environ.get("PLMDEPTH_FIGURES", Path(__file__).resolve().parents[2] / "book" / "figures"))
BOOK_TITLE = "Does the curse of depth persist in protein language models?"


def cite_text(label: str) -> str:
    """How to cite one figure: the book, its version and the figure's label."""
    from plmdepth import __version__

    return (f"Cite as: plmdepth contributors (2026). {BOOK_TITLE} Executable book, "
            f"version {__version__}, figure {label}.")


def collect_variant_effects(models, reference: str, results_dir: str = "results", device: str = "cpu",
                            **kwargs) -> Collected:
    """Run (or reuse) M5 on every model; `variant_effects` concatenated over models."""
    tables, folders = [], []
    for m in model_list(models):
        lm = None if needs_esm_env(m) else load_model(m, device=device)
        tables.append(run_variant_effects(m, reference, out=results_dir, lm=lm, progress=False, device=device,
                                          **kwargs))
        folders.append(results_folder(results_dir, m, lm.objective if lm is not None else objective_of(m), 0.15))
    return Collected({"variant_effects": pd.concat(tables, ignore_index=True)}, folders)


def publish_figure(label: str, chart, data: pd.DataFrame) -> None:
    """Glue `chart` for the `{glue:figure}` named `label`, and write its downloads.

    Writes book/figures/<label>.svg, .png, .csv (the plotted data) and .html (interactive,
    with vega inlined so it works offline), and glues `<label>` (the SVG, with `-` as `_`)
    and `cite_<label>` (the citation line) for the chapter's markdown.
    """
    import vl_convert
    from IPython.display import SVG
    from myst_nb import glue

    FIGURES.mkdir(parents=True, exist_ok=True)
    svg = to_svg(chart)
    (FIGURES / f"{label}.svg").write_text(svg)
    (FIGURES / f"{label}.png").write_bytes(vl_convert.svg_to_png(svg, scale=2))
    data.to_csv(FIGURES / f"{label}.csv", index=False)
    chart.save(str(FIGURES / f"{label}.html"), inline=True)
    key = label.replace("-", "_")
    glue(key, SVG(svg), display=False)
    glue(f"cite_{key}", cite_text(label), display=False)


def glue_text(name: str, text: str) -> None:
    from myst_nb import glue

    glue(name, text, display=False)
