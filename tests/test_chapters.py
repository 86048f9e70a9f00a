"""Every chapter defined once (lib/plmdepth/publish/chapters.py): the runs its notebook collects are
the workflow's jobs, for the default parameters and for changed ones, checked without building
the book: the notebook's parameters cell and the cell papermill injects are executed as papermill
would, and the runs the notebook then collects are compared with the jobs."""

import ast
import re

import jupytext
import pytest
from papermill.translators import PythonTranslator

from plmdepth.publish import ParameterError, grid
from plmdepth.publish.chapters import CHAPTERS, chapter, shared_parameters

CHANGES = [
    {},
    {"models": "iglm-s", "n_sequences": 7, "seed": 3},
    {"mask_fraction": 0.3, "structure_models": "", "dtype": "bfloat16"},
    {"models": "dplm_150m,iglm", "diffusion_ratios": [0.2, 0.6]},
    {"chapters": {"layer-skipping": {"aggregate": "effect_mean"}, "lens-or-layers": {"train_fraction": 0.4}}},
    {"chapters": {"variant-effects": {"assays": "all", "max_variants": 40, "scoring": "wt_marginal"},
                  "cross-model": {"tau": 0.2},
                  "lens-or-layers": {"epochs": 3, "vocab": "amino_acids"}}},
]


def _cells(name: str):
    return jupytext.read(chapter(name).notebook).cells


def notebook_namespace(name: str, injected: dict) -> dict:
    """What the notebook's code sees after its parameters cell and the cell papermill injects."""
    cell = next(c for c in _cells(name) if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(compile(cell.source, f"{name}:parameters", "exec"), namespace)
    exec(compile(PythonTranslator.codify(injected), f"{name}:injected-parameters", "exec"), namespace)
    return namespace


def collected(name: str, namespace: dict) -> list:
    """The runs `collect_chapter(name, globals())` makes in a notebook with this namespace."""
    definition = chapter(name)
    return [r for runs in definition.requests({k: namespace[k] for k in definition.defaults()}).values() for r in runs]


def _key(request) -> tuple:
    return str(request.folder), request.measurement, repr(sorted(request.effective().items()))


def _config(changes: dict) -> dict:
    return {**shared_parameters(), **changes}


@pytest.mark.parametrize("changes", CHANGES, ids=range(len(CHANGES)))
def test_the_runs_a_notebook_collects_are_the_workflows_jobs(changes):
    config = _config(changes)
    jobs, per_chapter = grid.jobs(config)
    for name in CHAPTERS:
        injected = grid.injected(name, grid.chapter_parameters(name, config))
        runs = collected(name, notebook_namespace(name, injected))
        assert runs, name
        assert sorted(map(_key, runs)) == sorted(_key(job.request) for job in per_chapter[name]), name
    # every job is one some chapter collects, and the outputs of a chapter's jobs are its inputs
    assert {_key(j.request) for j in jobs} == {_key(j.request) for js in per_chapter.values() for j in js}


def test_a_changed_parameter_reaches_the_runs():
    config = _config({"models": "iglm-s", "n_sequences": 7, "chapters": {"variant-effects": {"max_variants": 40}}})
    _, per_chapter = grid.jobs(config)
    assert {j.request.inputs.n_sequences for j in per_chapter["logit-lens"]} == {7}
    # the lens-or-layers chapter reads the variant-effects chapter's runs with that chapter's changes
    for name in ("variant-effects", "lens-or-layers"):
        ve = [j.request for j in per_chapter[name] if j.request.measurement == "variant_effects"]
        assert {r.inputs.max_variants for r in ve} == {40} and len(ve) == 3, name


def test_each_notebook_collects_its_runs_in_one_call_from_its_definition():
    """No run asked for by hand: a notebook reaches results through `collect_chapter` with its own name
    only, and its parameters cell is its definition's defaults."""
    for name, definition in CHAPTERS.items():
        source = "\n".join(c.source for c in _cells(name) if c.cell_type == "code")
        calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]
        called = {getattr(node.func, "id", getattr(node.func, "attr", None)) for node in calls}
        assert not called & {"collect", "collect_groups", "run", "measure", "load_model", "load_models", "build",
                             "read_run", "read_record", "Results"}, (name, called)
        collects = [node for node in calls if getattr(node.func, "id", None) == "collect_chapter"]
        assert len(collects) == 1 and ast.literal_eval(collects[0].args[0]) == name, name
        assert ast.unparse(collects[0]) == f"collect_chapter('{name}', globals())", name  # nothing changed on the way
        assert re.search(rf'globals\(\)\.update\(CHAPTERS\["{name}"\]\.defaults\(\)\)', source), name
        assert notebook_namespace(name, {})["models"] == definition.defaults()["models"]


def test_an_unknown_chapter_parameter_is_refused_in_one_sentence():
    with pytest.raises(ParameterError, match="chapter 'logit-lens' has no parameter colour; its parameters are"):
        chapter("logit-lens").parameters({"colour": "red"})
    with pytest.raises(ParameterError, match="has no parameter tau"):
        grid.jobs(_config({"chapters": {"logit-lens": {"tau": 0.2}}}))


@pytest.mark.slow
def test_a_diffusion_model_has_one_name_in_every_chapter(tmp_path, monkeypatch):
    """A local DPLM folder at two masking ratios, through every chapter: in every glued sentence and
    table and in every figure's data it is called by its one display name, "<name> (mask <ratio>)"."""
    import json

    import nbformat
    import pandas as pd

    from conftest import tiny_esm_hf
    from plmdepth.publish.book import run_chapter

    hf = tiny_esm_hf(seed=4, max_positions=256)
    hf.config.dplm_type = "dplm"
    folder = tmp_path / "dplm_tiny"
    hf.save_pretrained(folder)
    figures = tmp_path / "figures"
    monkeypatch.setenv("PLMDEPTH_FIGURES", str(figures))
    common = {"models": str(folder), "diffusion_ratios": [0.15, 0.5], "structure_models": "", "n_sequences": 6,
              "results_dir": str(tmp_path / "results"), "twin_seeds": 0, "untrained_models": ""}
    variant_effects = {"models": str(folder), "assays": "A4_HUMAN_Seuma_2022_subset", "max_variants": 8,
                       "n_bootstrap": 5}
    own = {"variant-effects": variant_effects, "lens-or-layers": {"epochs": 2, "variant_effects": variant_effects}}
    names = {"dplm_tiny (mask 0.15)", "dplm_tiny (mask 0.5)"}
    for name in CHAPTERS:
        params = {**common, **({k: v for k, v in variant_effects.items()} if name == "variant-effects" else {}),
                  **own.get(name, {})}
        executed = run_chapter(name, params, output=tmp_path / f"{name}.ipynb")
        texts = [value for cell in nbformat.read(executed, as_version=4).cells for out in cell.get("outputs", [])
                 for kind, value in out.get("data", {}).items()
                 if kind.startswith("application/papermill.record/text/")]
        said = "\n".join(map(str, texts))
        assert any(n in said for n in names), name
        bare = re.findall(r"dplm_tiny(?! \(mask 0\.(?:15|5)\))(?!@mask)", said)
        if name == "lens-or-layers":  # the weight-share sentence names every model kept at 3/4
            sentence = re.search(r"The blocks of (.*?) each hold the same number of weights", said)
            assert sentence and "dplm_tiny (mask 0.5)" in sentence.group(1), said
        assert not bare, (name, [said[max(0, m.start() - 60):m.end() + 20]
                                 for m in re.finditer(r"dplm_tiny(?! \(mask)(?!@mask)", said)][:3])
    shown = set()
    for csv in figures.glob("*.csv"):
        table = pd.read_csv(csv)
        if "model" in table:
            assert set(table["model"]) <= names, csv.name
            shown |= set(table["model"])
    assert shown == names
    runs = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("*/run.json")]
    assert sorted(p.parent.name for p in (tmp_path / "results").glob("*/run.json")) == [
        "dplm_tiny@mask0.15", "dplm_tiny@mask0.5"] and all(r["model"]["objective"] == "diffusion" for r in runs)


# the measurements each claim's test number reads (analysis/claims.py)
CLAIM_READS = {"a": {"layer_skipping"}, "b": {"logit_lens", "layer_skipping"}, "c": {"layer_skipping"},
               "d": {"layer_skipping"}, "e": {"variant_effects"}}


def test_a_chapters_verdicts_read_only_runs_it_asks_for():
    """A chapter's "Does this build agree?" reads tables of the runs the chapter itself asks for, so the
    workflow makes them before the chapter and the verdict never depends on which jobs happened to
    finish first."""
    for name, definition in CHAPTERS.items():
        source = definition.notebook.read_text()
        claimed = "".join(re.findall(r'verdict_markdown\(claims\([^)]*\), "(\w+)"\)', source))
        if not claimed:
            continue
        asked: dict = {}
        for request in (r for runs in definition.requests(definition.defaults()).values() for r in runs):
            asked.setdefault(request.folder, set()).add(request.measurement)
        needed = set().union(*(CLAIM_READS[c] for c in claimed))
        for folder, measurements in asked.items():
            assert needed <= measurements, (name, folder, needed - measurements)
