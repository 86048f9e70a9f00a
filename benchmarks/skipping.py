#!/usr/bin/env python
"""Layer-skipping benchmark (SPEC M2 + M3): the fast implementation against the plain reference.

Run by hand from the repository root (it is not a test):

    .venv/bin/python benchmarks/skipping.py --quick              # a few minutes: checks that it all runs
    .venv/bin/python benchmarks/skipping.py --only headline      # 35M, 64 x 256: fast vs reference
    .venv/bin/python benchmarks/skipping.py --only scaling       # 8M/35M/150M and lengths 128/256/512
    .venv/bin/python benchmarks/skipping.py --only memory        # 150M peak RSS, 32 vs 256 sequences

Models are randomly initialised ESM-2 architectures built from the published configs
(no download); sequences are random strings of the 20 canonical amino acids. Timings use
torch's default thread count. See benchmarks/README.md for what each part measures.
"""

from __future__ import annotations

import resource

_START_MAXRSS = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before torch is imported

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "tests"))

from plmdepth.fasta import Record  # noqa: E402
from plmdepth.probes.layer_skipping import SkipConfig, layer_skipping  # noqa: E402
from plmdepth.plan import make_plan  # noqa: E402
from plmdepth.models.architectures import wrap_esm  # noqa: E402
from common import Timer, machine  # benchmarks/common.py (this folder is on sys.path)

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
# published ESM-2 configs: layers, hidden, heads, intermediate
ARCHS = {
    "8M": (6, 320, 20, 1280),
    "35M": (12, 480, 20, 1920),
    "150M": (30, 640, 20, 2560),
}
TOL = 1e-5


# ----------------------------------------------------------------------------- set-up
def build(arch: str, seed: int = 0):
    from transformers import EsmConfig, EsmForMaskedLM

    layers, hidden, heads, intermediate = ARCHS[arch]
    config = EsmConfig(vocab_size=33, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       intermediate_size=intermediate, max_position_embeddings=1026,
                       position_embedding_type="rotary", token_dropout=True, mask_token_id=32, pad_token_id=1,
                       emb_layer_norm_before=False, layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    hf_model = EsmForMaskedLM(config).eval()
    depth = {"8M": 6, "35M": 12, "150M": 30}[arch]
    return wrap_esm(hf_model, f"esm2_t{depth}_{arch}-random", "random init (published config)")


def make_records(n: int, length: int, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    letters = np.array(list(AMINO_ACIDS))
    return [Record(f"r{i}", "", "".join(rng.choice(letters, size=length))) for i in range(n)]


def fmt_s(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


# ----------------------------------------------------------------------------- runs
@torch.no_grad()
def run_fast(lm, records, plan, batch_size: int, max_rows: int):
    config = SkipConfig(batch_size=batch_size, max_rows=max_rows)
    with Timer() as t:
        effect_table, output_table = layer_skipping(lm, records, plan, config, progress=False)
    return (effect_table, output_table), t


@torch.no_grad()
def run_reference(lm, records, plan, batch_size: int):
    """tests/reference.py, batch by batch as the fast run batches, aggregated the same way."""
    from reference import reference_skipping

    L = lm.n_layers
    with Timer() as t:
        order = sorted(range(len(records)), key=lambda i: len(records[i].sequence))  # as layer_skipping does
        effects, l2s, kls = [], [], []
        for start in range(0, len(order), batch_size):
            recs = [records[i] for i in order[start:start + batch_size]]
            plans = [plan.for_id(r.id) for r in recs]
            batch = lm.tokenize([r.id for r in recs], [r.sequence for r in recs], masked=[p.masked for p in plans])
            effect, l2, kl = reference_skipping(lm, batch, plans, mode="future")
            effects.append(effect)
            l2s.append(l2)
            kls.append(kl)
        effect, l2, kl = np.concatenate(effects), np.concatenate(l2s), np.concatenate(kls)
        pairs = [(s, j) for s in range(L) for j in range(s + 1, L)]
        tables = {
            "effect_max": np.array([effect[:, s, j].max() for s, j in pairs]),
            "effect_mean": np.array([effect[:, s, j].mean() for s, j in pairs]),
            "prob_l2_max": l2.max(0), "prob_l2_mean": l2.mean(0), "kl_mean": kl.mean(0), "kl_max": kl.max(0),
            "n_units": len(effect),
        }
    return tables, t


def compare(fast, ref) -> tuple[float, dict]:
    """Max |fast - reference| over all table cells, and per column."""
    effect_table, output_table = fast
    per_col = {}
    for col in ("effect_max", "effect_mean"):
        per_col[col] = float(np.max(np.abs(effect_table[col].to_numpy() - ref[col])))
    for col in ("prob_l2_max", "prob_l2_mean", "kl_mean", "kl_max"):
        per_col[col] = float(np.max(np.abs(output_table[col].to_numpy() - ref[col])))
    if int(effect_table["n_units"].iloc[0]) != ref["n_units"]:
        per_col["n_units"] = float("inf")
    return max(per_col.values()), per_col


def calibrate(lm, records, plan, batch_size: int) -> float:
    """Seconds of one plain forward pass of one batch (after a tiny warm-up)."""
    recs = records[:batch_size]
    plans = [plan.for_id(r.id) for r in recs]
    with torch.no_grad():
        tiny = lm.tokenize([recs[0].id], [recs[0].sequence[:16]])
        lm(tiny)
        batch = lm.tokenize([r.id for r in recs], [r.sequence for r in recs], masked=[p.masked for p in plans])
        t0 = time.perf_counter()
        lm(batch)
        return time.perf_counter() - t0


def warm_up(lm, batch_size: int) -> None:
    """One tiny fast run and one tiny reference run, so that first-call costs are not timed."""
    records = make_records(2, 32, seed=99)
    plan = make_plan(records, "masked", seed=0)
    run_fast(lm, records, plan, batch_size, 64)
    run_reference(lm, records, plan, batch_size)


def estimates(lm, n_seqs: int, batch_size: int, t_fwd: float) -> tuple[float, float]:
    """Rough (fast, reference) seconds from one forward pass: the reference runs L + 1 full
    passes per batch, the fast run one clean pass plus L(L-1)/2 block calls (~ (L+1)/2 passes)."""
    L, n_batches = lm.n_layers, -(-n_seqs // batch_size)
    return n_batches * t_fwd * (L + 1) / 2 * 1.1, n_batches * t_fwd * (L + 1) * 1.05


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  " + "  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)))


# ----------------------------------------------------------------------------- parts
def headline(args) -> bool:
    arch, n, length = ("35M", 16, 64) if args.quick else ("35M", 64, 256)
    print(f"\n== headline: ESM-2 {arch} architecture, {n} sequences x {length} residues, "
          f"batch size {args.batch_size}, max_rows {args.max_rows}, mode 'future'")
    lm = build(arch)
    records = make_records(n, length)
    plan = make_plan(records, "masked", seed=0)
    warm_up(lm, args.batch_size)
    t_fwd = calibrate(lm, records, plan, args.batch_size)
    est_fast, est_ref = estimates(lm, n, args.batch_size, t_fwd)
    print(f"   one forward pass of a batch: {t_fwd:.2f} s -> estimated fast ~{fmt_s(est_fast)}, "
          f"reference ~{fmt_s(est_ref)} per repeat ({args.repeat} repeat(s))", flush=True)
    fast_walls, fast_cpus, ref_walls, ref_cpus = [], [], [], []
    worst = 0.0
    for _ in range(args.repeat):  # alternate, so that background load hits both alike
        fast, tf = run_fast(lm, records, plan, args.batch_size, args.max_rows)
        print(f"   .. fast run: wall {tf.wall:.1f} s, cpu {tf.cpu:.1f} s", flush=True)
        ref, tr = run_reference(lm, records, plan, args.batch_size)
        print(f"   .. reference run: wall {tr.wall:.1f} s, cpu {tr.cpu:.1f} s", flush=True)
        fast_walls.append(tf.wall)
        fast_cpus.append(tf.cpu)
        ref_walls.append(tr.wall)
        ref_cpus.append(tr.cpu)
        diff, per_col = compare(fast, ref)
        worst = max(worst, diff)
    fw, fc, rw, rc = min(fast_walls), min(fast_cpus), min(ref_walls), min(ref_cpus)
    print(f"   fast       wall {fw:8.2f} s   cpu {fc:8.2f} s   (all repeats, wall: "
          f"{', '.join(f'{x:.1f}' for x in fast_walls)})")
    print(f"   reference  wall {rw:8.2f} s   cpu {rc:8.2f} s   (all repeats, wall: "
          f"{', '.join(f'{x:.1f}' for x in ref_walls)})")
    ratio = fw / rw
    print(f"   ratio fast/reference: wall {ratio:.3f}   cpu {fc / rc:.3f}   (target <= 0.6: "
          f"{'PASS' if ratio <= 0.6 else 'FAIL'})")
    print(f"   max |fast - reference| over all table cells: {worst:.3e}   (target <= {TOL:g}: "
          f"{'PASS' if worst <= TOL else 'FAIL'})")
    print("   per column: " + ", ".join(f"{k} {v:.2e}" for k, v in per_col.items()))
    effect_table, output_table = fast
    print(f"   sanity: {int(effect_table['n_units'].iloc[0])} units, effect_max range "
          f"[{effect_table['effect_max'].min():.3g}, {effect_table['effect_max'].max():.3g}], prob_l2_max range "
          f"[{output_table['prob_l2_max'].min():.3g}, {output_table['prob_l2_max'].max():.3g}]")
    return ratio <= 0.6 and worst <= TOL


def scaling(args) -> None:
    if args.quick:
        n, base, lengths = 8, 64, (32, 64, 128)
    else:
        n, base, lengths = args.scaling_seqs, 256, (128, 256, 512)
    print(f"\n== scaling: fast wall time (reference where its estimate <= {fmt_s(args.reference_budget)}), "
          f"{n} sequences, batch size {args.batch_size}, max_rows {args.max_rows}")
    cases = [(arch, base) for arch in ARCHS] + [("35M", length) for length in lengths if length != base]
    rows, done = [], {}
    models = {}
    for arch, length in cases:
        if arch not in models:
            models.clear()
            gc.collect()
            models[arch] = build(arch)
            warm_up(models[arch], args.batch_size)
        lm = models[arch]
        records = make_records(n, length)
        plan = make_plan(records, "masked", seed=0)
        t_fwd = calibrate(lm, records, plan, args.batch_size)
        est_fast, est_ref = estimates(lm, n, args.batch_size, t_fwd)
        print(f"   {arch:>4} L={lm.n_layers:<2} length {length:<4}: forward {t_fwd:.2f} s/batch -> estimated fast "
              f"~{fmt_s(est_fast)}, reference ~{fmt_s(est_ref)}", flush=True)
        fast, tf = run_fast(lm, records, plan, args.batch_size, args.max_rows)
        tokens = n * (length + 2)
        row = [arch, str(lm.n_layers), str(length), f"{tf.wall:.1f}", f"{tf.cpu:.1f}",
               f"{1e3 * tf.wall / (tokens * lm.n_layers * (lm.n_layers + 1) / 2):.3f}"]
        if est_ref <= args.reference_budget:
            ref, tr = run_reference(lm, records, plan, args.batch_size)
            diff, _ = compare(fast, ref)
            row += [f"{tr.wall:.1f}", f"{tf.wall / tr.wall:.3f}", f"{tf.cpu / tr.cpu:.3f}", f"{diff:.1e}"]
        else:
            row += [f"(~{est_ref:.0f})", "-", "-", "-"]
        rows.append(row)
        done[(arch, length)] = row
        print(f"        fast {tf.wall:.1f} s" + (f", reference {row[6]} s, ratio {row[7]}" if row[7] != "-" else
                                                  ", reference skipped (estimate over budget)"), flush=True)
    print()
    order = [(arch, base) for arch in ARCHS] + [("35M", length) for length in lengths]
    print_table(["arch", "L", "length", "fast s", "fast cpu s", "ms/(tok*blk)", "ref s", "fast/ref",
                 "cpu ratio", "max|diff|"], [done[c] for c in order])
    print("   ms/(tok*blk): fast wall time per token per block call (L(L+1)/2 block calls per token);"
          " '(~N)' = reference not run, estimated N s")


MEMORY_CHILD = "--memory-child"
# Linux carries the parent's peak RSS into a child's ru_maxrss across fork/vfork + exec; a small
# launcher process in between keeps the child's ru_maxrss its own.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def _proc_status_kib(field: str) -> int | None:
    """A memory field of /proc/self/status (e.g. "VmHWM", "VmRSS") in KiB, None if unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _vm_hwm_kib() -> int | None:
    return _proc_status_kib("VmHWM")


def _vm_rss_kib() -> int | None:
    return _proc_status_kib("VmRSS")


def memory_child(arch: str, n: int, length: int, batch_size: int, max_rows: int) -> None:
    """One fresh process: build the model, record the baseline, run the fast M2+M3, report."""
    lm = build(arch)
    records = make_records(n, length)
    plan = make_plan(records, "masked", seed=0)
    gc.collect()
    base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    base_hwm, base_rss = _vm_hwm_kib(), _vm_rss_kib()
    reset = False
    try:  # reset VmHWM to the current RSS, so that the peak below is the run's own
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        pass
    _, t = run_fast(lm, records, plan, batch_size, max_rows)
    print(json.dumps({
        "arch": arch, "n": n, "length": length, "wall": t.wall, "cpu": t.cpu, "start_maxrss": _START_MAXRSS,
        "base_maxrss": base_maxrss, "end_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "base_hwm": base_hwm, "base_rss": base_rss, "end_hwm": _vm_hwm_kib(), "hwm_reset": reset,
    }))


def memory(args) -> None:
    arch = "8M" if args.quick else args.memory_arch
    counts = [int(x) for x in (args.memory_seqs or ("8,64" if args.quick else "32,256")).split(",")]
    length = args.memory_length if args.memory_length else (32 if args.quick else 256)
    print(f"\n== memory: peak resident memory of the fast M2+M3 run, ESM-2 {arch} architecture, length {length}, "
          f"sequences {counts}, batch size {args.batch_size}, max_rows {args.max_rows}; one fresh process each")
    if args.malloc_mmap_threshold:
        print(f"   children run with MALLOC_MMAP_THRESHOLD_={args.malloc_mmap_threshold} (glibc's dynamic threshold off)")
    if not args.quick and length != 256:
        print(f"   NOTE: length {length}, not 256, to fit the time available on this machine "
              f"({os.cpu_count()} cores); the point is whether memory grows with the number of sequences.")
    lm = build(arch)
    records = make_records(args.batch_size, length)
    t_fwd = calibrate(lm, records, make_plan(records, "masked", seed=0), args.batch_size)
    total = sum(estimates(lm, n, args.batch_size, t_fwd)[0] for n in counts)
    print(f"   forward {t_fwd:.2f} s/batch -> estimated "
          + ", ".join(f"{n} seqs ~{fmt_s(estimates(lm, n, args.batch_size, t_fwd)[0])}" for n in counts)
          + f" (total ~{fmt_s(total)}, plus model build per process)", flush=True)
    del lm
    gc.collect()
    results = []
    for n in counts:
        cmd = [sys.executable, "-c", LAUNCHER, sys.executable, str(Path(__file__).resolve()), MEMORY_CHILD,
               arch, str(n), str(length), str(args.batch_size), str(args.max_rows)]
        t0 = time.perf_counter()
        env = dict(os.environ)
        if args.malloc_mmap_threshold:
            env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            print(out.stderr[-3000:])
            raise SystemExit(f"memory child for {n} sequences failed (exit {out.returncode})")
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["process_wall"] = time.perf_counter() - t0
        results.append(res)
        print(f"   {n} sequences: run {res['wall']:.1f} s (process {res['process_wall']:.1f} s); ru_maxrss at "
              f"process start {res['start_maxrss'] / 1024:.0f} MiB", flush=True)
    mib = 1 / 1024
    rows = []
    for r in results:
        rows.append([str(r["n"]), f"{r['wall']:.1f}", f"{r['base_maxrss'] * mib:.0f}", f"{r['end_maxrss'] * mib:.0f}",
                     f"{(r['end_maxrss'] - r['base_maxrss']) * mib:.0f}",
                     f"{r['base_rss'] * mib:.0f}" if r["base_rss"] else "?",
                     f"{r['end_hwm'] * mib:.0f}" if r["end_hwm"] else "?",
                     f"{(r['end_hwm'] - r['base_rss']) * mib:.0f}" if r["end_hwm"] and r["hwm_reset"] else "?"])
    print()
    print_table(["seqs", "run s", "maxrss base MiB", "maxrss end MiB", "maxrss growth", "rss base MiB",
                 "VmHWM end MiB", "VmHWM growth"], rows)
    lo, hi = results[0], results[-1]
    end_ratio = hi["end_maxrss"] / lo["end_maxrss"]
    g_lo, g_hi = lo["end_maxrss"] - lo["base_maxrss"], hi["end_maxrss"] - hi["base_maxrss"]
    print(f"   ratio {hi['n']} / {lo['n']} sequences: peak (ru_maxrss at end) {end_ratio:.3f}; "
          f"growth over baseline {g_hi / max(g_lo, 1):.3f}   (target <= 2: "
          f"{'PASS' if g_hi / max(g_lo, 1) <= 2 and end_ratio <= 2 else 'FAIL'})")
    if lo["hwm_reset"] and hi["hwm_reset"]:
        h_lo, h_hi = lo["end_hwm"] - lo["base_rss"], hi["end_hwm"] - hi["base_rss"]
        print(f"   VmHWM (reset after model creation) growth ratio {h_hi / max(h_lo, 1):.3f}")
    print("   maxrss = resource.getrusage(RUSAGE_SELF).ru_maxrss; base = after model creation (and records/plan), "
          "end = after the run; growth = end - base.\n"
          "   VmHWM is /proc/self/status's peak RSS, reset (clear_refs 5) after the baseline, so "
          "'VmHWM growth' = run peak - RSS at baseline.")


# ----------------------------------------------------------------------------- main
def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == MEMORY_CHILD:
        arch, n, length, batch_size, max_rows = argv[1], *map(int, argv[2:6])
        memory_child(arch, n, length, batch_size, max_rows)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny workloads: check that every part runs")
    parser.add_argument("--only", choices=("headline", "scaling", "memory"), action="append",
                        help="run only this part (repeatable); default: all three")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-rows", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="headline repeats (min time is reported)")
    parser.add_argument("--scaling-seqs", type=int, default=16)
    parser.add_argument("--reference-budget", type=float, default=240.0,
                        help="scaling: run the reference only where its estimate is at most this many seconds")
    parser.add_argument("--memory-seqs", default=None,
                        help="comma-separated sequence counts (default 32,256; 8,64 with --quick)")
    parser.add_argument("--memory-length", type=int, default=0, help="memory: sequence length (default 256)")
    parser.add_argument("--memory-arch", default="150M", choices=tuple(ARCHS))
    parser.add_argument("--malloc-mmap-threshold", type=int, default=0,
                        help="memory: set MALLOC_MMAP_THRESHOLD_ (bytes) in the child processes; fixing glibc's "
                             "dynamic mmap threshold removes allocator fragmentation from the peak")
    args = parser.parse_args(argv)
    parts = args.only or ["headline", "scaling", "memory"]
    print("layer-skipping benchmark (SPEC M2+M3)" + (" -- QUICK mode, tiny workloads" if args.quick else ""))
    print(machine())
    print(f"parts: {', '.join(parts)}", flush=True)
    t0 = time.perf_counter()
    ok = True
    for part in parts:
        t = time.perf_counter()
        if part == "headline":
            ok = headline(args) and ok
        elif part == "scaling":
            scaling(args)
        else:
            memory(args)
        print(f"   [{part}: {fmt_s(time.perf_counter() - t)}; load average now "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}]", flush=True)
    print(f"\ntotal {fmt_s(time.perf_counter() - t0)}")


if __name__ == "__main__":
    main()
