"""FASTA validation, masking plans and model-loading errors give the promised messages."""

import json

import pytest

from plmdepth.fasta import FastaError, Record, check_residues, read_fasta
from plmdepth.plan import MaskingPlan, make_plan
from plmdepth.models import REGISTRY, ModelLoadError, load_model


def write(tmp_path, text, name="x.fasta"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bad_letter_names_record_and_position(tmp_path):
    recs = read_fasta(write(tmp_path, ">ok\nACDE\n>bad one\nACDJK\n"))
    with pytest.raises(FastaError, match=r"record 'bad': letter 'J' at position 4 is not in the model's alphabet"):
        check_residues(recs, "ACDEFGHIKLMNPQRSTVWY")


def test_ambiguous_letter_error_suggests_map_and_map_accepts_it(tmp_path):
    recs = read_fasta(write(tmp_path, ">a\nACXDE\n"))
    with pytest.raises(FastaError, match=r"letter 'X' at position 3 .*unknown='map'"):
        check_residues(recs, "ACDE")
    assert check_residues(recs, "ACDE", unknown="map")[0].sequence == "ACXDE"


def test_empty_record(tmp_path):
    with pytest.raises(FastaError, match=r"record 'empty' has an empty sequence"):
        read_fasta(write(tmp_path, ">a\nAC\n>empty\n>b\nDE\n"))


def test_duplicate_ids(tmp_path):
    with pytest.raises(FastaError, match=r"duplicate id 'a' \(records 1 and 3\)"):
        read_fasta(write(tmp_path, ">a\nAC\n>b\nDE\n>a x\nFF\n"))


def test_no_records_and_text_before_header(tmp_path):
    with pytest.raises(FastaError, match="holds no FASTA records"):
        read_fasta(write(tmp_path, "\n\n"))
    with pytest.raises(FastaError, match="line 1 comes before the first '>' header"):
        read_fasta(write(tmp_path, "ACDE\n>a\nAC\n"))
    with pytest.raises(FastaError, match="does not exist"):
        read_fasta(tmp_path / "missing.fasta")


def test_too_long_errors_or_crops(tmp_path):
    recs = [Record("long", "", "ACDEFGHIK")]
    with pytest.raises(FastaError, match=r"record 'long' has 9 residues, more than the model's context of 5"):
        check_residues(recs, "ACDEFGHIK", max_length=5)
    assert check_residues(recs, "ACDEFGHIK", max_length=5, too_long="crop")[0].sequence == "ACDEF"


def test_multiline_records_and_limit(tmp_path):
    recs = read_fasta(write(tmp_path, ">a desc here\nAC\nde\n>b\nFF\n"), limit=1)
    assert recs == [Record("a", "desc here", "ACDE")]


def test_plan_rules_and_round_trip(tmp_path):
    recs = [Record(f"s{i}", "", "A" * (20 + 10 * i)) for i in range(5)]
    plan = make_plan(recs, "masked", seed=7)
    for rec, sp in zip(recs, plan.sequences):
        assert len(sp.masked) == round(0.15 * len(rec.sequence))
        assert set(sp.future) <= set(sp.masked) and len(sp.future) == round(len(sp.masked) / 2)
    # a sequence's plan does not depend on the others
    assert make_plan(recs[2:3], "masked", seed=7).sequences[0] == plan.sequences[2]
    assert make_plan(recs, "masked", seed=8).sequences[0] != plan.sequences[0]
    plan.save(tmp_path / "plan.json")
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["objective"] == "masked" and set(data["sequences"][0]) == {"id", "masked", "future"}
    assert MaskingPlan.load(tmp_path / "plan.json").sequences == plan.sequences

    ar = make_plan(recs, "autoregressive", seed=0)
    for rec, sp in zip(recs, ar.sequences):
        assert len(sp.splits) == 4 and all(8 <= t <= len(rec.sequence) - 4 for t in sp.splits)


def test_unknown_model_name_is_one_clear_sentence():
    with pytest.raises(ModelLoadError, match=r"unknown model 'esm3000'; use a registered name \(antiberty, "):
        load_model("esm3000")


def test_offline_hub_id_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_model("facebook/esm2_t6_8M_UR50D")
    message = str(err.value)
    assert "hub cannot be reached" in message
    assert "hf download facebook/esm2_t6_8M_UR50D --local-dir" in message
    assert "antiberty, iglm, iglm-s" in message
    assert "\n" not in message


def test_registered_esm_name_offline_gives_the_same_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="facebook/esm2_t12_35M_UR50D' is not a local folder"):
        load_model("esm2_t12_35M")


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(str(tmp_path))


def test_fair_esm_registry_name_offline_is_one_clear_sentence(monkeypatch, tmp_path):
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError) as err:
        load_model("esm2_t6_8M-fair")
    assert "\n" not in str(err.value) and ".pt" in str(err.value)


def test_dplm_registry_names_are_diffusion_models_and_fail_offline_clearly(monkeypatch, tmp_path):
    from plmdepth.models import REGISTRY

    assert [REGISTRY[f"dplm_{s}"].objective for s in ("150m", "650m", "3b")] == ["diffusion"] * 3
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="airkingbd/dplm_150m' is not a local folder"):
        load_model("dplm_150m")


HUB_ENTRIES = [name for name, entry in REGISTRY.items() if not entry.offline and entry.environment == "main"]


@pytest.mark.parametrize("name", HUB_ENTRIES)
def test_every_hub_registry_name_fails_offline_in_one_sentence_naming_its_source(monkeypatch, tmp_path, name):
    """ESM C / ESM3 (environment "esm") are checked inside .venv-esm (test_evolutionaryscale)."""
    import torch

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # empty fair-esm cache
    with pytest.raises(ModelLoadError) as err:
        load_model(name)
    message = str(err.value)
    assert REGISTRY[name].source.split()[-1] in message and "\n" not in message


def test_first_download_is_logged_not_printed(monkeypatch, tmp_path, capsys, caplog):
    """A chapter's kernel must not show download messages on the page: they go to a logger."""
    import logging

    from plmdepth import weights

    monkeypatch.setenv("PLMDEPTH_CACHE", str(tmp_path / "cache"))
    small = weights.ShippedWheel("sapiens", "1.0.5",
                                 "af1a8d445e9d7ab9f5f04512cf325acdfd9dd0930eb957b63ec234df1f141a8b",
                                 ("sapiens/models/v1/dict.txt",), "MIT")
    with caplog.at_level(logging.INFO, logger="plmdepth"):
        folder = weights.fetch(small)
    assert (folder / "sapiens/models/v1/dict.txt").is_file()
    assert "Fetching the files shipped in sapiens==1.0.5" in caplog.text
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("model", ["iglm", "antiberty", "unirep-64", "proteinmpnn"])
def test_objective_on_a_model_whose_objective_cannot_be_chosen_is_one_sentence(model, tmp_path, capsys):
    """`--objective` (a chapter's diffusion_models) applies to ESM-2 networks only: elsewhere it is
    refused when the model is resolved, before any weights are read, in one sentence with status 2."""

    from plmdepth.cli import main
    from plmdepth.models import resolve

    with pytest.raises(ModelLoadError, match=rf"^'{model}' is a \w+ model whose objective cannot be chosen; "):
        resolve(model, objective="diffusion")
    fasta = tmp_path / "s.fasta"
    fasta.write_text(">a\nEVQLVESGGGLVQPGG\n")
    assert main(["run", "logit-lens", "--model", model, "--objective", "diffusion", "--fasta", str(fasta),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: '{model}' is a ") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_objective_override_reaches_the_esm2_loader_and_names_the_results_folder(tmp_path):
    from conftest import tiny_esm_hf
    from plmdepth.models import resolve
    from plmdepth.runner import results_folder

    folder = tmp_path / "dplm_like"
    tiny_esm_hf(seed=2).save_pretrained(folder)
    plain = resolve(str(folder))
    assert (plain.objective, plain.loader, plain.slug, plain.objective_override) == ("masked", "esm2", "dplm_like", False)
    spec = resolve(str(folder), objective="diffusion")
    assert spec.objective == "diffusion" and spec.objective_override
    lm = load_model(spec)
    assert lm.objective == "diffusion" and lm.spec is spec
    assert results_folder(tmp_path, lm, 0.5) == tmp_path / "dplm_like@mask0.5"
    assert resolve(str(folder), objective="masked") == plain
    with pytest.raises(ModelLoadError, match="objective must be one of"):
        resolve(str(folder), objective="causal")


def test_the_command_line_leaves_the_logger_as_it_found_it(tmp_path):
    """`main` shows progress messages while it runs; called in-process, it leaves no handler behind
    (one bound to a replaced stderr made later library messages fail or print)."""
    import logging

    from plmdepth.cli import main

    logger = logging.getLogger("plmdepth")
    before = (list(logger.handlers), logger.level)
    assert main(["run", "logit-lens", "--model", "iglm", "--objective", "diffusion",
                 "--fasta", str(tmp_path / "none.fasta")]) == 2
    assert main(["models", "--json"]) == 0
    assert (list(logger.handlers), logger.level) == before


# ------------------------------------------------------------------ the command line's errors
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err and "usage:" not in err, err
    return err


@pytest.mark.parametrize("option,value,says", [
    ("--batch-size", "0", "--batch-size: must be at least 1, not 0"),
    ("--n-sequences", "-1", "--n-sequences: must not be negative, not -1"),
    ("--n-sequences", "0", "--n-sequences: must be at least 1, not 0"),
    ("--max-rows", "0", "--max-rows: must be at least 1, not 0"),
    ("--mask-fraction", "1.5", "--mask-fraction: must lie strictly between 0 and 1, not 1.5"),
    ("--batch-size", "many", "--batch-size: must be a whole number, not 'many'"),
])
def test_bad_option_values_are_one_line_before_any_work(tmp_path, capsys, option, value, says):
    from plmdepth.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["run", "logit-lens", "--model", "unirep-64", "--fasta", "data/antibody_vh.fasta",
              "--out", str(tmp_path / "out"), option, value])
    assert stop.value.code == 2
    assert says in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,says", [
    (["--max-variants", "-1"], "--max-variants: must not be negative, not -1"),
    (["--n-bootstrap", "-5"], "--n-bootstrap: must not be negative, not -5"),
])
def test_bad_variant_effect_options_are_one_line(tmp_path, capsys, argv, says):
    from plmdepth.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["variant-effects", "--model", "unirep-64", "--out", str(tmp_path / "out"), *argv])
    assert stop.value.code == 2 and says in _one_line_error(capsys)


def test_device_without_cuda_and_an_unwritable_out_are_refused_before_loading(tmp_path, capsys, monkeypatch):
    import torch

    from plmdepth import runner
    from plmdepth.cli import main

    monkeypatch.setattr(runner, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    args = ["run", "logit-lens", "--model", "unirep-64", "--fasta", "data/antibody_vh.fasta"]
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda", "--out", str(tmp_path / "out")]) == 2
        assert "--device cuda: torch" in _one_line_error(capsys) and not (tmp_path / "out").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main([*args, "--out", str(blocker / "results")]) == 2
    err = _one_line_error(capsys)
    assert f"the results folder {blocker / 'results'} cannot be written ({blocker} is a file)" in err
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("fault,status,says", [
    (OSError(28, "No space left on device", "/results/x.csv"), 1,
     "No space left on device (/results/x.csv); check free space and permissions"),
    (RuntimeError("CUDA error: an illegal memory access\nmore lines"), 1,
     "RuntimeError: CUDA error: an illegal memory access (run again with --debug for the traceback)."),
    (KeyboardInterrupt(), 130, None),
])
def test_faults_of_the_machine_and_interruptions_are_one_line(tmp_path, capsys, monkeypatch, fault, status, says):
    from plmdepth import cli

    def fail(*args, **kwargs):
        raise fault

    monkeypatch.setattr(cli, "run", fail)
    argv = ["run", "logit-lens", "--model", "unirep-64", "--fasta", "data/antibody_vh.fasta", "--out", str(tmp_path)]
    assert cli.main(argv) == status
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    if says:
        assert err == f"error: {says}" or says in err
    else:
        assert err.startswith("interrupted; run the same command again to resume")
    if status == 1 and not isinstance(fault, OSError):
        with pytest.raises(type(fault)):  # --debug shows the traceback
            cli.main(["--debug", *argv])


def test_compressed_binary_and_bom_fasta_files(tmp_path):
    import gzip

    (tmp_path / "x.fasta.gz").write_bytes(gzip.compress(b">a\nMKT\n"))
    with pytest.raises(FastaError, match=r"x.fasta.gz is gzip-compressed; decompress it first \(gunzip -k x.fasta.gz\)"):
        read_fasta(tmp_path / "x.fasta.gz")
    (tmp_path / "b.fasta").write_bytes(b">a\nMK\xff\xfeT\n")
    with pytest.raises(FastaError, match=r"b.fasta is not a text file \(byte 5 is not UTF-8, and not in a header line\)"):
        read_fasta(tmp_path / "b.fasta")
    (tmp_path / "bom.fasta").write_bytes("\ufeff>a\nMKT\n".encode("utf-8"))
    assert [(r.id, r.sequence) for r in read_fasta(tmp_path / "bom.fasta")] == [("a", "MKT")]
    # a Latin-1 header (an accented name from an older tool) is read; the sequence lines must be plain
    (tmp_path / "latin1.fasta").write_bytes(b">a Ren\xe9 lab\nMKT\n>b\nGSH\n")
    assert [(r.id, r.description, r.sequence) for r in read_fasta(tmp_path / "latin1.fasta")] == [
        ("a", "René lab", "MKT"), ("b", "", "GSH")]


@pytest.mark.parametrize("text,says", [
    ("{not json", r"plan .*p.json is not a JSON file"),
    ('{"objective": "masked"}', r"'sequences' must be a list"),
    ('{"objective": "masked", "sequences": [{"masked": [1]}]}', r"sequence entry 1 has no string 'id'"),
    ('{"objective": "masked", "sequences": [{"id": "a", "masked": ["3"]}]}',
     r"'masked' of sequence 'a' must be a list of whole numbers"),
])
def test_broken_plans_are_named_in_one_sentence(tmp_path, text, says):
    (tmp_path / "p.json").write_text(text)
    with pytest.raises(ValueError, match=says):
        MaskingPlan.load(tmp_path / "p.json")


def test_hints_name_the_command_line_flags(tmp_path):
    recs = [Record("r", "", "ACXDE")]
    with pytest.raises(FastaError, match=r"--unknown map"):
        check_residues(recs, "ACDE")
    with pytest.raises(FastaError, match=r"--too-long crop"):
        check_residues([Record("r", "", "ACDEFGHIK")], "ACDEFGHIK", max_length=5)


def test_a_garbled_pdb_coordinate_is_named_with_its_line(tmp_path):
    from plmdepth.models.proteinmpnn import StructureError, read_pdb_chain

    good = "ATOM      1  N   MET A   1      11.104   6.134  -6.504  1.00  0.00           N\n"
    bad = "ATOM      2  CA  MET A   1      11.6x4   6.1?4  -5.2    1.00  0.00           C\n"
    (tmp_path / "a.pdb").write_text(good + bad + "END\n")
    with pytest.raises(StructureError, match=r"a.pdb, line 2: the ATOM record's residue number or x/y/z coordinates"):
        read_pdb_chain(tmp_path / "a.pdb")


def test_bad_data_is_refused_before_the_model_is_loaded(tmp_path, capsys, monkeypatch):
    from plmdepth import runner
    from plmdepth.cli import main

    monkeypatch.setattr(runner, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "bad.fasta").write_text("MKT\n>a\nMKT\n")
    assert main(["run", "logit-lens", "--model", "unirep-64", "--fasta", str(tmp_path / "bad.fasta"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "line 1 comes before the first '>' header" in _one_line_error(capsys)
    (tmp_path / "plan.json").write_text("{")
    assert main(["run", "logit-lens", "--model", "unirep-64", "--fasta", "data/antibody_vh.fasta",
                 "--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a JSON file" in _one_line_error(capsys)
    assert main(["variant-effects", "--model", "unirep-64", "--assay", "NOPE", "--out", str(tmp_path / "o")]) == 2
    assert "has no assay NOPE" in _one_line_error(capsys)
