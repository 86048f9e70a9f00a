"""The book builds from the real offline models and works with no network."""

import re
import subprocess
import sys

import pytest

from plmdepth import paths
from plmdepth.publish.book import BookError, check_toc

ROOT = paths.project_root()
BOOK = paths.book_dir()

HTML = BOOK / "_build" / "html"


@pytest.fixture(scope="module")
def built_book():
    proc = subprocess.run([sys.executable, "-m", "plmdepth", "book"], cwd=ROOT, capture_output=True, text=True)
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
@pytest.mark.parametrize("chapter,n_figures", [("contributions", 2), ("layer_skipping", 3), ("cross_model", 3),
                                              ("variant_effects", 1)])
def test_every_chapter_has_its_numbered_captioned_figures(built_book, chapter, n_figures):
    page = (built_book / "chapters" / f"{chapter}.html").read_text()
    captions = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<figcaption>(.*?)</figcaption>", page, re.S)]
    assert len(captions) == n_figures
    models = "unirep-64, unirep-256, unirep-1900" if chapter == "variant_effects" else "antiberty, sapiens-vh, iglm, iglm-s"
    assert all(re.search(r"Fig\. \d+", c) and f"Models: {models}" in c for c in captions)
    assert len(re.findall(r'<img[^>]+src="[^"]+\.svg"', page)) == n_figures
    assert "Provenance" in page


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
