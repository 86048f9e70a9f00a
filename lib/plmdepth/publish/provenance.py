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
    """One sentence for a figure caption: models, data, number of sequences (or `unit`), seed.

    The data file of each run is read from its run.json (`fasta` is the fallback), so a chapter
    whose models ran on different data (ProteinMPNN on structures) names each file with its models.
    """
    runs = _runs(folders)
    names = ", ".join(dict.fromkeys(run["model"]["name"] for _, run in runs))
    by_data: dict[str, dict] = {}
    for _, run in runs:
        meas = run["measurements"][measurement]
        data = by_data.setdefault(Path(meas.get("fasta") or meas.get("reference") or fasta).name,
                                  {"models": {}, "counts": set()})
        data["models"][run["model"]["name"]] = None
        data["counts"].add(meas["n_sequences"])
    parts = []
    for name, data in by_data.items():
        n_text = " / ".join(str(c) for c in sorted(data["counts"]))
        models = f"{', '.join(data['models'])}: " if len(by_data) > 1 else ""
        parts.append(f"{name} ({models}{n_text} {unit})" if models else f"{name}, {n_text} {unit}")
    return f"Models: {names}. Data: {'; '.join(parts)}; seed {seed}."


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
