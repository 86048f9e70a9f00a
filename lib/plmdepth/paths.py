"""Where the project's folders are: data, notebooks, book, figures and the second environment.

The library does not assume where it is installed. The project root is `$PLMDEPTH_ROOT` when
set, else the nearest folder at or above the working directory that holds `_toc.yml` (the
book's table of contents) and `notebooks/`. `$PLMDEPTH_FIGURES` moves the figure downloads
(tests executing a chapter on a toy model must not overwrite the book's) and
`$PLMDEPTH_ESM_ENV` the second environment.
"""

from __future__ import annotations

import os
from pathlib import Path


class ProjectNotFound(RuntimeError):
    """No project folder (with `_toc.yml` and `notebooks/`) around the working directory."""


def project_root() -> Path:
    """The project folder: `$PLMDEPTH_ROOT`, or the nearest one above the working directory."""
    if os.environ.get("PLMDEPTH_ROOT"):
        root = Path(os.environ["PLMDEPTH_ROOT"]).resolve()
        if not (root / "_toc.yml").is_file():
            raise ProjectNotFound(f"PLMDEPTH_ROOT={root} has no _toc.yml; point it at the plmdepth project folder.")
        return root
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "notebooks").is_dir():
            return folder
    raise ProjectNotFound(f"no plmdepth project (a folder with _toc.yml and notebooks/) at or above {here}; "
                          "run from inside the project or set PLMDEPTH_ROOT to it.")


def relative_to_project(path: str | Path) -> str:
    """`path` relative to the project folder, or in full when it lies elsewhere (or there is no project)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(project_root()))
    except (ValueError, ProjectNotFound):
        return str(path)


def data_dir() -> Path:
    return project_root() / "data"


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def book_dir() -> Path:
    return project_root() / "book"


def figures_dir() -> Path:
    """Where chapters write figure downloads: `$PLMDEPTH_FIGURES`, else book/figures."""
    return Path(os.environ["PLMDEPTH_FIGURES"]) if os.environ.get("PLMDEPTH_FIGURES") else book_dir() / "figures"


def failed_chapters_dir() -> Path:
    """Where a chapter whose execution failed keeps its executed notebook: outside the book's sources."""
    return project_root() / "logs" / "chapters"


def esm_env() -> Path:
    """The second environment (EvolutionaryScale's `esm`): `$PLMDEPTH_ESM_ENV`, else .venv-esm in the project."""
    return Path(os.environ["PLMDEPTH_ESM_ENV"]) if os.environ.get("PLMDEPTH_ESM_ENV") else project_root() / ".venv-esm"
