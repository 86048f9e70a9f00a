"""What every chapter notebook does: run a measurement on its models, glue figures.

Keeps the notebooks thin (parameters, one call, one chart, one caption):

    result = collect("layer_skipping", models, fasta, results_dir, n_sequences=..., seed=...)
    result.tables["skip_effect"], result.folders      # tables over models, results folders used
    glue_figure("fig_skip_effect", chart)

Diffusion models are run once per masking ratio in `diffusion_ratios` (one curve each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from plmdepth.figures import to_svg
from plmdepth.registry import load_model
from plmdepth.runner import results_folder, run

DIFFUSION_RATIOS = (0.15, 0.5, 0.9)


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
            **kwargs) -> Collected:
    """Run (or reuse) `measurement` on every model (every ratio for diffusion models).

    `diffusion_models` names models to treat as diffusion models although their loader says
    masked (e.g. a local folder holding DPLM weights).
    """
    per_run, folders = [], []
    for m in model_list(models):
        options = {"objective": "diffusion"} if m in model_list(diffusion_models) else {}
        lm = load_model(m, device=device, **options)
        ratios = list(diffusion_ratios) if lm.objective == "diffusion" else [mask_fraction]
        for ratio in ratios:
            per_run.append(run(measurement, m, fasta, out=results_dir, lm=lm, mask_fraction=ratio,
                               progress=False, **kwargs))
            folders.append(results_folder(results_dir, m, lm.objective, ratio))
    tables = {name: pd.concat([t[name] for t in per_run], ignore_index=True) for name in per_run[0]}
    return Collected(tables, folders)


def glue_figure(name: str, chart) -> None:
    """Glue `chart` as a static SVG under `name`, for a `{glue:figure}` directive."""
    from IPython.display import SVG
    from myst_nb import glue

    glue(name, SVG(to_svg(chart)), display=False)


def glue_text(name: str, text: str) -> None:
    from myst_nb import glue

    glue(name, text, display=False)
