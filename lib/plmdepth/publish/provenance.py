"""Where a chapter's numbers came from: captions and provenance tables from run.json."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from plmdepth import paths
from plmdepth.results import RunRecord, read_record


def _runs(folders: list[str | Path]) -> list[tuple[RunRecord, dict]]:
    """(record, run.json) of every results folder (one sentence for a folder without run.json)."""
    return [(record, record.run) for record in map(read_record, folders)]


def run_caption(folders: list[str | Path], fasta: str, measurement: str, seed: int, unit: str = "sequences") -> str:
    """One sentence for a figure caption: models, data, number of sequences (or `unit`), seed.

    The data file of each run is read from its run.json (`fasta` is the fallback), so a chapter
    whose models ran on different data (ProteinMPNN on structures) names each file with its models.
    Untrained twins are named once, by their seeds (and an architecture run untrained only as
    "<name> untrained").
    """
    runs = _runs(folders)
    trained = {record.model.display for record, _ in runs if not record.model.twin_of}

    def name(record) -> str:
        twin_of = record.model.twin_of
        return record.model.display if not twin_of else None if twin_of in trained else f"{twin_of} untrained"

    names = ", ".join(n for n in dict.fromkeys(name(record) for record, _ in runs) if n)
    seeds = sorted({record.model.init_seed for record, _ in runs if record.model.twin_of})
    twins = f"; untrained twins of each, seeds {', '.join(map(str, seeds))}" if seeds else ""
    by_data: dict[str, dict] = {}
    for record, run in runs:
        meas = run["measurements"][measurement]
        data = by_data.setdefault(Path(meas.get("fasta") or meas.get("reference") or fasta).name,
                                  {"models": {}, "counts": set()})
        if name(record):
            data["models"][name(record)] = None
        data["counts"].add(meas["n_sequences"])
    parts = []
    for file, data in by_data.items():
        n_text = " / ".join(str(c) for c in sorted(data["counts"]))
        models = f"{', '.join(data['models'])}: " if len(by_data) > 1 else ""
        parts.append(f"{file} ({models}{n_text} {unit})" if models else f"{file}, {n_text} {unit}")
    return f"Models: {names}{twins}. Data: {'; '.join(parts)}; seed {seed}."


def _inputs(meas: dict) -> str:
    if meas.get("fasta"):
        return f"{meas['fasta']} ({meas.get('key', {}).get('fasta_sha256', '')[:15]}…)"
    assays = meas.get("assays", {})
    return f"{meas.get('reference')}: " + ", ".join(f"{a} ({h[:15]}…)" for a, h in assays.items())


def provenance_table(folders: list[str | Path], measurement: str) -> pd.DataFrame:
    """One row per results folder: what ran, on what, with which versions."""
    rows = []
    for record, run in _runs(folders):
        meas = record.entry(measurement)
        rows.append({
            "model": record.model.display,
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
            "results folder": str(record.folder),
        })
    return pd.DataFrame(rows)


def _short(checksum: str | None, n: int = 12) -> str:
    """"sha256:0123…" -> "0123456789ab…" (the first hash of a compound checksum)."""
    if not checksum:
        return ""
    first = str(checksum).split()[0]
    return first.split(":", 1)[-1][:n] + "…"


def _data(meas: dict) -> tuple[str, str]:
    """(short text, full text for a tooltip) naming a measurement's input data."""
    if meas.get("fasta"):
        sha = meas.get("key", {}).get("fasta_sha256", "")
        return Path(meas["fasta"]).name, f"{meas['fasta']} {sha}".strip()
    assays = meas.get("assays", {})
    if assays:
        full = f"{meas.get('reference')}: " + "; ".join(f"{a} {h}" for a, h in assays.items())
        return f"{Path(str(meas.get('reference'))).name} ({len(assays)} assays)", full
    return "", ""


def _run_json_link(folder: Path, prefix: str) -> str:
    """A link to the run.json of `folder` as the built book serves it (book/_ext/book_files.py copies
    each folder of the project's results/ to results/<folder>/run.json), or its path as text."""
    root = paths.project_root()
    resolved = (folder if folder.is_absolute() else root / folder).resolve()
    if resolved.parent == (root / "results").resolve():
        href = html.escape(f"{prefix}results/{resolved.name}/run.json")
        return f'<a href="{href}">{html.escape(resolved.name)}/run.json</a>'
    return f"<code>{html.escape(str(folder))}/run.json</code>"


class Provenance:
    """The runs behind a chapter as compact HTML: a collapsed `<details>` holding one row per run
    (model, weights source and checksum, data, sequences, seed, wall time) and a link to each
    results folder's run.json, which records the rest (configuration, plan, device, versions).

    Displayed by Jupyter (and so by the book) through `_repr_html_`; `.table` is the full
    `provenance_table` (one DataFrame over all measurements, with a `measurement` column)."""

    def __init__(self, folders, measurement: str | None = None, link_prefix: str = "../"):
        if isinstance(folders, dict):
            self.groups = {m: [Path(f) for f in fs] for m, fs in folders.items()}
        else:
            if measurement is None:
                raise ValueError("name the measurement, or pass {measurement: folders}")
            self.groups = {measurement: [Path(f) for f in folders]}
        self.link_prefix = link_prefix

    @property
    def table(self) -> pd.DataFrame:
        return pd.concat([provenance_table(fs, m).assign(measurement=m) for m, fs in self.groups.items()],
                         ignore_index=True)

    def _repr_html_(self) -> str:
        several = len(self.groups) > 1
        head = (["measurement"] if several else []) + ["model", "weights", "checksum", "data", "sequences",
                                                       "seed", "wall time", "full record"]
        rows, versions, n_runs = [], {}, 0
        for measurement, folders in self.groups.items():
            for record, run in _runs(folders):
                n_runs += 1
                meas = record.entry(measurement)
                data, data_full = _data(meas)
                checksum = run["model"].get("checksum", "")
                wall = meas.get("wall_time_s")
                for name, version in run.get("versions", {}).items():
                    versions.setdefault(name, set()).add(str(version))
                cells = ([html.escape(measurement.replace("_", " "))] if several else []) + [
                    html.escape(record.model.display),
                    html.escape(str(run["model"].get("source", ""))),
                    f'<code title="{html.escape(checksum)}">{html.escape(_short(checksum))}</code>',
                    f'<span title="{html.escape(data_full)}">{html.escape(data)}</span>',
                    html.escape(str(meas.get("n_sequences", ""))),
                    html.escape(str(meas.get("seed", ""))),
                    f"{wall:.0f} s" if isinstance(wall, (int, float)) else "",
                    _run_json_link(record.folder, self.link_prefix),
                ]
                rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        header = "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
        versions_text = ", ".join(f"{name} {' / '.join(sorted(v))}" for name, v in sorted(versions.items()))
        runs_text = f"{n_runs} run{'s' if n_runs != 1 else ''}"
        return (
            '<details class="plmdepth-provenance">'
            f"<summary>The {runs_text} behind this chapter: model, weights, data, seed, wall time "
            "(click to show)</summary>"
            '<div class="plmdepth-scroll"><table class="plmdepth-provenance-table">'
            f"<thead>{header}</thead><tbody>{''.join(rows)}</tbody></table></div>"
            f"<p>Package versions: {html.escape(versions_text)}. Hover over a checksum or a data file for "
            "its full value. Each run's <code>run.json</code> records the rest: the measurement's "
            "configuration, the masking plan's checksum, the device and the finishing time.</p>"
            "</details>"
        )

    def __repr__(self) -> str:
        return self.table.to_string(index=False)


def provenance(folders, measurement: str | None = None) -> Provenance:
    """What a chapter's provenance cell displays: `provenance(result.folders, "logit_lens")`, or
    `provenance({measurement: folders, ...})` for a chapter built from several measurements."""
    return Provenance(folders, measurement)
