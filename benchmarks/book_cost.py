#!/usr/bin/env python
"""What the book's workflow spends its time on: per job, compute against overhead.

Run from the repository root after a build (`make book`), or let it time one:

    .venv/bin/python benchmarks/book_cost.py                  # the last build's jobs
    .venv/bin/python benchmarks/book_cost.py --build          # time `python -m plmdepth book` first

Per measurement job (one per results folder) it prints the job's wall time (Snakemake's
benchmark file, logs/benchmarks/measure/<folder>.tsv), the compute of its measurements
(`wall_time_s` in the folder's run.json), the model load (`model_load_s`), and the rest:
process start, imports, reading and checking the data, writing the tables. Per chapter job:
the job's wall time, papermill's execution of the notebook (cell by cell, summed) and the rest
(process start, kernel start). Then the book job (Jupyter Book), the totals, and with `--build`
the wall time of the whole workflow (cold when no results existed, warm when all were there).
Numbers are seconds; other work on the machine inflates them (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from common import machine  # benchmarks/common.py (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]


def _benchmark_seconds(path: Path) -> float | None:
    """The wall seconds of a Snakemake benchmark file (`s` column), or None when the job did not run."""
    if not path.is_file():
        return None
    return float(pd.read_csv(path, sep="\t")["s"].iloc[-1])


def measurement_jobs(logs: Path, results: Path) -> pd.DataFrame:
    rows = []
    for bench in sorted((logs / "benchmarks" / "measure").glob("*.tsv")):
        folder = results / bench.stem
        run = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
        entries = run.get("measurements", {})
        compute = sum(e.get("wall_time_s", 0.0) for e in entries.values())
        load = sum(e.get("model_load_s", 0.0) for e in entries.values())
        job = _benchmark_seconds(bench)
        rows.append({"job": bench.stem, "measurements": len(entries), "job_s": job, "compute_s": compute,
                     "model_load_s": load, "other_s": job - compute - load,
                     "twin": "@random" in bench.stem})
    return pd.DataFrame(rows)


def chapter_jobs(logs: Path, chapters: Path) -> pd.DataFrame:
    rows = []
    for bench in sorted((logs / "benchmarks" / "chapters").glob("*.tsv")):
        notebook = chapters / f"{bench.stem}.ipynb"
        cells = 0.0
        if notebook.is_file():
            nb = json.loads(notebook.read_text())
            cells = sum(c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0 for c in nb["cells"])
        job = _benchmark_seconds(bench)
        rows.append({"job": bench.stem, "job_s": job, "cells_s": cells, "other_s": job - cells})
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="time `python -m plmdepth book` first")
    parser.add_argument("--logs", default=str(ROOT / "logs"))
    parser.add_argument("--results", default=str(ROOT / "results"))
    args = parser.parse_args()
    print(machine())
    if args.build:
        cold = not any(Path(args.results).glob("*/run.json"))
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "plmdepth", "book"], cwd=ROOT)
        wall = time.perf_counter() - started
        print(f"\nworkflow ({'cold: no results before' if cold else 'warm: results already there'}): "
              f"{wall:.1f} s, exit status {proc.returncode}")
    logs, results = Path(args.logs), Path(args.results)
    pd.set_option("display.width", 160)
    measure = measurement_jobs(logs, results)
    chapters = chapter_jobs(logs, logs.parent / "book" / "chapters")  # the project the logs belong to
    if measure.empty and chapters.empty:
        print(f"\nno job benchmarks under {logs / 'benchmarks'}: build the book first (make book, or --build)")
        return 1
    if not measure.empty:
        print("\nmeasurement jobs (one per results folder), seconds:")
        print(measure.drop(columns="twin").round(1).to_string(index=False))
        for label, part in (("trained", measure[~measure["twin"]]), ("untrained twins", measure[measure["twin"]]),
                            ("all", measure)):
            if len(part):
                print(f"  {label:16s} {len(part):3d} jobs  job {part['job_s'].sum():7.1f}  compute "
                      f"{part['compute_s'].sum():7.1f}  model load {part['model_load_s'].sum():6.1f}  "
                      f"other {part['other_s'].sum():6.1f}")
    if not chapters.empty:
        print("\nchapter jobs, seconds:")
        print(chapters.round(1).to_string(index=False))
        print(f"  all {len(chapters)} chapters: job {chapters['job_s'].sum():.1f}, cells {chapters['cells_s'].sum():.1f}, "
              f"other {chapters['other_s'].sum():.1f}")
    book = _benchmark_seconds(logs / "benchmarks" / "book.tsv")
    if book is not None:
        print(f"\nbook job (Jupyter Book, HTML): {book:.1f} s")
    total = sum(t["job_s"].sum() for t in (measure, chapters) if not t.empty) + (book or 0.0)
    print(f"sum of job wall times: {total:.1f} s (jobs run two at a time where the cores allow)")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
