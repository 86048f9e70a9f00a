"""Re-executing one chapter on another model (a local save_pretrained folder)."""

import json

import nbformat
import pytest

from conftest import tiny_esm_hf
from plmdepth.publish.book import BookError, run_chapter
from plmdepth.publish.chapters import CHAPTERS, chapter, shared_parameters


def test_chapter_defaults_are_the_shared_parameters_then_its_own():
    defaults = chapter("layer-skipping").defaults()
    assert defaults["models"] == "antiberty,sapiens-vh,iglm,iglm-s" and defaults["n_sequences"] == 200
    assert defaults["mode"] == "future"


def test_shared_parameters_come_from_one_file_and_a_chapter_only_adds_or_overrides():
    shared = shared_parameters()
    assert {"models", "seed", "results_dir", "device", "diffusion_ratios"} <= set(shared)
    for name, definition in CHAPTERS.items():
        defaults = definition.defaults()
        assert set(shared) <= set(defaults) and defaults["results_dir"] == shared["results_dir"]
        repeated = {k for k, v in definition.own.items() if k in shared and shared[k] == v.default}
        assert not repeated, f"chapter {name} repeats shared parameters {repeated} (notebooks/parameters.yml)"
    assert chapter("variant-effects").defaults()["models"].startswith("unirep-")  # its own models


def test_unknown_parameter_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(BookError, match="has no parameter n_seqs"):
        run_chapter("logit-lens", {"n_seqs": 3}, output=tmp_path / "x.ipynb")


@pytest.mark.shipped
def test_chapter_on_a_local_folder_adds_its_results_and_reuses_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PLMDEPTH_FIGURES", str(tmp_path / "figures"))  # leave the book's figures alone
    folder = tmp_path / "my_esm"
    tiny_esm_hf(seed=9, max_positions=256).save_pretrained(folder)
    results = tmp_path / "results"
    params = {"models": "iglm-s", "structure_models": "", "n_sequences": 6, "results_dir": str(results),
              "twin_seeds": 1, "untrained_models": "esm2_t6_8M"}
    out = run_chapter("layer-skipping", params, add_models=str(folder), output=tmp_path / "chapter.ipynb")
    # each model and its untrained twin (seed 0); ESM-2 8M from its published config alone, untrained
    assert {p.name for p in results.iterdir()} == {"iglm-s", "my_esm", "iglm-s@random0", "my_esm@random0",
                                                  "esm2_t6_8M@random0"}
    nb = nbformat.read(out, as_version=4)
    svgs = [o for c in nb.cells for o in c.get("outputs", [])
            if "application/papermill.record/image/svg+xml" in o.get("data", {})]
    assert len(svgs) == 4  # the chapter's four glued figures
    links = [o["data"]["application/papermill.record/text/markdown"] for c in nb.cells for o in c.get("outputs", [])
             if "application/papermill.record/text/markdown" in o.get("data", {})]
    links = [text for text in links if "{download}" in text]  # the other glued markdown: the verdicts
    assert len(links) == 4 and all("{download}`SVG <../figures/fig-skip-" in text and "Cite as:" in text
                                   for text in links)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f'"iglm-s,{folder}"' in injected.source
    run_json = json.loads((results / "my_esm" / "run.json").read_text())
    stamps = {p.name: p.stat().st_mtime_ns for p in (results / "my_esm").iterdir()}
    run_chapter("layer-skipping", params, add_models=str(folder), output=tmp_path / "chapter.ipynb")
    assert {p.name: p.stat().st_mtime_ns for p in (results / "my_esm").iterdir()} == stamps  # cached
    assert run_json["model"]["n_layers"] == 3
    assert {p.name for p in (tmp_path / "figures").glob("*.svg")} == {
        "fig-skip-effect.svg", "fig-skip-output.svg", "fig-skip-kl.svg", "fig-skip-parts.svg"}
    # the twins are drawn (dashed, with their range) and named in the caption; the heat map shows the
    # architecture run untrained only as a panel of its own
    assert 'stroke-dasharray="5,3"' in (tmp_path / "figures" / "fig-skip-output.svg").read_text()
    assert "esm2_t6_8M (untrained)" in (tmp_path / "figures" / "fig-skip-effect.svg").read_text()
    texts = json.dumps([o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])])
    assert "untrained twins" in texts and "initialiser; one seed" in texts


@pytest.mark.shipped
def test_the_logit_lens_chapter_adds_a_bert_and_a_llama_folder(tmp_path, monkeypatch):
    """`make chapter CHAPTER=logit-lens MODEL=<folder>`, for folders the generic adapter reads."""
    import tiny_hf

    monkeypatch.setenv("PLMDEPTH_FIGURES", str(tmp_path / "figures"))
    # seed 9: a twin (seed 0) is a different initialisation from the saved model
    folders = [tiny_hf.write(t, tmp_path / f"my_{t}", seed=9, positions=1026) for t in ("bert", "llama")]
    results = tmp_path / "results"
    params = {"models": "iglm-s", "structure_models": "", "n_sequences": 6, "results_dir": str(results),
              "twin_seeds": 1, "untrained_models": "", "lens_or_layers": {"epochs": 2}}
    out = run_chapter("logit-lens", params, add_models=",".join(map(str, folders)), output=tmp_path / "chapter.ipynb")
    assert {"my_bert", "my_llama", "my_bert@random0", "my_llama@random0"} <= {p.name for p in results.iterdir()}
    for name in ("my_bert", "my_llama"):
        record = json.loads((results / name / "run.json").read_text())
        assert record["model"]["n_layers"] == 3 and "logit_lens" in record["measurements"]
    nb = nbformat.read(out, as_version=4)
    texts = json.dumps([o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])])
    assert "my_bert" in texts and "my_llama" in texts
