"""Copy the files chapters link to with plain links into the HTML output, unrenamed.

Sphinx copies what a `{download}` role names into `_downloads/<hash>/`, served as a download.
Two kinds of files are linked with plain relative links instead, so a browser opens them:

- `figures/`: every figure's interactive HTML (and its SVG, PNG, CSV), written by the chapters
  into book/figures/ and linked from each chapter page as `../figures/<label>.html`, and from
  the figure index's thumbnails as `figures/<label>.png`;
- `results/<folder>/run.json`: the full record of each run behind a chapter, linked from the
  chapter's provenance table as `../results/<folder>/run.json` (only run.json is copied; the
  results tables are large and each figure's data is already offered as CSV).

It also puts the book's favicon at the root as favicon.ico: the interactive figures are
standalone pages that name none, so a browser asks for /favicon.ico (a 404 otherwise).
"""

import shutil
from pathlib import Path


def _copy_files(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    source = Path(app.srcdir)
    out = Path(app.outdir)
    figures = source / "figures"
    if figures.is_dir():
        shutil.copytree(figures, out / "figures", dirs_exist_ok=True)
    favicon = source / "_assets" / "favicon.ico"
    if favicon.is_file():
        shutil.copy2(favicon, out / "favicon.ico")
    for run_json in sorted((source.parent / "results").glob("*/run.json")):
        target = out / "results" / run_json.parent.name / "run.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run_json, target)


def setup(app):
    app.connect("build-finished", _copy_files)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
