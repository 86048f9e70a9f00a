"""What every chapter notebook does: run a measurement on its models, glue figures.

Keeps the notebooks thin (parameters, one call, one chart, one caption):

    tables = collect("layer_skipping", models, fasta, results_dir, n_sequences=..., seed=...)
    show_figure("fig_skip_effect", chart)
"""

from __future__ import annotations

import pandas as pd

from plmdepth.figures import to_svg
from plmdepth.runner import run


def model_list(models) -> list[str]:
    """A papermill `models` parameter (comma-separated string or list) as a list."""
    return [m.strip() for m in models.split(",") if m.strip()] if isinstance(models, str) else list(models)


def collect(measurement: str, models, fasta: str, results_dir: str = "results", **kwargs) -> dict[str, pd.DataFrame]:
    """Run (or reuse) `measurement` on every model; its tables concatenated over models."""
    per_model = [run(measurement, m, fasta, out=results_dir, progress=False, **kwargs) for m in model_list(models)]
    return {name: pd.concat([t[name] for t in per_model], ignore_index=True) for name in per_model[0]}


def glue_figure(name: str, chart) -> None:
    """Glue `chart` as a static SVG under `name`, for a `{glue:figure}` directive."""
    from IPython.display import SVG
    from myst_nb import glue

    glue(name, SVG(to_svg(chart)), display=False)


def glue_text(name: str, text: str) -> None:
    from myst_nb import glue

    glue(name, text, display=False)
