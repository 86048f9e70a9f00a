"""Where a chapter's numbers came from: captions and provenance tables from run.json."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from plmdepth.results import read_run


def _runs(folders: list[str | Path]) -> list[tuple[Path, dict]]:
    out = []
    for folder in folders:
        run = read_run(folder)
        if run is None:
            raise FileNotFoundError(f"no run.json in {folder}")
        out.append((Path(folder), run))
    return out


def run_caption(folders: list[str | Path], fasta: str, measurement: str, seed: int, unit: str = "sequences") -> str:
    """One sentence for a figure caption: models, data, number of sequences (or `unit`), seed."""
    runs = _runs(folders)
    names = ", ".join(dict.fromkeys(run["model"]["name"] for _, run in runs))
    counts = sorted({run["measurements"][measurement]["n_sequences"] for _, run in runs})
    n_text = " / ".join(str(c) for c in counts)
    return f"Models: {names}. Data: {Path(fasta).name}, {n_text} {unit}; seed {seed}."


def _inputs(meas: dict) -> str:
    if meas.get("fasta"):
        return f"{meas['fasta']} ({meas.get('key', {}).get('fasta_sha256', '')[:15]}…)"
    assays = meas.get("assays", {})
    return f"{meas.get('reference')}: " + ", ".join(f"{a} ({h[:15]}…)" for a, h in assays.items())


def provenance_table(folders: list[str | Path], measurement: str) -> pd.DataFrame:
    """One row per results folder: what ran, on what, with which versions."""
    rows = []
    for folder, run in _runs(folders):
        meas = run["measurements"].get(measurement, {})
        rows.append({
            "model": run["model"]["name"],
            "source": run["model"]["source"],
            "weights checksum": run["model"]["checksum"][:23] + "…",
            "inputs": _inputs(meas),
            "sequences": meas.get("n_sequences"),
            "seed": meas.get("seed"),
            "plan": (meas.get("plan_sha256") or "")[:15] + "…" if meas.get("plan_sha256") else "none",
            "config": meas.get("config"),
            "wall time [s]": meas.get("wall_time_s"),
            "device": meas.get("device"),
            "versions": ", ".join(f"{k} {v}" for k, v in run["versions"].items()),
            "results folder": str(folder),
        })
    return pd.DataFrame(rows)
