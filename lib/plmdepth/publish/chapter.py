"""What every chapter notebook does: collect its runs, publish its figures.

Keeps the notebooks thin (parameters, one call per figure or table, captions):

    runs = collect_chapter("layer-skipping", globals())      # {name: Collected}, from the chapter's definition
    runs["layer_skipping"]["skip_effect"], runs["layer_skipping"].folders
    publish_figure("fig-skip-effect", chart, data)           # glued SVG, downloads and their links

What a chapter runs is defined once, in `publish.chapters`; the workflow's jobs come from the same
definition. Diffusion models are run once per masking ratio in `diffusion_ratios` (one curve each).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from plmdepth import __version__, paths, second_env
from plmdepth.models import load_model
from plmdepth.publish.chapters import chapter
from plmdepth.publish.figures import to_svg
from plmdepth.requests import RunRequest
from plmdepth.results import Results
from plmdepth.runner import cached_only, run

BOOK_TITLE = "Does the curse of depth persist in protein language models?"


@dataclass
class Collected:
    """A measurement's tables concatenated over models, and the results folders they came from."""

    tables: dict[str, pd.DataFrame]
    results: Results  # the folders the tables were read from, in the order of the runs

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    @property
    def folders(self) -> list[Path]:
        return self.results.folders


def collect(requests: list[RunRequest], models: dict | None = None) -> Collected:
    """Run (or reuse) every request; their tables over models and their results folders.

    `models` maps a request's model spec to a loaded `ProteinLM` to use; the others are loaded
    one at a time (one in memory). In a chapter run by the workflow (`cached_only()`) none is
    loaded, and a model of the second environment (ESM C, ESM3) never is here."""
    return collect_groups({"runs": requests}, models)["runs"]


def collect_groups(groups: dict[str, list[RunRequest]], models: dict | None = None) -> dict[str, Collected]:
    """`collect` for several named lists of requests at once, each model loaded once for all of them
    (models in the order they first appear)."""
    models, folders = dict(models or {}), {}
    numbered = [(name, i, r) for name, runs in groups.items() for i, r in enumerate(runs)]
    for spec in dict.fromkeys(r.model for _, _, r in numbered):
        mine = [(name, i, r) for name, i, r in numbered if r.model == spec]
        loaded = models.get(spec)
        if loaded is None and not second_env.needed(spec) and not cached_only():
            loaded = load_model(spec, device=mine[0][2].device, dtype=mine[0][2].dtype)
        for name, i, request in mine:
            folders[name, i] = run(request, loaded, progress=False)
        loaded = None  # the next model takes this one's place in memory
    out = {}
    for name, runs in groups.items():
        results = Results([folders[name, i] for i in range(len(runs))])
        out[name] = Collected(results.tables(runs[0].measurement) if runs else {}, results)
    return out


def collect_chapter(name: str, namespace: dict, models: dict | None = None) -> dict[str, Collected]:
    """Every run of chapter `name` with the parameters it finds in `namespace` (a notebook's
    `globals()`), collected by the name its definition gives them (`publish.chapters`)."""
    definition = chapter(name)
    params = {key: namespace[key] for key in definition.defaults()}
    return collect_groups(definition.requests(params), models)


def cite_text(label: str) -> str:
    """How to cite one figure: the book, its version and the figure's label."""
    return (f"Cite as: plmdepth contributors (2026). {BOOK_TITLE} Executable book, "
            f"version {__version__}, figure {label}.")


def download_links(label: str) -> str:
    """MyST links to a figure's files (relative to a chapter page) and its citation line.

    SVG, PNG and CSV are `{download}` links (Sphinx copies them to `_downloads/`). The interactive
    HTML is a plain link, so a browser opens it instead of downloading it: book/_ext/book_files.py
    copies book/figures/ into the HTML output as `figures/`.
    """
    files = "../figures/" + label
    return (f"{{download}}`SVG <{files}.svg>` · {{download}}`PNG <{files}.png>` · "
            f"{{download}}`data (CSV) <{files}.csv>` · "
            f'<a class="reference external" href="{files}.html">interactive (HTML), full size</a>. '
            f"{cite_text(label)}")


def publish_figure(label: str, chart, data: pd.DataFrame) -> None:
    """Glue `chart` for the `{glue:figure}` named `label`, write its downloads and glue their links.

    Writes <figures>/<label>.svg, .png, .csv (the plotted data) and .html (interactive, with
    vega inlined so it works offline), and glues `<label>` (the SVG, with `-` as `_`) and
    `links_<label>` (MyST download links and the citation line, for `{glue:md}`).
    """
    import vl_convert
    from IPython.display import SVG, Markdown
    from myst_nb import glue

    folder = paths.figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    svg = to_svg(chart)
    (folder / f"{label}.svg").write_text(svg)
    (folder / f"{label}.png").write_bytes(vl_convert.svg_to_png(svg, scale=2))
    data.to_csv(folder / f"{label}.csv", index=False)
    chart.save(str(folder / f"{label}.html"), inline=True)
    key = label.replace("-", "_")
    glue(key, SVG(svg), display=False)
    glue(f"links_{key}", Markdown(download_links(label)), display=False)


def glue_text(name: str, text: str) -> None:
    """Glue plain text for `{glue:text}`."""
    from myst_nb import glue

    glue(name, text, display=False)


def glue_markdown(name: str, text: str) -> None:
    """Glue MyST markdown (bold, lists, references) for `{glue:md}` with `:format: myst`."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(name, Markdown(text), display=False)


def trained_only(table):
    """`table` without the untrained twins' rows and the twin columns (for a chapter's tables of numbers;
    its figures and verdicts show the twins)."""
    if "twin_of" not in table:
        return table
    return table[table["twin_of"].isna()].drop(columns=["twin_of", "init_seed"], errors="ignore").reset_index(drop=True)
