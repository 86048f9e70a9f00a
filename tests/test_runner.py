"""Results folders, caching, plan replay and the command line, on a local random ESM-2."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import tiny_esm_hf
from plmdepth.cli import main
from plmdepth.models import load_model


@pytest.fixture
def esm_folder(tmp_path):
    folder = tmp_path / "tiny_esm"
    tiny_esm_hf(seed=5).save_pretrained(folder)
    return folder


def test_local_folder_loads_with_its_own_logits(esm_folder, records):
    import torch

    lm = load_model(str(esm_folder))
    assert lm.info.family == "ESM-2" and lm.n_layers == 3 and lm.info.checksum.startswith("sha256:")
    batch = lm.tokenize([r.id for r in records], [r.sequence for r in records])
    with torch.no_grad():
        own = tiny_esm_hf(seed=5)(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        torch.testing.assert_close(lm(batch), own)


def test_cli_run_writes_results_folder_and_plan_replays_exactly(esm_folder, fasta_file, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "logit-lens", "--model", str(esm_folder), "--fasta", str(fasta_file),
                 "--out", str(out), "--seed", "3"]) == 0
    folder = out / "tiny_esm"
    assert {p.name for p in folder.iterdir()} == {"logit_lens.csv", "logit_lens_per_sequence.csv", "run.json", "plan.json"}
    first = pd.read_csv(folder / "logit_lens.csv")
    assert list(first.columns[:7]) == ["model", "layer", "relative_depth", "kl", "kl_low", "kl_high", "top1_agreement"]
    for col in ("layer", "relative_depth", "kl", "top1_agreement", "top1_accuracy", "n_positions"):
        assert col in first
    run = json.loads((folder / "run.json").read_text())
    assert run["seed"] == 3 and run["n_sequences"] == 4 and run["model"]["n_layers"] == 3
    assert run["measurements"]["logit_lens"]["wall_time_s"] >= 0 and "torch" in run["versions"]
    # what decides the float32 arithmetic's last bits on this CPU is recorded with the run
    kernels = run["measurements"]["logit_lens"]["cpu_kernels"]
    assert kernels["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert kernels["processor"] and kernels["blas"] in torch.__config__.show()

    plan_copy = tmp_path / "plan_copy.json"
    plan_copy.write_text((folder / "plan.json").read_text())
    out2 = tmp_path / "again"
    # a different seed, but the plan fixes every masked position: identical numbers
    assert main(["run", "logit-lens", "--model", str(esm_folder), "--fasta", str(fasta_file),
                 "--out", str(out2), "--plan", str(plan_copy), "--seed", "3"]) == 0
    pd.testing.assert_frame_equal(first, pd.read_csv(out2 / "tiny_esm" / "logit_lens.csv"))
    assert json.loads((out2 / "tiny_esm" / "plan.json").read_text())["sequences"] == \
        json.loads(plan_copy.read_text())["sequences"]


def test_a_second_measurement_on_other_sequences_keeps_the_first_plan(esm_folder, fasta_file, tmp_path):
    """Two measurements on two FASTA files into one results folder: each plan stays replayable."""
    out = tmp_path / "results"
    other = tmp_path / "other.fasta"
    other.write_text(">p\nMKTAYIAKQRQISFVKSHFSRQ\n>q\nGSHMSLFDFFKNKGSAATATD\n")
    assert main(["run", "logit-lens", "--model", str(esm_folder), "--fasta", str(fasta_file), "--out", str(out)]) == 0
    folder = out / "tiny_esm"
    first_plan = (folder / "plan.json").read_text()
    assert main(["run", "contributions", "--model", str(esm_folder), "--fasta", str(other), "--out", str(out)]) == 0
    assert (folder / "plan.json").read_text() == first_plan  # not overwritten
    run = json.loads((folder / "run.json").read_text())["measurements"]
    assert run["logit_lens"]["plan"] == "plan.json"
    second = run["contributions"]["plan"]
    assert second.startswith("plan-") and second != "plan.json"
    assert json.loads((folder / second).read_text())["sequences"][0]["id"] == "p"
    # each plan replays its own run exactly
    again = tmp_path / "again"
    assert main(["run", "contributions", "--model", str(esm_folder), "--fasta", str(other), "--out", str(again),
                 "--plan", str(folder / second)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(folder / "contributions.csv"),
                                  pd.read_csv(again / "tiny_esm" / "contributions.csv"))


def test_cached_run_is_reused_and_changed_parameters_recompute(esm_folder, fasta_file, tmp_path):
    from plmdepth.results import read_tables
    from plmdepth.runner import measure

    out = tmp_path / "results"
    measure("logit_lens", str(esm_folder), fasta_file, out=out, progress=False)
    csv = out / "tiny_esm" / "logit_lens.csv"
    stamp = csv.stat().st_mtime_ns
    measure("logit_lens", str(esm_folder), fasta_file, out=out, progress=False)
    assert csv.stat().st_mtime_ns == stamp
    folder = measure("logit_lens", str(esm_folder), fasta_file, out=out, vocab="amino_acids", progress=False)
    table = read_tables(folder, "logit_lens")["logit_lens"]
    assert csv.stat().st_mtime_ns != stamp
    assert json.loads((out / "tiny_esm" / "run.json").read_text())["measurements"]["logit_lens"]["config"]["vocab"] \
        == "amino_acids"
    assert len(table) == 4



def test_a_run_is_reused_only_by_the_code_that_computed_it(esm_folder, fasta_file, tmp_path, monkeypatch):
    """The cache key holds the digest of the code the measurement depends on (`requests.code_digest`):
    the same request under other code is recomputed, which is what lets the workflow keep a folder's
    finished tables when it reruns the folder's job (a change to one measurement's code redoes that one)."""
    from plmdepth import requests, runner
    from plmdepth.requests import RunRequest

    request = RunRequest.build("logit_lens", str(esm_folder), fasta_file, out=tmp_path / "results")
    digest = requests.code_digest(request)
    assert digest.startswith("sha256:") and digest == requests.code_digest(request)
    assert digest != requests.code_digest(RunRequest.build("layer_skipping", str(esm_folder), fasta_file))
    files = requests.code_files(request)
    assert "lib/plmdepth/probes/logit_lens.py" in files and "lib/plmdepth/models/esm2.py" in files
    assert not any(f.startswith(("lib/plmdepth/publish/", "lib/plmdepth/runner")) for f in files)

    folder = runner.run(request, progress=False)
    entry = json.loads((folder / "run.json").read_text())["measurements"]["logit_lens"]
    assert entry["key"]["code"] == digest
    stamp = (folder / "logit_lens.csv").stat().st_mtime_ns
    runner.run(request, progress=False)
    assert (folder / "logit_lens.csv").stat().st_mtime_ns == stamp
    monkeypatch.setattr(runner, "code_digest", lambda r: "sha256:other")
    runner.run(request, progress=False)
    assert (folder / "logit_lens.csv").stat().st_mtime_ns != stamp
    assert json.loads((folder / "run.json").read_text())["measurements"]["logit_lens"]["key"]["code"] == "sha256:other"

def test_cli_reports_bad_input_in_one_line(tmp_path, fasta_file):
    bad = tmp_path / "bad.fasta"
    bad.write_text(">a\nACDJ\n")
    proc = subprocess.run([sys.executable, "-m", "plmdepth", "run", "logit-lens", "--model", "nonexistent-model",
                           "--fasta", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown model 'nonexistent-model'")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_interrupted_run_resumes_without_recomputing_finished_batches(esm_folder, fasta_file, tmp_path, monkeypatch):
    from plmdepth.probes import logit_lens as ll
    from plmdepth.probes import streaming
    from plmdepth.results import read_tables
    from plmdepth.runner import measure

    monkeypatch.setattr(streaming, "CHECKPOINT_EVERY_S", 0.0)
    original = ll.LogitLensAccumulator.add
    calls = []

    def interrupted(self, rows):
        calls.append(tuple(rows))
        if len(calls) == 3:
            raise KeyboardInterrupt
        original(self, rows)

    monkeypatch.setattr(ll.LogitLensAccumulator, "add", interrupted)
    out = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        measure("logit_lens", str(esm_folder), fasta_file, out=out, batch_size=1, progress=False)
    folder = out / "tiny_esm"
    assert not (folder / "logit_lens.csv").exists()  # nothing half-written
    assert (folder / ".logit_lens.partial.pt").is_file()

    calls.clear()
    monkeypatch.setattr(ll.LogitLensAccumulator, "add", lambda self, rows: (calls.append(tuple(rows)),
                                                                             original(self, rows)))
    resumed = read_tables(measure("logit_lens", str(esm_folder), fasta_file, out=out, batch_size=1, progress=False),
                          "logit_lens")["logit_lens"]
    assert len(calls) == 2  # only the two batches that had not finished
    assert not (folder / ".logit_lens.partial.pt").exists()
    fresh = read_tables(measure("logit_lens", str(esm_folder), fasta_file, out=tmp_path / "fresh", batch_size=1,
                            progress=False), "logit_lens")["logit_lens"]
    pd.testing.assert_frame_equal(resumed, fresh)


def test_checkpoint_of_another_run_is_ignored(esm_folder, fasta_file, tmp_path, monkeypatch):
    from plmdepth.probes import streaming
    from plmdepth.results import read_tables
    from plmdepth.runner import measure

    monkeypatch.setattr(streaming, "CHECKPOINT_EVERY_S", 0.0)
    out = tmp_path / "results"
    folder = out / "tiny_esm"
    folder.mkdir(parents=True)
    streaming._save(folder / ".logit_lens.partial.pt", {"key": "something else", "n_batches": 4, "done": 3,
                                                          "state": {}})
    folder = measure("logit_lens", str(esm_folder), fasta_file, out=out, batch_size=1, progress=False)
    table = read_tables(folder, "logit_lens")["logit_lens"]
    assert (table["n_sequences"] == 4).all()


def test_diffusion_model_gets_one_folder_and_one_curve_per_masking_ratio(esm_folder, fasta_file, tmp_path):
    from plmdepth.publish.chapter import collect
    from plmdepth.publish.chapters import sequence_runs, shared_parameters

    params = {**shared_parameters(), "models": str(esm_folder), "fasta": str(fasta_file), "structure_models": "",
              "results_dir": str(tmp_path / "r"), "diffusion_models": str(esm_folder), "diffusion_ratios": [0.15, 0.5],
              "n_sequences": None, "twin_seeds": 1, "untrained_models": ""}
    result = collect(sequence_runs("logit_lens", params))
    assert [f.name for f in result.folders] == ["tiny_esm@mask0.15", "tiny_esm@mask0.5", "tiny_esm@random0@mask0.15",
                                                "tiny_esm@random0@mask0.5"]  # and its untrained twin, a diffusion model
    table = result["logit_lens"]
    assert list(dict.fromkeys(table["model"])) == ["tiny_esm (mask 0.15)", "tiny_esm (mask 0.5)",
                                                   "tiny_esm (untrained, seed 0) (mask 0.15)",
                                                   "tiny_esm (untrained, seed 0) (mask 0.5)"]
    assert list(dict.fromkeys(table["twin_of"].dropna())) == ["tiny_esm (mask 0.15)", "tiny_esm (mask 0.5)"]
    table = table[table["twin_of"].isna()]
    n = table.groupby("model", sort=False)["n_positions"].first().tolist()
    assert n[1] > 2 * n[0]
    plan = json.loads((result.folders[1] / "plan.json").read_text())
    assert plan["objective"] == "diffusion" and plan["params"]["mask_fraction"] == 0.5


def test_dplm_folder_loads_as_a_diffusion_model(tmp_path):
    """A checkpoint whose config names a `dplm_type` (DPLM's EsmForDPLM) loads as a diffusion model."""
    import torch

    hf = tiny_esm_hf(seed=4)
    hf.config.dplm_type = "dplm"
    folder = tmp_path / "dplm_tiny"
    hf.save_pretrained(folder)
    lm = load_model(str(folder))
    assert lm.objective == "diffusion" and lm.info.family == "DPLM"
    assert load_model(str(folder), objective="masked").objective == "masked"
    batch = lm.tokenize(["a"], ["MKTAYIAKQRQ"], masked=[[2, 5]])
    with torch.no_grad():
        torch.testing.assert_close(lm(batch), hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits)


def test_cli_models_lists_every_registry_entry_with_its_columns(capsys):
    from plmdepth.cli import main
    from plmdepth.models import REGISTRY

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "objective", "modality", "blocks", "width", "size", "licence",
                                "source", "loader", "environment", "weights"]
    assert [line.split()[0] for line in lines[1:]] == list(REGISTRY)
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["modality"] for r in rows}["protgpt2"] == "sequence"
    assert all(r["blocks"] and r["width"] and r["size"] and r["loader"] for r in rows)


def test_caption_names_each_data_file_with_the_models_that_ran_on_it(esm_folder, fasta_file, tmp_path):
    import shutil

    from plmdepth.publish.provenance import run_caption
    from plmdepth.runner import measure

    other_folder = tmp_path / "other_esm"
    shutil.copytree(esm_folder, other_folder)
    other_fasta = tmp_path / "structures.fasta"
    other_fasta.write_text(">x1\nMKTAYIAKQRQISF\n>x2\nGSHMLEDPVDAFQLG\n")
    out = tmp_path / "results"
    measure("logit_lens", str(esm_folder), fasta_file, out=out, progress=False, n_bootstrap=5)
    measure("logit_lens", str(other_folder), other_fasta, out=out, progress=False, n_bootstrap=5)
    one = run_caption([out / "tiny_esm"], "ignored.fasta", "logit_lens", 0)
    assert one == "Models: tiny_esm. Data: seqs.fasta, 4 sequences; seed 0."
    both = run_caption([out / "tiny_esm", out / "other_esm"], "ignored.fasta", "logit_lens", 0)
    assert both == ("Models: tiny_esm, other_esm. Data: seqs.fasta (tiny_esm: 4 sequences); "
                    "structures.fasta (other_esm: 2 sequences); seed 0.")


def test_results_files_get_the_permissions_of_ordinary_new_files(tmp_path):
    import os

    from plmdepth.results import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "r" / "x.csv", "a,b\n")
    finally:
        os.umask(old)
    assert oct((tmp_path / "r" / "x.csv").stat().st_mode & 0o777) == oct(0o644)


def test_a_list_of_requests_loads_each_model_once_and_equals_separate_runs(esm_folder, fasta_file, tmp_path,
                                                                          monkeypatch):
    """`run-request` given a JSON list (a workflow job: every measurement of one results folder)
    loads the model once; its tables are byte-identical to one process per measurement."""
    from plmdepth import runner
    from plmdepth.requests import RunRequest

    names = ("logit_lens", "layer_skipping", "contributions")
    separate, together = tmp_path / "separate", tmp_path / "together"
    for name in names:
        runner.run(RunRequest.build(name, str(esm_folder), fasta_file, out=separate), progress=False)
    loads = []
    real = runner.load_model
    monkeypatch.setattr(runner, "load_model", lambda *a, **k: (loads.append(a), real(*a, **k))[1])
    requests = [RunRequest.build(name, str(esm_folder), fasta_file, out=together) for name in names]
    folders = runner.run_all(requests, progress=False)
    assert len(loads) == 1 and folders == [together / "tiny_esm"] * 3
    tables = sorted(p.name for p in (separate / "tiny_esm").glob("*.csv"))
    assert tables == sorted(p.name for p in (together / "tiny_esm").glob("*.csv")) and len(tables) >= 6
    for name in tables:
        assert (separate / "tiny_esm" / name).read_bytes() == (together / "tiny_esm" / name).read_bytes(), name
    recorded = json.loads((together / "tiny_esm" / "run.json").read_text())["measurements"]
    assert set(recorded) == set(names)


def test_mixed_bfloat16_keeps_float32_weights_and_moves_numbers_by_bfloat16_rounding(esm_folder, fasta_file, tmp_path):
    """`--dtype mixed-bfloat16`: weights loaded in float32, the products in bfloat16 (autocast): the
    numbers move by bfloat16 rounding, not more, and run.json says which precision made them."""
    from plmdepth.models.device import as_dtype
    from plmdepth.results import read_tables
    from plmdepth.runner import measure

    assert as_dtype("mixed-bfloat16") == torch.float32
    tables = {}
    for dtype in ("float32", "mixed-bfloat16"):
        folder = measure("logit_lens", str(esm_folder), fasta_file, out=tmp_path / dtype, dtype=dtype, progress=False)
        tables[dtype] = read_tables(folder, "logit_lens")["logit_lens"]
        assert json.loads((folder / "run.json").read_text())["measurements"]["logit_lens"]["key"]["dtype"] == dtype
    diff = (tables["float32"]["kl"] - tables["mixed-bfloat16"]["kl"]).abs()
    assert 0 < diff.max() < 0.05 * tables["float32"]["kl"].abs().max()
