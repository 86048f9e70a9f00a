"""What every chapter notebook does: run a measurement on its models, publish its figures.

Keeps the notebooks thin (shared parameters, one call, one chart, one caption):

    models = load_models("antiberty,iglm")                   # each loaded once per kernel
    result = collect("layer_skipping", models, fasta, results_dir, n_sequences=..., seed=...)
    result["skip_effect"], result.folders                    # tables over models, results folders used
    publish_figure("fig-skip-effect", chart, data)           # glued SVG, downloads and their links

Parameters shared by every chapter come from `notebooks/parameters.yml` (`shared_parameters`);
diffusion models are run once per masking ratio in `diffusion_ratios` (one curve each).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from tqdm import TqdmWarning

# Inside a kernel, tqdm.auto (imported by transformers when plmdepth's model modules load, just
# below) warns that ipywidgets is missing. Chapters show no progress widgets on purpose (they
# would need JavaScript from a CDN), so the filter is set before those imports.
warnings.filterwarnings("ignore", category=TqdmWarning)

from plmdepth import __version__, paths, second_env  # noqa: E402
from plmdepth.model import ProteinLM  # noqa: E402
from plmdepth.models import ModelSpec, load_model, resolve  # noqa: E402
from plmdepth.probes.measurements import measurement as find_measurement  # noqa: E402
from plmdepth.publish.figures import to_svg  # noqa: E402
from plmdepth.runner import cached_only, read_tables, results_folder, run  # noqa: E402

DIFFUSION_RATIOS = (0.15, 0.5, 0.9)
BOOK_TITLE = "Does the curse of depth persist in protein language models?"


def shared_parameters() -> dict:
    """The parameters every chapter shares, from notebooks/parameters.yml."""
    return yaml.safe_load((paths.notebooks_dir() / "parameters.yml").read_text())


@dataclass
class Collected:
    """A measurement's tables concatenated over models, and the results folders they came from."""

    tables: dict[str, pd.DataFrame]
    folders: list[Path] = field(default_factory=list)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]


def model_list(models) -> list:
    """A papermill `models` parameter (comma-separated string or list) as a list."""
    if isinstance(models, str):
        return [m.strip() for m in models.split(",") if m.strip()]
    return list(models or ())


def _resolved(models, diffusion_models=()) -> list["ProteinLM | ModelSpec"]:
    """Every model of `models` resolved (loaded ones kept as they are); `diffusion_models` names
    models to treat as diffusion models although their config says masked (DPLM weights in a plain
    ESM folder)."""
    diffusion = set(model_list(diffusion_models))
    return [m if isinstance(m, ProteinLM) else resolve(m, objective="diffusion" if str(m) in diffusion else None)
            for m in model_list(models)]


def load_models(models, device: str = "cpu", diffusion_models=(),
                dtype: str = "float32") -> list["ProteinLM | ModelSpec"]:
    """Every model of `models` loaded once (already loaded ones are kept), e.g. to measure each
    several times. A model of the second environment (ESM C, ESM3) stays a `ModelSpec`: `run`
    sends it to .venv-esm. In a chapter run by the workflow (`cached_only()`) every model stays a
    `ModelSpec`: the chapter reads results and needs no weights."""
    return [m if isinstance(m, ProteinLM) or second_env.needed(m) or cached_only()
            else load_model(m, device=device, dtype=dtype) for m in _resolved(models, diffusion_models)]


@dataclass(frozen=True)
class Request:
    """One `runner.run` call a chapter makes: the measurement, the model (resolved, not loaded), its
    data and the masking ratio that names a diffusion model's folder, and the other keyword arguments."""

    measurement: str
    model: ModelSpec
    data: str
    mask_fraction: float
    kwargs: dict

    @property
    def folder(self) -> Path:
        return results_folder(self.kwargs.get("out", "results"), self.model, self.mask_fraction)

    def as_json(self) -> dict:
        """The call as JSON for `python -m plmdepth run-request` (how a workflow job runs it)."""
        objective = {"objective": self.model.objective} if self.model.objective_override else {}
        return {"measurement": self.measurement, "model": self.model.argument, **objective, "data": str(self.data),
                "mask_fraction": self.mask_fraction, **self.kwargs}


def _runs(measurement: str, models: list, structure: list, data: str, structure_fasta: str | None,
          diffusion_ratios, mask_fraction: float):
    """(model, data, masking ratio) of every run of `measurement`: diffusion models once per ratio."""
    if structure and not structure_fasta:
        raise ValueError("structure_models need structure_fasta: the FASTA of the chains their structures hold")
    per_sequence = find_measurement(measurement).inputs == "sequences"
    for model, source in [(m, data) for m in models] + [(m, structure_fasta) for m in structure]:
        ratios = list(diffusion_ratios) if per_sequence and model.objective == "diffusion" else [mask_fraction]
        for ratio in ratios:
            yield model, source, ratio


def requests(measurement: str, models, data: str, results_dir: str = "results", device: str = "cpu",
             diffusion_ratios=DIFFUSION_RATIOS, diffusion_models=(), mask_fraction: float = 0.15,
             structure_models=(), structure_fasta: str | None = None, dtype: str = "float32",
             **kwargs) -> list[Request]:
    """The runs `collect` makes with these arguments, without loading a model (for a workflow)."""
    specs, structure = _resolved(models, diffusion_models), _resolved(structure_models)
    return [Request(measurement, model, str(source), ratio,
                    dict(out=results_dir, device=device, dtype=dtype, progress=False, **kwargs))
            for model, source, ratio in _runs(measurement, specs, structure, data, structure_fasta,
                                              diffusion_ratios, mask_fraction)]


def collect(measurement: str, models, data: str, results_dir: str = "results", device: str = "cpu",
            diffusion_ratios=DIFFUSION_RATIOS, diffusion_models=(), mask_fraction: float = 0.15,
            structure_models=(), structure_fasta: str | None = None, dtype: str = "float32",
            **kwargs) -> Collected:
    """Run (or reuse) `measurement` on every model (every ratio for diffusion models) on `data`
    (a FASTA file, or the reference table of variant effects).

    `structure_models` (structure-conditioned models such as ProteinMPNN) run on
    `structure_fasta`, the chains of the structures they read, instead of `data`. Models given by
    name are loaded one at a time (one in memory), those given loaded are used as they are; in a
    chapter run by the workflow (`cached_only()`) none is loaded.
    """
    per_run, folders, loaded = [], [], {}
    for model, source, ratio in _runs(measurement, _resolved(models, diffusion_models), _resolved(structure_models),
                                      data, structure_fasta, diffusion_ratios, mask_fraction):
        if isinstance(model, ModelSpec) and not second_env.needed(model) and not cached_only():
            if model not in loaded:
                loaded = {model: load_model(model, device=device, dtype=dtype)}  # the previous one is released
            model = loaded[model]
        folder = run(measurement, model, source, out=results_dir, mask_fraction=ratio, progress=False,
                     device=device, dtype=dtype, **kwargs)
        per_run.append(read_tables(folder, measurement))
        folders.append(folder)
    tables = {name: pd.concat([t[name] for t in per_run], ignore_index=True) for name in per_run[0]}
    return Collected(tables, folders)


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
