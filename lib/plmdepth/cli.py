"""Command line: `python -m plmdepth {run,variant-effects,models,chapter,book} ...`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager

from plmdepth.fasta import FastaError
from plmdepth.models import REGISTRY, ModelLoadError, resolve
from plmdepth.models.device import PRECISIONS
from plmdepth.models.hub import TRUST_REMOTE_CODE
from plmdepth.paths import ProjectNotFound
from plmdepth.probes.measurements import MEASUREMENTS
from plmdepth.probes.variant_effects import AssayError
from plmdepth.probes.variant_scoring import SCORINGS
from plmdepth.publish import BookError
from plmdepth.requests import RunRequest
from plmdepth.results import read_record
from plmdepth.runner import run, run_all
from plmdepth.weights import WeightsError

MEASUREMENT_NAMES = [name.replace("_", "-") for name in MEASUREMENTS]  # logit-lens, layer-skipping, ...


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad option reported in one line (the usage is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help).\n")


def _at_least(minimum: int, why: str = ""):
    """argparse type: a whole number of at least `minimum` (`why` says why, in the message)."""
    def whole_number(text: str) -> int:
        value = non_negative_int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{why}, not {value}")
        return value
    return whole_number


positive_int = _at_least(1)
at_least_two = _at_least(2, " (a Spearman correlation needs two)")


def non_negative_int(text: str) -> int:
    """argparse type: a whole number of at least 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, not {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, not {value}")
    return value


def _run(args) -> int:
    measurement = args.measurement.replace("-", "_")
    params = {"batch_size": args.batch_size} if args.batch_size else {}
    if MEASUREMENTS[measurement].inputs == "assays":
        data = args.reference
        options = dict(assays=args.assay or None, max_variants=args.max_variants)
        params.update(scoring=args.scoring, n_bootstrap=args.n_bootstrap)
        if args.no_prefix_cache:
            params["prefix_cache"] = False
    else:
        if not args.fasta:
            raise ValueError(f"{args.measurement} needs --fasta FILE (the sequences to measure)")
        data = args.fasta
        options = dict(plan=args.plan, n_sequences=args.n_sequences, mask_fraction=args.mask_fraction,
                       unknown=args.unknown, too_long=args.too_long)
        if measurement in ("logit_lens", "layer_skipping", "tuned_lens", "part_skipping"):
            params["vocab"] = args.vocab
        if measurement == "layer_skipping":
            params.update(mode=args.mode, max_rows=args.max_rows)
            if args.part != "block":
                params["part"] = args.part
        if measurement == "part_skipping":
            params["max_rows"] = args.max_rows
    spec = resolve(args.model, objective=args.objective)
    request = RunRequest.build(measurement, spec, data, out=args.out, seed=args.seed, device=args.device,
                               dtype=args.dtype, **options, **params)
    folder = run(request, force=args.force)
    for name, table in read_record(folder).tables(measurement).items():
        if name.endswith("_per_sequence"):  # the sums intervals resample: named, not printed
            print(f"== {folder / name}.csv ({len(table)} rows: per-sequence sums)")
            continue
        print(f"== {folder / name}.csv")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", max_rows=80))
    return 0


def _run_request(args) -> int:
    """Run one `RunRequest` given as JSON on stdin (`RunRequest.to_json`), or a JSON list of them
    (each model loaded once, `runner.run_all`); print the results folder (or folders) as JSON. How
    a workflow job (every measurement of one results folder) and the second environment run."""
    given = json.loads(sys.stdin.read())
    if isinstance(given, list):
        folders = run_all([RunRequest.from_json(r) for r in given], progress=not args.no_progress)
        print(json.dumps({"results_folders": [str(f) for f in dict.fromkeys(folders)]}))
        return 0
    folder = run(RunRequest.from_json(given), progress=not args.no_progress)
    print(json.dumps({"results_folder": str(folder)}))
    return 0


def _models(args) -> int:
    rows = [entry.describe() for entry in REGISTRY.values()]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        rows = [{**{k: v for k, v in r.items() if k not in ("offline", "weights_from")},
                 "weights": r["weights_from"]} for r in rows]
        columns = list(rows[0])
        widths = {c: max(len(c), *(len(str(r[c] if r[c] is not None else "")) for r in rows)) for c in columns}
        print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
        for r in rows:
            print("  ".join(str(r[c] if r[c] is not None else "").ljust(widths[c]) for c in columns).rstrip())
    return 0


def _chapter(args) -> int:
    from plmdepth.publish.book import project_lock  # the book's packages: not in .venv-esm

    with project_lock(f"python -m plmdepth chapter {args.chapter}"):
        return _run_chapter(args)


def _run_chapter(args) -> int:
    from plmdepth.publish.book import build_book, run_chapter

    bad = [kv for kv in args.param if "=" not in kv]
    if bad:
        raise ValueError(f"parameters are NAME=VALUE, not {bad[0]!r}")
    params = dict(kv.split("=", 1) for kv in args.param)
    if args.models:
        params["models"] = args.models
    path = run_chapter(args.chapter, params, yaml_values=True, add_models=args.add_model)
    print(f"Executed {path}")
    if not args.no_build:
        build_book(execute=False, full=False)
    return 0


def _book(args) -> int:
    from plmdepth.publish.book import build_book  # the book's packages: not in .venv-esm

    build_book(execute=not args.no_execute)
    return 0


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a scheduler's or a parent's stop) handled as SIGINT while the command runs: the same
    clean stop (running jobs stopped, checkpoints kept) and the same message. Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _progress_messages():
    """Show plmdepth's INFO messages (e.g. a first download of shipped weights) on stderr while the
    command runs, and leave the logger as it was: `main` may be called in-process (tests, notebooks),
    where a handler left behind would keep writing to a stderr that is gone."""
    logger = logging.getLogger("plmdepth")
    if logger.handlers:
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _model_options(p, objective: bool = True) -> None:
    p.add_argument("--model", required=True,
                   help="registry name (`python -m plmdepth models`), hub id, local folder, or .pt / .pth file")
    p.add_argument("--out", default="results", help="results root; the run goes to OUT/<model-slug>/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=positive_int, help="sequences per batch (default: the measurement's)")
    if objective:
        p.add_argument("--objective", choices=["masked", "diffusion"],
                       help="override an ESM-2 network's objective (diffusion: DPLM weights in a local folder)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=list(PRECISIONS),
                   help="float32 (default); mixed-bfloat16: weights and residual stream in float32, matrix products "
                        "in bfloat16 (torch.autocast); bfloat16, float16, float64: weights and activations in that type")
    p.add_argument("--force", action="store_true", help="recompute even if a cached run matches")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the Python code a model's repository ships to define its architecture (auto_map in its "
                        "config.json; refused otherwise); only for sources you trust")


def _assay_options(p) -> None:
    p.add_argument("--reference", default="data/dms/DMS_substitutions.csv",
                   help="variant effects: ProteinGym-style reference table (DMS_id, target_seq); assay CSVs beside it")
    p.add_argument("--assay", action="append", help="variant effects: assay id to use (repeatable; default: all)")
    p.add_argument("--max-variants", type=at_least_two,
                   help="variant effects: seeded random subset of each larger assay (default: every variant)")
    p.add_argument("--scoring", default="auto", choices=["auto", *SCORINGS],
                   help="variant effects: auto = masked_marginal (masked, diffusion) or log_likelihood_ratio "
                        "(autoregressive), as ProteinGym scores them")
    p.add_argument("--no-prefix-cache", action="store_true",
                   help="variant effects: run every autoregressive variant whole instead of resuming from the "
                        "wild type's prefix (same scores, slower; for benchmarks)")
    p.add_argument("--n-bootstrap", type=non_negative_int, default=200)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m plmdepth", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a measurement on a model (a FASTA file, or the assays for variant effects)")
    p.add_argument("measurement", choices=MEASUREMENT_NAMES)
    _model_options(p)
    p.add_argument("--fasta", help="the sequences (every measurement but variant-effects)")
    p.add_argument("--plan", help="plan.json of an earlier run, to repeat it exactly")
    p.add_argument("--n-sequences", type=positive_int, help="use the first N records")
    p.add_argument("--mask-fraction", type=fraction, default=0.15)
    p.add_argument("--vocab", choices=["full", "amino_acids"], default="full")
    p.add_argument("--mode", choices=["future", "current", "local"], default="future",
                   help="layer skipping: skip outside F and measure at F, skip and measure everywhere, or (local) "
                        "take the skipped update out of the last residual stream without recomputing later blocks")
    p.add_argument("--part", choices=["block", "attention", "mlp"], default="block",
                   help="layer skipping: skip the whole block, or only its attention or only its MLP")
    p.add_argument("--max-rows", type=positive_int, default=64,
                   help="layer skipping: most skip variants x units per call")
    p.add_argument("--unknown", choices=["error", "map"], default="error", help="X/B/Z/U/O: error or unknown token")
    p.add_argument("--too-long", choices=["error", "crop"], default="error")
    _assay_options(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("variant-effects", help="per-layer variant-effect prediction on ProteinGym-style assays "
                                               "(the same as `run variant-effects`)")
    _model_options(p)
    _assay_options(p)
    p.set_defaults(func=_run, measurement="variant-effects")

    p = sub.add_parser("run-request", help="run one JSON request (or a JSON list of them) read from stdin (how "
                                           "the second environment and the workflow's jobs run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_request)

    p = sub.add_parser("models", help="list registered models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_models)

    p = sub.add_parser("chapter", help="execute one chapter's notebook with papermill")
    p.add_argument("chapter", help="chapter name, e.g. logit-lens")
    p.add_argument("--add-model", metavar="MODELS",
                   help="comma-separated models to add to the chapter's models (registry names, hub ids, folders)")
    p.add_argument("--models", help="comma-separated models replacing the chapter's `models` parameter")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="any other parameter of the chapter (value parsed as YAML)")
    p.add_argument("--no-build", action="store_true", help="only execute the chapter, do not rebuild the HTML")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow models whose repositories ship Python code for their architecture (see `run`)")
    p.set_defaults(func=_chapter)

    p = sub.add_parser("book", help="run the workflow (measurements and chapters that are missing or out of date) "
                                    "and build the HTML book")
    p.add_argument("--no-execute", action="store_true", help="only build the HTML from the executed notebooks there")
    p.set_defaults(func=_book)

    args = parser.parse_args(argv)
    if getattr(args, "trust_remote_code", False):
        os.environ[TRUST_REMOTE_CODE] = "1"  # read by the loader, here and in every workflow job this starts
    try:
        with _progress_messages(), _terminate_as_interrupt():
            return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the last checkpoint (finished work is kept).",
              file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        status, message = _explain(err)
        print(f"error: {message}", file=sys.stderr)
        return status


def _explain(err: Exception) -> tuple[int, str]:
    """(exit status, one sentence) for an error: 2 for the user's input, 1 for the machine's faults."""
    if isinstance(err, (FastaError, AssayError, ModelLoadError, WeightsError, BookError, ProjectNotFound, ValueError,
                        FileNotFoundError)):
        return 2, str(err)
    if isinstance(err, OSError):
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        return 1, f"{err.strerror or err}{where}; check free space and permissions, then run the command again."
    if isinstance(err, MemoryError):
        return 1, "out of memory; run with a smaller --batch-size (or fewer sequences)."
    first = str(err).strip().splitlines()[0] if str(err).strip() else "no message"
    return 1, f"{type(err).__name__}: {first} (run again with --debug for the traceback)."
