"""The workflow's grid (lib/plmdepth/publish/grid.py): which jobs the book needs, with which
parameters, and how a scheduler sizes them. That the jobs are exactly the runs the chapters
collect is tests/test_chapters.py's; that a chapter run by the workflow reads and never computes
is checked here on a tiny model."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plmdepth import paths
from plmdepth.model import ProteinLM
from plmdepth.publish import grid
from plmdepth.publish.chapters import CHAPTERS, sequence_runs, shared_parameters
from plmdepth.requests import RunRequest
from plmdepth.runner import CACHED_ONLY, ResultsMissing, measure


def test_every_chapter_has_jobs_and_each_folder_measurement_is_one_job():
    jobs, per_chapter = grid.jobs(shared_parameters())
    assert set(per_chapter) == set(CHAPTERS)
    keys = [(str(j.request.folder), j.request.measurement) for j in jobs]
    assert len(keys) == len(set(keys))
    models = shared_parameters()["models"].split(",")
    logit = {j.request.folder.name for j in per_chapter["logit-lens"]}
    trained = set(models) | {"proteinmpnn"}  # structure models run on their own chains
    twins = {f"{m}@random{k}" for m in trained | {"esm2_t6_8M", "esm2_t12_35M"} for k in range(3)}
    assert logit == trained | twins  # every model's untrained twins, and the architectures run untrained only
    tuned = {j.request.folder.name for j in per_chapter["lens-or-layers"] if j.request.measurement == "tuned_lens"}
    assert tuned == set(models) | {f"{m}@random{k}" for m in models for k in range(3)}  # no untrained-only models
    # the cross-model chapter reads the same logit-lens runs as the logit-lens chapter
    assert ({j.name for j in per_chapter["logit-lens"] if j.request.measurement == "logit_lens"}
            <= {j.name for j in per_chapter["cross-model"]})
    # and the lens-or-layers chapter's tuned-lens runs (their trivial baselines)
    assert ({j.name for j in per_chapter["logit-lens"] if j.request.measurement == "tuned_lens"}
            == {j.name for j in per_chapter["lens-or-layers"] if j.request.measurement == "tuned_lens"})
    # variant effects keep the chapter's own models and sets
    ve = per_chapter["variant-effects"]
    assert [j.request.model.argument for j in ve] == ["unirep-64", "unirep-256", "unirep-1900"]
    assert ve[0].request.inputs.assays == ("TADBP_HUMAN_Bolognesi_2019", "A4_HUMAN_Seuma_2022_subset")
    assert ve[0].outputs[0].endswith("unirep-64/variant_effects.csv")


def test_a_changed_shared_parameter_reaches_the_chapters_that_do_not_set_it():
    config = {**shared_parameters(), "models": "iglm-s", "n_sequences": 7, "twin_seeds": 0}
    jobs, per_chapter = grid.jobs(config)
    assert {j.request.model.argument for j in per_chapter["logit-lens"]} == {"iglm-s", "proteinmpnn"}
    assert all(j.request.inputs.n_sequences == 7 for j in per_chapter["logit-lens"])
    # the variant-effects chapter sets its own models: the shared list does not replace them
    assert {j.request.model.argument for j in per_chapter["variant-effects"]} == {"unirep-64", "unirep-256",
                                                                                  "unirep-1900"}
    injected = grid.injected("logit-lens", grid.chapter_parameters("logit-lens", config))
    assert {k: v for k, v in injected.items() if k != "lens_or_layers"} == {
        "models": "iglm-s", "n_sequences": 7, "twin_seeds": 0}
    # the chapter it reads (lens-or-layers, for the trivial baselines) sees the same changes
    assert {k: injected["lens_or_layers"][k] for k in ("models", "n_sequences", "twin_seeds")} == {
        "models": "iglm-s", "n_sequences": 7, "twin_seeds": 0}


def test_chapters_asking_for_one_run_with_different_parameters_are_refused():
    config = {**shared_parameters(), "chapters": {"layer-skipping": {"mode": "current"}}}
    with pytest.raises(ValueError, match=r"layer_skipping of antiberty .*\(mode: 'current' vs 'future'\); make"):
        grid.jobs(config)
    with pytest.raises(ValueError, match="chapter 'logit-lens' has no parameter colour"):
        grid.jobs({**shared_parameters(), "chapters": {"logit-lens": {"colour": "red"}}})


def test_defaults_spelled_out_or_not_make_one_run():
    # the cross-model chapter does not pass `vocab`; the logit-lens chapter passes its default
    a = RunRequest.build("logit_lens", "iglm-s", "data/antibody_vh.fasta", seed=0, n_sequences=5)
    b = RunRequest.build("logit_lens", "iglm-s", "data/antibody_vh.fasta", seed=0, n_sequences=5, vocab="full")
    c = RunRequest.build("logit_lens", "iglm-s", "data/antibody_vh.fasta", seed=0, n_sequences=5, vocab="amino_acids")
    assert a.to_json() != b.to_json() and a.effective() == b.effective() != c.effective()


def test_diffusion_models_get_one_job_per_masking_ratio():
    params = {**shared_parameters(), "models": "dplm_150m", "structure_models": "", "diffusion_ratios": [0.15, 0.5],
              "twin_seeds": 1, "untrained_models": ""}
    reqs = sequence_runs("logit_lens", params)
    assert [r.folder.name for r in reqs] == ["dplm_150m@mask0.15", "dplm_150m@mask0.5", "dplm_150m@random0@mask0.15",
                                             "dplm_150m@random0@mask0.5"]
    again = RunRequest.from_json(json.loads(json.dumps(reqs[1].to_json())))
    assert again == reqs[1] and again.mask_fraction == 0.5


def test_resources_follow_the_model_size_and_dtype():
    big = RunRequest.build("logit_lens", "esm2_t48_15B", "data/antibody_vh.fasta")
    bf16 = grid.resources(big, "bfloat16", gpu=True)
    # 15e9 x 2 bytes = 30 GB of weights: 53 GB on one GPU, 64 GB of host memory
    assert bf16["gpu"] == 1 and bf16["gpu_mem_gb"] == 53 and bf16["mem_mb"] == int((2 * 30 + 4) * 1024)
    assert bf16["runtime"] == 450  # 30 min per billion parameters
    with pytest.raises(ValueError, match="needs about 98 GB of GPU memory"):
        grid.resources(big, "float32", gpu=True)
    small = RunRequest.build("logit_lens", "iglm-s", "data/antibody_vh.fasta")
    cpu = grid.resources(small, "float32", gpu=False)
    assert "gpu" not in cpu and cpu["runtime"] == 120 and cpu["mem_mb"] == 4108


def test_a_chapter_run_by_the_workflow_reads_results_and_never_computes_them(tmp_path, monkeypatch, tiny_model,
                                                                              fasta_file):
    lm: ProteinLM = tiny_model
    monkeypatch.setenv(CACHED_ONLY, "1")
    with pytest.raises(ResultsMissing, match="holds no logit_lens .* the workflow's jobs and the chapter's calls"):
        measure("logit_lens", lm, fasta_file, out=tmp_path, progress=False)
    assert not any(tmp_path.rglob("*.csv"))
    monkeypatch.delenv(CACHED_ONLY)
    folder = measure("logit_lens", lm, fasta_file, out=tmp_path, progress=False)
    monkeypatch.setenv(CACHED_ONLY, "1")
    assert measure("logit_lens", lm, fasta_file, out=tmp_path, progress=False) == folder
    with pytest.raises(ResultsMissing):  # another seed is another run
        measure("logit_lens", lm, fasta_file, out=tmp_path, seed=1, progress=False)


def test_a_chapter_run_by_the_workflow_finds_its_runs_without_loading_the_model(tmp_path, monkeypatch, fasta_file):
    """With PLMDEPTH_CACHED_ONLY set, a run asked for by model name is found by what was asked of it
    (run.json's `request`): no weights are read and the device is not needed (a chapter job may run
    on a machine without the measurement jobs' GPU)."""
    import plmdepth.runner as runner
    from conftest import tiny_esm_hf

    weights = tmp_path / "tiny_esm"
    tiny_esm_hf(seed=5).save_pretrained(weights)
    out = tmp_path / "results"
    folder = measure("logit_lens", str(weights), fasta_file, out=out, n_sequences=3, seed=2, progress=False)
    recorded = json.loads((folder / "run.json").read_text())
    assert recorded["measurements"]["logit_lens"]["request"]["model"] == str(weights)
    lm = runner.load_model(str(weights))
    assert recorded["block_weights"] == [sum(p.numel() for p in b.parameters() if p.dim() >= 2) for b in lm.layers]

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(runner, "load_model", no_loading)
    monkeypatch.setenv(CACHED_ONLY, "1")
    assert measure("logit_lens", str(weights), fasta_file, out=out, n_sequences=3, seed=2, device="cuda",
               progress=False) == folder
    # anything else asked of it is not that run: the model is then loaded to check the full key
    for changed in ({"seed": 3}, {"n_sequences": 2}, {"vocab": "amino_acids"}, {"dtype": "bfloat16"}):
        with pytest.raises(AssertionError, match="the model was loaded"):
            measure("logit_lens", str(weights), fasta_file, out=out, **{"n_sequences": 3, "seed": 2, **changed},
                progress=False)
    other = tmp_path / "other.fasta"
    other.write_text(fasta_file.read_text().replace(">", ">x", 1))  # same sequences, another file
    with pytest.raises(AssertionError, match="the model was loaded"):
        measure("logit_lens", str(weights), other, out=out, n_sequences=3, seed=2, progress=False)
    # without PLMDEPTH_CACHED_ONLY nothing changes: the model is loaded and the full key compared
    monkeypatch.delenv(CACHED_ONLY)
    with pytest.raises(AssertionError, match="the model was loaded"):
        measure("logit_lens", str(weights), fasta_file, out=out, n_sequences=3, seed=2, progress=False)


def _measure(name, out, fasta, barrier):
    from conftest import tiny_esm

    import plmdepth.runner as runner

    lm = tiny_esm()
    save, read = runner._save, runner.read_run

    def together(*args, **kwargs):  # both processes start writing their results at the same moment
        barrier.wait(timeout=60)
        return save(*args, **kwargs)

    def slow_read(folder):  # and take a while between reading run.json and writing it back
        found = read(folder)
        time.sleep(1)
        return found

    runner._save, runner.read_run = together, slow_read
    measure(name, lm, fasta, out=out, progress=False)


def test_two_measurements_of_one_model_finishing_at_once_both_stay_in_run_json(tmp_path, fasta_file):
    # the workflow runs measurements of one model as parallel jobs; run.json is shared
    import multiprocessing

    from plmdepth.results import read_run

    context = multiprocessing.get_context("spawn")  # fork after torch started its threads can hang
    barrier = context.Barrier(2)
    workers = [context.Process(target=_measure, args=(name, tmp_path, fasta_file, barrier))
               for name in ("logit_lens", "contributions")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    [folder] = [p.parent for p in tmp_path.glob("*/run.json")]
    assert set(read_run(folder)["measurements"]) == {"logit_lens", "contributions"}
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # no lock or temporary file left


def test_a_measurement_job_depends_on_the_library_code_its_numbers_come_from():
    jobs, _ = grid.jobs(shared_parameters())
    by_name = {job.name: job for job in jobs}
    files = grid.code_files(by_name["iglm-s/logit_lens"].request)
    lib = "lib/plmdepth/"
    # the core every sequence measurement runs through, the measurement, the model's family
    for name in ("model.py", "cpu_math.py", "tokens.py", "plan.py", "fasta.py", "requests.py", "probes/streaming.py",
                 "probes/logit_lens.py", "models/iglm.py", "models/architectures.py"):
        assert lib + name in files, name
    assert lib + "probes/contributions.py" not in files and lib + "models/esm2.py" not in files
    # a measurement's own helpers come with it; another family brings its own module
    assert lib + "probes/variant_scoring.py" in grid.code_files(by_name["unirep-64/variant_effects"].request)
    assert lib + "models/unirep.py" in grid.code_files(by_name["unirep-64/variant_effects"].request)
    assert lib + "probes/logit_lens.py" in grid.code_files(by_name["iglm-s/tuned_lens"].request)
    assert all((paths.project_root() / f).is_file() for f in files)


def test_the_workflow_gives_a_folder_job_its_data_and_code_as_inputs(tmp_path):
    """Snakemake reruns a job when an input's content changes (it compares checksums with the last
    run's), so these inputs are what makes a changed model wrapper or probe recompute. One job
    makes every measurement of a results folder."""
    target = tmp_path / "results" / "iglm-s" / "logit_lens.csv"
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--nolock", "--cores", "1", "--config",
                           f"results_dir={tmp_path / 'results'}", f"logs_dir={tmp_path / 'logs'}", "models=iglm-s",
                           "--", str(target)], cwd=paths.project_root(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = re.search(r"rule measure_iglm_s:\n\s+input: (.*)\n\s+output: (.*)\n", proc.stdout + proc.stderr)
    assert job, (proc.stdout + proc.stderr)[-3000:]
    inputs, outputs = job.group(1).split(", "), job.group(2).split(", ")
    jobs = [j for j in grid.jobs(shared_parameters())[0] if j.request.folder.name == "iglm-s"]
    assert {j.request.measurement for j in jobs} >= {"logit_lens", "layer_skipping", "tuned_lens", "contributions"}
    assert sorted(inputs) == sorted({str(jobs[0].request.data), *(f for j in jobs for f in grid.code_files(j.request))})
    # update(): a rerun keeps the tables a stopped or failed job finished (book.run_workflow: --keep-incomplete)
    assert all(o.endswith(" (update)") for o in outputs)
    assert {Path(o.removesuffix(" (update)")).name for o in outputs} == {Path(o).name for j in jobs for o in j.outputs}
    assert len(re.findall(r"rule measure_", proc.stdout + proc.stderr)) == 1  # one job for the folder


def test_the_compute_estimate_covers_every_job_and_counts_a_twin_with_its_model(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("estimate", paths.project_root() / "workflow" / "estimate.py")
    estimate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(estimate)
    assert estimate.main(["--markdown"]) == 0
    out = capsys.readouterr().out
    jobs, _ = grid.jobs(shared_parameters())
    assert f"{len(jobs)} measurements in {len(grid.folder_jobs(jobs))} results folders" in out
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert "antiberty" in rows and not any("@random" in name for name in rows)
    # antiberty and its three twins: every measurement of the four folders
    assert int(rows["antiberty"].split(" | ")[2]) == sum(1 for j in jobs if j.request.model.argument.startswith("antiberty"))
    assert "not estimated" not in out


def test_a_job_depends_on_the_modules_its_loader_reaches_through_others():
    """A shipped family loads through architectures -> the generic adapter -> the tokenizer mapping:
    a change of any of these reruns its measurements; the book's and the registry's code do not."""
    jobs, _ = grid.jobs(shared_parameters())
    files = grid.code_files({job.name: job for job in jobs}["antiberty/layer_skipping"].request)
    lib = "lib/plmdepth/"
    for name in ("models/antiberty.py", "models/architectures.py", "models/adapter.py", "models/tokenizer.py",
                 "models/hub.py", "probes/layer_skipping.py", "probes/logit_lens.py"):
        assert lib + name in files, name
    assert not any(f.startswith((lib + "publish/", lib + "analysis/")) or f in (lib + "models/registry.py",
                                                                                 lib + "runner.py") for f in files)
