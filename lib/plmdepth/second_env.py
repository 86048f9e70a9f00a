"""The second environment (.venv-esm): runs for models that need EvolutionaryScale's `esm`.

ESM C and ESM3 need EvolutionaryScale's `esm` package, which cannot live beside fair-esm (same
import name). Asked for from the main environment, a run is sent as its JSON request
(`RunRequest.to_json`) to `.venv-esm/bin/python -m plmdepth run-request`, which runs it
into the same results folder and prints that folder as its last line of output; the caller
reads the folder's run.json. Progress and messages of the child reach stderr as they come.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from plmdepth import paths
from plmdepth.models import ModelLoadError, ModelSpec
from plmdepth.models import evolutionaryscale


def needed(spec: ModelSpec) -> bool:
    """True when `spec` loads only with EvolutionaryScale's `esm` and this environment lacks it."""
    return spec.environment == "esm" and evolutionaryscale.package_status() != "evolutionaryscale"


def run_request(request: dict, progress: bool = True) -> Path:
    """Run the request (`RunRequest.to_json()`) in .venv-esm; returns the results folder it wrote."""
    python = paths.esm_env() / "bin" / "python"
    model = request["model"]
    if not python.is_file():
        raise ModelLoadError(f"'{model}' runs in the second environment {python.parents[1]} (EvolutionaryScale's "
                             "esm package), which does not exist yet; create it with `make esm-env`.")
    env = {**os.environ, "PLMDEPTH_ROOT": str(paths.project_root())}
    command = [str(python), "-m", "plmdepth", "run-request", *([] if progress else ["--no-progress"])]
    done = subprocess.run(command, input=json.dumps(request),
                          stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE, text=True, env=env)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        messages = (done.stderr or "").strip().splitlines()
        why = messages[-1].removeprefix("error: ") if messages else "its messages are above"
        raise ModelLoadError(f"the run of '{model}' in .venv-esm failed ({why}).")
    return Path(json.loads(lines[-1])["results_folder"])
