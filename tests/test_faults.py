"""Results that prove themselves: run.json records every table's size and sha256, and every reader
checks them (a missing, truncated or edited table is recomputed or refused, never read)."""

import json
from pathlib import Path

import pytest

from conftest import tiny_esm_hf
from plmdepth.results import DamagedResults, Results, discard_damaged, read_record
from plmdepth.runner import measure


@pytest.fixture
def finished(tmp_path, fasta_file):
    folder_arg = tmp_path / "tiny_esm"
    tiny_esm_hf(seed=5).save_pretrained(folder_arg)
    out = tmp_path / "results"
    folder = measure("logit_lens", str(folder_arg), fasta_file, out=out, progress=False)
    return folder, str(folder_arg), fasta_file, out


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:300])
    elif how == "edited":  # same size, one digit changed
        i = next(i for i, c in enumerate(data) if chr(c).isdigit() and i > data.index(b"\n"))
        path.write_bytes(data[:i] + (b"1" if data[i:i + 1] != b"1" else b"2") + data[i + 1:])
    else:
        path.unlink()


def test_run_json_records_each_tables_size_and_sha256(finished):
    folder = finished[0]
    entry = json.loads((folder / "run.json").read_text())["measurements"]["logit_lens"]
    assert set(entry["tables"]) == set(entry["outputs"]) == {"logit_lens.csv", "logit_lens_per_sequence.csv"}
    for name, digest in entry["tables"].items():
        assert digest["bytes"] == (folder / name).stat().st_size and digest["sha256"].startswith("sha256:")


@pytest.mark.parametrize("how", ["truncated", "edited", "deleted"])
def test_a_damaged_table_is_refused_in_one_sentence_and_recomputed_identically(finished, how):
    folder, model, fasta, out = finished
    table = folder / "logit_lens.csv"
    original = table.read_bytes()
    _damage(table, how)
    with pytest.raises(DamagedResults) as err:
        Results([folder]).tables("logit_lens")
    said = str(err.value)
    assert str(table) in said and "recompute it: `python -m plmdepth book`" in said
    assert ("is missing" if how == "deleted" else "differs from what its run wrote") in said
    assert not read_record(folder).has("logit_lens")
    measure("logit_lens", model, fasta, out=out, progress=False)  # the runner's cache check sees it too
    assert table.read_bytes() == original


def test_the_book_build_removes_damaged_tables_so_the_workflow_recomputes_them(finished):
    folder, *_ = finished
    _damage(folder / "logit_lens.csv", "edited")
    intact = (folder / "logit_lens_per_sequence.csv").read_bytes()
    assert discard_damaged(folder.parent) == [folder / "logit_lens.csv"]
    assert not (folder / "logit_lens.csv").exists()
    assert (folder / "logit_lens_per_sequence.csv").read_bytes() == intact
    assert discard_damaged(folder.parent) == []  # a missing table is the workflow's to redo


def test_a_second_build_is_refused_naming_the_running_one(tmp_path, monkeypatch):
    from plmdepth import paths
    from plmdepth.publish.book import BookError, LOCK_HELD, project_lock

    monkeypatch.setattr(paths, "project_root", lambda: tmp_path)
    monkeypatch.delenv(LOCK_HELD, raising=False)
    monkeypatch.delenv("PLMDEPTH_CACHED_ONLY", raising=False)
    with project_lock("python -m plmdepth book"):
        with pytest.raises(BookError, match=r"`python -m plmdepth book` \(pid \d+, started .* UTC\) is running on "
                                            r"this project; wait for it to finish"):
            with project_lock("python -m plmdepth chapter logit-lens"):
                pass
        monkeypatch.setenv(LOCK_HELD, "1")  # the workflow's own chapter jobs run under the build's lock
        with project_lock("python -m plmdepth chapter logit-lens"):
            pass
        monkeypatch.delenv(LOCK_HELD)
        monkeypatch.setenv("PLMDEPTH_CACHED_ONLY", "1")  # so do they when Snakemake is run by hand
        with project_lock("python -m plmdepth chapter logit-lens"), project_lock("python -m plmdepth chapter x"):
            pass
    monkeypatch.delenv("PLMDEPTH_CACHED_ONLY")
    with project_lock("python -m plmdepth chapter logit-lens"):  # released when the first one ended
        pass


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_stops_the_workflow_and_every_job_within_seconds(tmp_path, sig):
    """`plmdepth book` runs Snakemake in its own process group; SIGINT or SIGTERM to the command (as a
    parent or a scheduler sends it, to that process alone) stops the group: Snakemake and its jobs."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pidfile = tmp_path / "job.pid"
    script = (  # SIGINT's default handler restored: a shell starts background jobs with SIGINT ignored
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from plmdepth import cli\n"
        "from plmdepth.publish.book import _run_stoppable\n"
        "with cli._terminate_as_interrupt():\n"
        "    try:\n"
        f"        _run_stoppable(['bash', '-c', 'sleep 300 & echo $! > {pidfile}; wait'], '.', dict())\n"
        "    except KeyboardInterrupt:\n"
        "        print('stopped'); sys.exit(130)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(100):
        if pidfile.is_file() and pidfile.read_text().strip():
            break
        time.sleep(0.1)
    job = int(pidfile.read_text())
    started = time.monotonic()
    proc.send_signal(getattr(signal, sig))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "stopped" in out and time.monotonic() - started < 15
    time.sleep(0.5)
    status = Path(f"/proc/{job}/status")
    state = status.read_text().split("State:")[1].split()[0] if status.is_file() else "gone"
    assert state in ("gone", "Z"), state  # the job (a grandchild) is gone too (a zombie waits for its reaper)


def test_a_failed_workflow_names_each_failed_job_its_reason_and_its_log(tmp_path):
    import os
    import time

    from plmdepth.publish.book import failed_jobs

    logs = tmp_path / "logs"
    (logs / "measure").mkdir(parents=True)
    (logs / "chapters").mkdir()
    old = logs / "measure" / "antiberty.log"
    old.write_text("error: an old failure\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    since = time.time() - 60
    (logs / "measure" / "iglm.log").write_text('layer skipping 40%\r{"results_folders": ["results/iglm"]}\n')
    (logs / "measure" / "typo.log").write_text("error: unknown model 'antibrty'; did you mean antiberty?\n")
    (logs / "measure" / "iglm@random0.log").write_text("logit lens 10%\rlogit lens 20%\n")  # killed: no last word
    (logs / "chapters" / "logit_lens.log").write_text("Executing: 100%\nExecuted book/chapters/logit_lens.ipynb\n")
    (logs / "chapters" / "cross_model.log").write_text("error: chapter 'cross-model' failed in cell 3: ...\n")
    said = failed_jobs(logs, since)
    assert said == [
        "the measurements of iglm@random0: stopped without a message (killed by the system, e.g. out of memory?) "
        f"(log: {logs / 'measure' / 'iglm@random0.log'})",
        f"the measurements of typo: unknown model 'antibrty'; did you mean antiberty? (log: {logs / 'measure' / 'typo.log'})",
        f"chapter cross_model: chapter 'cross-model' failed in cell 3: ... (log: {logs / 'chapters' / 'cross_model.log'})"]


def _project_copy(root: Path) -> Path:
    """The workflow's files in a fresh folder: a project with no results yet."""
    import shutil

    from plmdepth import paths

    source = paths.project_root()
    for name in ("workflow", "notebooks", "data", "book"):
        shutil.copytree(source / name, root / name, ignore=shutil.ignore_patterns("_build", "chapters", "figures"))
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(source / name, root / name)
    return root


@pytest.mark.slow
def test_an_interrupted_workflow_stops_its_job_and_the_rerun_gives_identical_results(tmp_path):
    """SIGINT to a workflow run (plmdepth.publish.book.run_workflow, what `plmdepth book` runs) while a
    folder's job computes: the job stops within seconds, keeps the measurements it finished (the rerun
    reuses them, not recomputes), and the same command finishes it with tables byte-identical to an
    uninterrupted run of the same requests."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from plmdepth.publish import grid
    from plmdepth.publish.chapters import shared_parameters
    from plmdepth.runner import run_all

    project = _project_copy(tmp_path / "project")
    model = tmp_path / "tiny_esm"
    tiny_esm_hf(seed=5, layers=10, max_positions=256).save_pretrained(model)  # seconds of work left when interrupted
    config = {"models": str(model), "structure_models": "", "twin_seeds": 0, "untrained_models": "",
              "n_sequences": 200, "noise_floor_sequences": 4}
    jobs = [j for j in grid.jobs({**shared_parameters(), **config})[0] if j.request.folder.name == "tiny_esm"]
    targets = [out for job in jobs for out in job.outputs]
    options = ["--config", *(f"{k}={v}" for k, v in config.items())]
    script = ("import signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"  # see the test above
              "from plmdepth import cli\nfrom plmdepth.publish.book import run_workflow\n"
              "with cli._terminate_as_interrupt():\n"
              "    try:\n"
              f"        run_workflow(*{options!r}, targets={targets!r})\n"
              "    except KeyboardInterrupt:\n"
              "        print('interrupted'); sys.exit(130)\n")
    env = {**os.environ, "PLMDEPTH_ROOT": str(project)}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=project, env=env, stdout=subprocess.PIPE, text=True)
    for _ in range(1200):
        if (project / "results" / "tiny_esm" / "run.json").is_file():  # its first measurement is done
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the job finished before it could be interrupted"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in out and time.monotonic() - started < 20
    assert not subprocess.run(["pgrep", "-f", f"{project}.*run-request"], capture_output=True).stdout
    run_json = project / "results" / "tiny_esm" / "run.json"
    finished = json.loads(run_json.read_text())["measurements"]  # what the job finished before it was stopped
    assert finished and all((run_json.parent / t).is_file() for m in finished.values() for t in m["outputs"])
    rerun = subprocess.run([sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    after = json.loads(run_json.read_text())["measurements"]
    assert {m: after[m]["finished"] for m in finished} == {m: e["finished"] for m, e in finished.items()}, \
        "the rerun recomputed a measurement the stopped job had finished"
    assert set(after) > set(finished)
    reference = tmp_path / "reference"
    run_all([grid.RunRequest.from_json({**job.request.to_json(), "out": str(reference)}) for job in jobs],
            progress=False)
    for target in targets:
        name = Path(target).name
        assert (project / target).read_bytes() == (reference / "tiny_esm" / name).read_bytes(), name


def test_a_full_disk_while_writing_results_leaves_the_earlier_run_whole(finished, monkeypatch):
    """No space left while a run writes its tables: the error reaches the caller, and the folder keeps
    the earlier run's tables and run.json byte for byte, with no temporary file left."""
    import errno
    import os

    folder, model, fasta, out = finished
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    real = os.replace

    def full(src, dst):
        if str(dst).endswith(".csv"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space left"):
        measure("logit_lens", model, fasta, out=out, force=True, progress=False)
    monkeypatch.setattr(os, "replace", real)
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after == before  # no temporary file, nothing half-written, run.json unchanged


@pytest.mark.slow
def test_a_failing_job_in_the_workflow_names_its_model_and_log_and_the_other_results_are_kept(tmp_path):
    """A workflow run (run_workflow, what `plmdepth book` runs) over two folders, one of whose models
    cannot load (its weights file is damaged): the error names that job, what its log says and the log;
    the other folder's tables are written and whole; the rerun reuses them and retries only the failed job;
    a table of theirs damaged afterwards is removed and recomputed identically by the next run."""
    import os
    import subprocess
    import sys

    from plmdepth.publish import grid
    from plmdepth.publish.chapters import shared_parameters

    project = _project_copy(tmp_path / "project")
    good, broken = tmp_path / "good_esm", tmp_path / "broken_esm"
    tiny_esm_hf(seed=5, max_positions=256).save_pretrained(good)  # room for the 135-residue chains
    tiny_esm_hf(seed=6, max_positions=256).save_pretrained(broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # cut short: safetensors cannot read it
    config = {"models": f"{good},{broken}", "structure_models": "", "twin_seeds": 0, "untrained_models": "",
              "n_sequences": 4, "noise_floor_sequences": 2}
    jobs = [j for j in grid.jobs({**shared_parameters(), **config}, chapters=["logit-lens"])[0]
            if j.request.folder.name in ("good_esm", "broken_esm") and j.request.measurement == "logit_lens"]
    targets = [out for job in jobs for out in job.outputs]
    options = ["--config", *(f"{k}={v}" for k, v in config.items())]
    script = ("import sys\nfrom plmdepth.publish import BookError\nfrom plmdepth.publish.book import run_workflow\n"
              f"try:\n    run_workflow(*{options!r}, targets={targets!r})\n"
              "except BookError as err:\n    print(f'error: {err}'); sys.exit(1)\n")
    env = {**os.environ, "PLMDEPTH_ROOT": str(project)}
    first = subprocess.run([sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True)
    assert first.returncode == 1, first.stdout[-2000:] + first.stderr[-2000:]
    said = first.stdout.strip().splitlines()[-1]
    assert said.startswith("error: the workflow failed: the measurements of broken_esm: ") and "good_esm" not in said
    assert "(log: logs/measure/broken_esm.log)" in said and "run the same command again to redo only what failed" in said
    good_folder = project / "results" / "good_esm"
    record = Results([good_folder])  # reading checks every table against run.json's digests
    assert set(record.tables("logit_lens")) == {"logit_lens", "logit_lens_per_sequence"}
    finished = json.loads((good_folder / "run.json").read_text())["measurements"]["logit_lens"]["finished"]
    again = subprocess.run([sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "the measurements of broken_esm" in again.stdout
    assert json.loads((good_folder / "run.json").read_text())["measurements"]["logit_lens"]["finished"] == finished
    # a table damaged between builds is removed and recomputed by the next workflow run, byte for byte
    table = good_folder / "logit_lens.csv"
    whole = table.read_bytes()
    table.write_bytes(whole[:300])
    third = subprocess.run([sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True)
    assert ("results/good_esm/logit_lens.csv differs from what its run wrote (run.json records its size and sha256): "
            "removed, the workflow recomputes it.") in third.stdout
    assert table.read_bytes() == whole
