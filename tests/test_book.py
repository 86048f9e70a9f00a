"""The book builds from the real offline models and works with no network.

The `book` tests build the whole book (`python -m plmdepth book`: the Snakemake workflow runs
every measurement and chapter that is missing or out of date, chapters only reading results).
With PLMDEPTH_BOOK_NO_EXECUTE=1 they build it from the executed notebooks already in
book/chapters/ instead (`python -m plmdepth book --no-execute`).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plmdepth import paths
from plmdepth.publish import book as book_module
from plmdepth.publish.book import BookError, check_toc

ROOT = paths.project_root()
BOOK = paths.book_dir()

HTML = BOOK / "_build" / "html"


@pytest.fixture(scope="module")
def built_book():
    execute = [] if os.environ.get("PLMDEPTH_BOOK_NO_EXECUTE") == "1" else None
    cmd = [sys.executable, "-m", "plmdepth", "book", *(["--no-execute"] if execute == [] else [])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return HTML


@pytest.mark.book
def test_chapter_and_figure_files_are_in_the_html(built_book):
    page = (built_book / "chapters" / "logit_lens.html").read_text()
    assert "The logit lens" in page
    images = re.findall(r'<img[^>]+src="([^"]+\.svg)"', page)
    assert len(images) >= 3
    for src in images:
        svg = (built_book / "chapters" / src).resolve()
        assert svg.is_file() and "<svg" in svg.read_text()[:500]
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page, re.S)
    text = [re.sub(r"<[^>]+>", "", c) for c in captions]
    numbers = [re.search(r"Fig\. (\d+)", t).group(1) for t in text]
    assert len(numbers) == 3 and len(set(numbers)) == 3
    assert all("Models: antiberty, sapiens-vh, iglm, iglm-s" in t and "seed 0" in t for t in text)
    # real numbers from the run, not placeholders: the provenance table names the wheels
    assert "antiberty==0.1.3" in page and "iglm==0.1.0" in page and "sapiens==1.0.5" in page


@pytest.mark.book
@pytest.mark.parametrize("chapter", ["contributions", "layer_skipping", "cross_model", "variant_effects",
                                     "lens_or_layers"])
def test_every_chapter_has_its_numbered_captioned_figures(built_book, chapter):
    # as many as the chapter's notebook names (`{glue:figure}` with a `:name:`), at least one
    n_figures = sum(1 for entry in book_module.figure_entries() if entry["chapter"] == chapter)
    assert n_figures >= 1
    page = (built_book / "chapters" / f"{chapter}.html").read_text()
    captions = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<figcaption>(.*?)</figcaption>", page, re.S)]
    assert len(captions) == n_figures
    antibody, unirep = "Models: antiberty, sapiens-vh, iglm, iglm-s", "Models: unirep-64, unirep-256, unirep-1900"
    assert all(re.search(r"Fig\. \d+", c) for c in captions)
    if chapter == "lens_or_layers":  # the lens figures are the antibody models', the frontier of fitness UniRep's
        assert [unirep in c for c in captions] == [False, False, True] and antibody in captions[0]
    else:
        assert all((unirep if chapter == "variant_effects" else antibody) in c for c in captions)
    assert len(re.findall(r'<img[^>]+src="[^"]+\.svg"', page)) == n_figures
    assert "Provenance" in page


@pytest.mark.book
def test_the_variant_effect_page_states_the_final_layers_range_from_the_results(built_book):
    """The sentence on the final layers' ρ is the library's, computed from this build's results folders
    (the variant-effects chapter's runs), not typed."""
    from plmdepth.publish import grid
    from plmdepth.publish.chapter_text import final_range_sentence
    from plmdepth.publish.chapters import shared_parameters
    from plmdepth.results import Results

    _, per_chapter = grid.jobs(shared_parameters())
    folders = [ROOT / job.request.folder for job in per_chapter["variant-effects"]]
    table = Results(folders).tables("variant_effects")["variant_effects"]
    sentence = final_range_sentence(table).replace("`", "")
    assert sentence.startswith("At the final layer, ρ ranges from ") and " pairs" in sentence
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", (built_book / "chapters" / "variant_effects.html").read_text()))
    assert sentence in page


@pytest.mark.book
def test_chapters_show_no_errors_or_warnings(built_book):
    import nbformat

    for notebook in (BOOK / "chapters").glob("*.ipynb"):
        nb = nbformat.read(notebook, as_version=4)
        outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], notebook
        stderr = [o["text"] for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"]
        assert not stderr, (notebook, stderr)
    for page in (built_book / "chapters").glob("*.html"):
        assert "Traceback" not in page.read_text(), page


@pytest.mark.book
def test_no_page_loads_anything_from_another_host(built_book):
    for page in built_book.rglob("*.html"):
        html = page.read_text()
        remote_scripts = re.findall(r'<script[^>]+src="(?:https?:)?//[^"]+"', html)
        remote_styles = re.findall(r'<link[^>]+rel="stylesheet"[^>]+href="(?:https?:)?//[^"]+"', html)
        remote_images = re.findall(r'<img[^>]+src="(?:https?:)?//[^"]+"', html)
        assert not (remote_scripts or remote_styles or remote_images), (page, remote_scripts, remote_styles)


@pytest.mark.book
def test_toc_entries_exist_after_the_build(built_book):
    check_toc()


def test_check_toc_flags_a_missing_chapter(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: index\nchapters:\n  - file: chapters/no_such_chapter\n")
    with pytest.raises(BookError, match="chapters/no_such_chapter"):
        check_toc(toc)


@pytest.mark.book
def test_figure_index_shows_thumbnail_title_chapter_and_paper_figure(built_book):
    page = (built_book / "figures.html").read_text()
    entries = book_module.figure_entries()
    assert entries
    body = page[re.search(r'<table class="[^"]*figure-index', page).start():]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body[:body.index("</table>")], re.S)[1:]
    assert len(rows) == len(entries)
    for entry, row in zip(entries, rows):
        assert re.search(r'<a[^>]+href="figures/%s\.png"[^>]*><img[^>]+src="_images/%s\.png"' % (entry["label"],
                                                                                                entry["label"]), row)
        assert (built_book / "_images" / f"{entry['label']}.png").is_file()
        assert (built_book / "figures" / f"{entry['label']}.png").is_file()
        assert f'chapters/{entry["chapter"]}.html' in row and "Fig. " in row
        assert (entry["paper"] or "—") in row.replace("&#8211;", "–")


@pytest.mark.book
def test_chapters_link_interactive_figures_and_runs_that_the_html_holds(built_book):
    for chapter in ("logit_lens", "variant_effects", "cross_model"):
        page = (built_book / "chapters" / f"{chapter}.html").read_text()
        interactive = re.findall(r'href="(\.\./figures/fig-[\w-]+\.html)"', page)
        assert interactive and all((built_book / "chapters" / h).resolve().is_file() for h in interactive)
        assert "_downloads" not in "".join(re.findall(r'href="([^"]+\.html)"', page))
        runs = re.findall(r'href="(\.\./results/[^"/]+/run\.json)"', page)
        assert runs and all((built_book / "chapters" / r).resolve().is_file() for r in runs)
        assert '<details class="plmdepth-provenance">' in page


@pytest.mark.book
def test_no_table_has_a_pandas_index_column(built_book):
    for page in (built_book / "chapters").glob("*.html"):
        html = page.read_text()
        # pandas writes its index as <th> cells in body rows (class "row_heading" with Styler)
        assert "row_heading" not in html and not re.search(r"<tbody>\s*<tr>\s*<th", html), page


@pytest.mark.book
def test_build_stamp_names_the_commit(built_book):
    page = (built_book / "index.html").read_text()
    assert re.search(r"from plmdepth [\w.+-]+ \((git commit [0-9a-f]{7,}( \+ uncommitted changes)?|"
                     r"not a git checkout)\)", page)


@pytest.mark.book
def test_pages_use_no_internal_wording(built_book):
    for page in built_book.rglob("*.html"):
        if "_static" in page.parts or "figures" in page.parts:
            continue
        text = re.sub(r"<[^>]+>", " ", page.read_text())
        assert not re.search(r"\bSPEC\b", text), page


def test_figure_entries_read_title_and_paper_figure_from_captions(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    caption = {
        "contributions": "Relative update size (cf. paper Fig. 3). {glue:text}`contrib_run`",
        "layer_skipping": "Skip effect of block s, e.g. the first; cf. paper Figs. 1-2. More text.",
        "logit_lens": "KL of each layer against depth. {glue:text}`logit_lens_run`",
        "cross_model": "Every model, cf. paper Figs. 3–4.",
        "depth_ladder": "Training of the ladder.",
        "variant_effects": "Spearman correlation per layer.",
        "lens_or_layers": "KL through the logit and the tuned lens.",
    }
    for stem, text in caption.items():
        (notebooks / f"{stem}.py").write_text(
            f"# %% [markdown]\n# ```{{glue:figure}} fig_{stem}\n# :name: fig-{stem.replace('_', '-')}\n#\n"
            f"# {text}\n# ```\n")
    monkeypatch.setattr(paths, "notebooks_dir", lambda: notebooks)
    entries = {e["label"]: e for e in book_module.figure_entries()}
    assert entries["fig-contributions"] == {"chapter": "contributions", "label": "fig-contributions",
                                            "title": "Relative update size.", "paper": "Fig. 3"}
    assert entries["fig-layer-skipping"]["title"] == "Skip effect of block s, e.g. the first."
    assert entries["fig-layer-skipping"]["paper"] == "Figs. 1–2"
    assert entries["fig-cross-model"]["paper"] == "Figs. 3–4"
    assert entries["fig-logit-lens"]["paper"] is None and entries["fig-logit-lens"]["title"].endswith("depth.")
    page = book_module.figure_index_page(list(entries.values()))
    assert "{list-table}" in page and "| —" not in page and "  - —" in page


def test_git_state_outside_a_checkout(tmp_path):
    assert book_module.git_state(tmp_path) == "not a git checkout"
    assert re.fullmatch(r"commit [0-9a-f]{7,}( \+ uncommitted changes)?|not a git checkout",
                        book_module.git_state(ROOT))


def test_download_links_open_the_interactive_figure_in_the_browser():
    from plmdepth.publish.chapter import download_links

    text = download_links("fig-x")
    assert "{download}`SVG <../figures/fig-x.svg>`" in text
    assert '<a class="reference external" href="../figures/fig-x.html">' in text and "{download}`interactive" not in text


def test_provenance_is_a_collapsed_compact_table_without_index(tmp_path, monkeypatch):
    import json

    from plmdepth.publish.provenance import provenance

    (tmp_path / "_toc.yml").write_text("root: index\n")
    monkeypatch.setenv("PLMDEPTH_ROOT", str(tmp_path))  # a project of its own, with one results folder
    folder = tmp_path / "results" / "run1"
    folder.mkdir(parents=True)
    run = {"model": {"name": "m", "source": "m==1.0", "checksum": "sha256:" + "ab" * 32},
           "versions": {"torch": "2"}, "measurements": {"logit_lens": {
               "fasta": "data/x.fasta", "key": {"fasta_sha256": "sha256:" + "cd" * 32}, "n_sequences": 5,
               "seed": 0, "wall_time_s": 12.3}}}
    (folder / "run.json").write_text(json.dumps(run))
    html = provenance([folder], "logit_lens")._repr_html_()
    assert html.startswith('<details class="plmdepth-provenance">') and "<th></th>" not in html
    assert '<a href="../results/run1/run.json">' in html and "m==1.0" in html
    assert "abababababab…" in html and "x.fasta" in html and "12 s" in html and "torch 2" in html


def test_a_failed_chapter_keeps_its_notebook_outside_the_book_and_a_later_success_clears_it(tmp_path, monkeypatch):
    """A chapter that fails says why in one sentence and keeps its executed notebook under logs/,
    never in the book's sources (where Sphinx would read it); the next successful run removes it."""
    kept = tmp_path / "logs" / "chapters"
    monkeypatch.setattr(paths, "failed_chapters_dir", lambda: kept)
    target = tmp_path / "book" / "chapters" / "logit_lens.ipynb"
    with pytest.raises(BookError) as err:
        book_module.run_chapter("logit-lens", {"models": "no-such-model-anywhere"}, output=target)
    message = str(err.value)
    assert "chapter 'logit-lens' failed in cell" in message and "no-such-model-anywhere" in message
    assert "logit_lens.failed.ipynb" in message and (kept / "logit_lens.failed.ipynb").is_file()
    assert not target.parent.exists() or not any(target.parent.iterdir())  # nothing in the book's tree
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook",
                        lambda nb, out, **k: __import__("pathlib").Path(out).write_text("{}"))
    book_module.run_chapter("logit-lens", output=target)
    assert target.is_file() and not list(kept.iterdir())


@pytest.mark.book
def test_the_book_build_ignores_hidden_and_temporary_files(built_book):
    """A hidden notebook left in the book's sources (by a killed run, an editor) does not break the build."""
    stray = BOOK / "chapters" / ".logit_lens.partial.ipynb"
    stray.write_text((BOOK / "chapters" / "logit_lens.ipynb").read_text())
    try:
        proc = subprocess.run([sys.executable, "-m", "plmdepth", "book", "--no-execute"], cwd=ROOT,
                              capture_output=True, text=True)
    finally:
        stray.unlink()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_a_full_disk_during_the_html_build_leaves_the_previous_book_whole(tmp_path, monkeypatch):
    """jupyter-book stopped by ENOSPC part-way through the staged build: the error names the build, the
    previous book/_build/html is untouched byte for byte, and nothing half-written is left behind."""
    import errno

    book = tmp_path / "book"
    html = book / "_build" / "html"
    html.mkdir(parents=True)
    (html / "index.html").write_text("<html>the previous book</html>")
    (html / "chapters").mkdir()
    (html / "chapters" / "logit_lens.html").write_text("<html>previous chapter</html>")
    before = {p.relative_to(html): p.read_bytes() for p in html.rglob("*") if p.is_file()}
    monkeypatch.setattr(paths, "project_root", lambda: tmp_path)
    monkeypatch.setattr(paths, "book_dir", lambda: book)
    for name in ("install_mathjax", "check_toc"):
        monkeypatch.setattr(book_module, name, lambda *a, **k: None)
    monkeypatch.setattr(book_module, "write_generated_pages", lambda version: None)

    def full_disk(cmd, cwd=None, **kwargs):  # writes part of the staged book, then runs out of space
        staged = Path(cmd[cmd.index("--path-output") + 1]) / "_build" / "html"
        staged.mkdir(parents=True)
        (staged / "index.html").write_text("<html>half")
        print(OSError(errno.ENOSPC, "No space left on device"), file=sys.stderr)
        return subprocess.CompletedProcess(cmd, 2)

    monkeypatch.setattr(book_module.subprocess, "run", full_disk)
    with pytest.raises(BookError, match="jupyter-book build failed"):
        book_module.build_book(execute=False)
    after = {p.relative_to(html): p.read_bytes() for p in html.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in (book / "_build").iterdir()) == ["html"]
