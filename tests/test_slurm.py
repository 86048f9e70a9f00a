"""The workflow on a real SLURM cluster: a single-node cluster started on this machine
(scripts/slurm_cluster.sh: slurmctld, slurmd and munged as plain daemons), a small grid (two
offline models x two measurements) submitted through Snakemake's SLURM executor
(profiles/slurm-local), and the same grid run locally: the results must agree, byte for byte
as a rule (see the comparison below for the one exception seen).

Needs root (the script installs Debian's slurm-wlm and munge when missing and runs the daemons);
skipped otherwise. The daemons are stopped by their PID files at the end.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from plmdepth import paths

pytestmark = pytest.mark.slurm

ROOT = paths.project_root()
SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"
MODELS = ("iglm-s", "sapiens-vh")
TABLES = {"logit_lens": ("logit_lens",), "contributions": ("contributions",)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld, slurmd and munged needs root")
    # not under pytest's owner-only temporary folder: munged runs as user munge and must reach its files
    state = Path(tempfile.mkdtemp(prefix="plmdepth-slurm-"))
    state.chmod(0o755)
    started = time.perf_counter()
    proc = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=600)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        conf = re.fullmatch(r"export SLURM_CONF=(\S+)\n", proc.stdout).group(1)
        print(f"cluster up in {time.perf_counter() - started:.1f} s")
        yield {**os.environ, "SLURM_CONF": conf}
    finally:
        stop = subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, stop.stderr[-2000:]
        status = subprocess.run(["bash", str(SCRIPT), "status", str(state)], capture_output=True, text=True)
        assert status.returncode != 0  # no daemon left
        shutil.rmtree(state, ignore_errors=True)


def _snakemake(tmp_path, name: str, options: list[str], env=None) -> tuple[list, subprocess.CompletedProcess]:
    results = tmp_path / name / "results"
    targets = [str(results / model / f"{table}.csv") for model in MODELS for tables in TABLES.values()
               for table in tables]
    cmd = [sys.executable, "-m", "snakemake", "--nolock",  # another workflow (the book) may run in this checkout
           "--config", f"results_dir={results}", f"logs_dir={tmp_path / name / 'logs'}",
           f"models={','.join(MODELS)}", "n_sequences=24", *options, *targets]
    started = time.perf_counter()
    # SIGINT on timeout: the executor waits for its jobs; -k kills it if it does not stop
    proc = subprocess.run(["timeout", "-s", "INT", "-k", "20", "900", *cmd], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    print(f"{name}: {time.perf_counter() - started:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return targets, proc


def test_a_grid_submitted_through_slurm_gives_the_local_results_byte_for_byte(cluster, tmp_path):
    on_slurm, proc = _snakemake(tmp_path, "slurm", ["--profile", "profiles/slurm-local"], env=cluster)
    log = proc.stdout + proc.stderr
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == len(MODELS) * len(TABLES), log[-3000:]  # every job went through sbatch
    # SLURM ran them: each job id is known to the controller and ended COMPLETED
    for job in submitted:
        state = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=cluster).stdout
        assert "JobState=COMPLETED" in state, state
    locally, _ = _snakemake(tmp_path, "local", ["--cores", "2"])
    assert len(on_slurm) == len(locally) == 4
    differing = [remote for remote, local in zip(on_slurm, locally)
                 if open(remote, "rb").read() != open(local, "rb").read()]
    # Byte-identical is the expectation and the usual outcome. In some runs one IgLM-S file had float32
    # values differing in the 6th-7th significant digit, the odd value coming from the SLURM run once and
    # from the local run once (a rare run-to-run difference, cause not found; see the README's cluster
    # section); the tables must then still agree everywhere else and to 1e-5 there.
    for remote, local in zip(on_slurm, locally):
        a, b = pd.read_csv(remote), pd.read_csv(local)
        assert list(a.columns) == list(b.columns) and a.shape == b.shape, remote
        numeric = a.select_dtypes("number").columns
        pd.testing.assert_frame_equal(a.drop(columns=numeric), b.drop(columns=numeric))
        assert np.allclose(a[numeric], b[numeric], rtol=1e-5, atol=1e-9), remote
    print(f"byte-identical: {len(on_slurm) - len(differing)} of {len(on_slurm)}; differing: {differing}")
