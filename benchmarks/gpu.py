#!/usr/bin/env python
"""GPU benchmark: the measurements on ESM-2 650M and 3B, in bfloat16 against float32.

Run by hand from the repository root on a machine with a CUDA GPU (it is not a test):

    .venv/bin/python benchmarks/gpu.py                        # 650M and 3B: about 3-5 min on one H200
    .venv/bin/python benchmarks/gpu.py --quick                # 650M, 16 sequences: about 1 min
    .venv/bin/python benchmarks/gpu.py --models 3B --out gpu.csv
    .venv/bin/python benchmarks/gpu.py --cpu-smoke            # the same code on a tiny ESM-2, on the CPU

Without CUDA it refuses in one sentence (exit status 2), unless `--cpu-smoke` is given: that
runs every step below on a 3-block, width-64 ESM-2 on the CPU in seconds (tests/test_gpu_path.py
runs it, so the script's logic is checked where there is no GPU).

What it does, per model:

1. builds a randomly initialised `EsmForMaskedLM` with the published config
   (`plmdepth.models.esm2.esm2_config`: 650M = 33 blocks, width 1280, 20 heads, MLP 5120;
   3B = 36 blocks, width 2560, 40 heads, MLP 10240; vocabulary 33, rotary positions, token
   dropout, final layer norm, 1026 positions) directly on the GPU in float32
   (`random_esm2`: never materialised on the CPU), and a bfloat16 copy of the same weights
   (built in bfloat16, the float32 weights copied in, so its rotary table stays float32 as
   `from_pretrained(dtype=torch.bfloat16)` leaves it);
2. runs, in float32 and then in bfloat16, the project's own measurement code through the
   `ProteinLM` wrapper on seeded random sequences (64 of 256-512 residues; 15% masked, plan
   seeded): `forward` (the model's own forward pass: the reference for top-1 agreement of
   the final predictions), `logit_lens` (M4), `layer_skipping` (M2 + M3),
   `contributions` (M1) from `plmdepth.probes.measurements.MEASUREMENTS`, and
   `variant_effects` (M5's `layer_scores`, masked marginals of 96 single mutants at 48
   positions of a 400-residue wild type). Bootstrap intervals are off (`n_bootstrap=0`):
   they are CPU work that does not depend on the device;
3. for every row: a warm-up on a few sequences first (4 sequences: about one batch; it also
   counts the times the host waited for the GPU, `torch.cuda.set_sync_debug_mode`), then the
   timed run between `torch.cuda.synchronize()` calls; peak GPU memory (`torch.cuda.max_memory_allocated`,
   reset per row); the forward FLOPs actually run, counted by hooks on every block call and
   every readout (2 x parameters x tokens, plus 4 x tokens x length x width for attention;
   padded tokens count, they are computed), and the achieved TFLOP/s;
4. for every bfloat16 row, its agreement with the float32 row: on the measurement's
   per-layer values (`kl` of the logit lens, `effect_mean` of M2, `ratio_mean` of M1, the
   per-layer variant scores, the log-probabilities of the forward pass) the maximum absolute
   difference, Pearson and Spearman correlations, and for `forward` the share of masked
   positions whose top-1 prediction is the same. Other columns are printed below the table.

Before each row it prints an estimate (the row's FLOPs over the throughput measured on the
`forward` row); a row whose estimate does not fit in what is left of `--budget-s` (shared
out between the models) is skipped, and the table says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

BUDGET_S = 420.0  # whole run; leaves a minute of an 8-minute slot for start-up and building
SMOKE_LAYERS, SMOKE_WIDTH = 3, 64


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, help="comma-separated ESM-2 sizes (default 650M,3B; with --quick 650M)")
    p.add_argument("--quick", action="store_true", help="16 sequences of 256-384 residues and one model")
    p.add_argument("--cpu-smoke", action="store_true", help="a tiny ESM-2 on the CPU: checks the logic, times nothing")
    p.add_argument("--n-sequences", type=int, default=None, help="sequences per row (default 64; --quick 16)")
    p.add_argument("--lengths", default=None, help="min,max residues (default 256,512; --quick 256,384)")
    p.add_argument("--budget-s", type=float, default=BUDGET_S,
                   help="seconds for all rows together (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the table as CSV here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(f"benchmarks/gpu.py needs a CUDA GPU and torch {torch.__version__} sees none here; "
              "run it on a GPU machine, or pass --cpu-smoke to check its logic on the CPU.", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "lib"))
    from plmdepth.models.esm2 import ESM2_SIZES

    sizes = (args.models or ("650M" if args.quick else "650M,3B")).split(",")
    unknown = [s for s in sizes if s not in ESM2_SIZES]
    if unknown:
        print(f"--models: unknown ESM-2 size {', '.join(unknown)}; choose from {', '.join(ESM2_SIZES)}.",
              file=sys.stderr)
        return 2
    bench = Bench(args, sizes)
    bench.environment()
    bench.run()
    bench.report()
    return 0


# ----------------------------------------------------------------------------- helpers
def si(value: float, unit: str) -> str:
    """1.5e14, "FLOP" -> "150 TFLOP" (three significant digits, SI prefix)."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def spearman_pearson(a, b) -> tuple[float, float]:
    import numpy as np

    from plmdepth.probes.variant_effects import spearman

    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan"), float("nan")
    return spearman(a, b), float(np.corrcoef(a, b)[0, 1])


class FlopCounter:
    """Forward FLOPs of every block call and readout of a `ProteinLM`, counted by hooks.

    A block call on [B, T, d] costs 2 * (block parameters) * B * T for its matrices plus
    4 * B * T^2 * d for attention (scores and weighted sum); a readout of N tokens costs
    2 * (head parameters) * N. Embeddings and norms outside blocks are not counted.
    """

    def __init__(self, lm):
        from plmdepth.model import n_params

        self.block_params, self.head_params = n_params(lm.layers[0]), n_params(lm.head)
        self.flops = 0.0
        self.handles = [layer.register_forward_hook(self._block, with_kwargs=True) for layer in lm.layers]
        self.handles.append(lm.head.register_forward_hook(self._head))

    def _block(self, module, args, kwargs, output):
        h = args[0] if args else kwargs["hidden_states"]
        B, T, d = h.shape
        self.flops += 2.0 * self.block_params * B * T + 4.0 * B * T * T * d

    def _head(self, module, args, output):
        h = args[0]
        self.flops += 2.0 * self.head_params * (h.numel() // h.shape[-1])

    def remove(self):
        for handle in self.handles:
            handle.remove()


# ----------------------------------------------------------------------------- the benchmark
class Bench:
    MEASUREMENTS = ("forward", "logit_lens", "layer_skipping", "contributions", "variant_effects")
    PRIMARY = {"forward": "log_probs", "logit_lens": "kl", "layer_skipping": "effect_mean",
               "contributions": "ratio_mean", "variant_effects": "scores"}

    def __init__(self, args, sizes):
        self.args, self.sizes = args, sizes
        self.smoke = args.cpu_smoke
        self.device = torch.device("cpu" if self.smoke else "cuda")
        n_default, lengths_default = ((6, "20,40") if self.smoke else
                                      (16, "256,384") if args.quick else (64, "256,512"))
        self.n_sequences = args.n_sequences or n_default
        self.lengths = tuple(int(x) for x in (args.lengths or lengths_default).split(","))
        self.rows, self.details = [], []
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ set-up
    def environment(self):
        import platform

        import transformers

        print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
        if self.smoke:
            print(f"device: CPU ({torch.get_num_threads()} threads) -- --cpu-smoke: a tiny ESM-2 "
                  f"({SMOKE_LAYERS} blocks, width {SMOKE_WIDTH}); the numbers check the logic, not a machine")
        else:
            props = torch.cuda.get_device_properties(0)
            print(f"device: {torch.cuda.get_device_name(0)}, {props.total_memory / 2**30:.0f} GiB, "
                  f"compute capability {props.major}.{props.minor}, CUDA {torch.version.cuda}, "
                  f"{torch.cuda.device_count()} visible; float32 matmul precision "
                  f"'{torch.get_float32_matmul_precision()}' ('highest': no TF32)")
        print(f"workload: {self.n_sequences} random sequences of {self.lengths[0]}-{self.lengths[1]} residues "
              f"(seed {self.args.seed}), 15% masked; models: {', '.join(self.sizes) if not self.smoke else 'tiny'}; "
              f"budget {self.args.budget_s:.0f} s")
        sys.stdout.flush()

    def config(self, size: str):
        from plmdepth.models.esm2 import esm2_config

        if self.smoke:
            return esm2_config("8M", num_hidden_layers=SMOKE_LAYERS, hidden_size=SMOKE_WIDTH, num_attention_heads=4,
                               intermediate_size=4 * SMOKE_WIDTH)
        return esm2_config(size)

    def data(self, seed: int):
        import numpy as np
        import pandas as pd

        from plmdepth.fasta import Record
        from plmdepth.plan import make_plan
        from plmdepth.probes.variant_effects import Assay

        letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
        rng = np.random.default_rng(seed)
        low, high = self.lengths
        records = [Record(f"r{i}", "", "".join(rng.choice(letters, size=int(rng.integers(low, high + 1)))))
                   for i in range(self.n_sequences)]
        plan = make_plan(records, "masked", seed=seed)
        wt_length, n_positions = (30, 4) if self.smoke else (400, 48)
        wild_type = "".join(rng.choice(letters, size=wt_length))
        positions = sorted(rng.choice(wt_length, size=n_positions, replace=False).tolist())
        mutations = []
        for p in positions:
            for m in rng.choice([a for a in letters if a != wild_type[p]], size=2, replace=False):
                mutations.append([(int(p), wild_type[p], str(m))])
        variants = pd.DataFrame({
            "mutant": [f"{w}{p + 1}{m}" for [(p, w, m)] in mutations],
            "mutated_sequence": [wild_type[:p] + m + wild_type[p + 1:] for [(p, _, m)] in mutations],
            "DMS_score": rng.normal(size=len(mutations))})
        assay = Assay("random_assay", wild_type, variants, mutations)
        return records, plan, assay

    # ------------------------------------------------------------------ running
    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def run(self):
        records, plan, assay = self.data(self.args.seed)
        warm_records = records[:4]  # random lengths: a spread of shapes for the warm-up
        n_models = len(self.sizes) if not self.smoke else 1
        for index, size in enumerate(self.sizes if not self.smoke else ["tiny"]):
            budget_end = self.started + self.args.budget_s * (index + 1) / n_models
            self.run_model(size, records, plan, assay, warm_records, budget_end)

    def build(self, size: str, dtype: torch.dtype, weights_from=None):
        from plmdepth.models.esm2 import random_esm2

        name = f"esm2-{size}-random"
        lm = random_esm2(self.config(size), seed=self.args.seed, device=self.device, dtype=dtype, name=name,
                         checksum="not computed (benchmark)")
        if weights_from is not None:  # the same weights, rounded to `dtype`; float32 buffers stay float32
            lm.network.load_state_dict(weights_from.network.state_dict())
        return lm

    def run_model(self, size, records, plan, assay, warm_records, budget_end):
        self.sync()
        t0 = time.perf_counter()
        lm32 = self.build(size, torch.float32)
        self.sync()
        from plmdepth.model import n_params

        params = n_params(lm32.network)
        print(f"\n== ESM-2 {size}: {lm32.n_layers} blocks, width {lm32.info.d_model}, {si(params, '')} parameters; "
              f"attention '{lm32.network.config._attn_implementation}'; built on {self.device.type} "
              f"in {time.perf_counter() - t0:.1f} s")
        reference = {}
        throughput = None
        for dtype in (torch.float32, torch.bfloat16):
            if dtype == torch.float32:
                lm = lm32
            else:
                t0 = time.perf_counter()
                lm = self.build(size, dtype, weights_from=lm32)
                del lm32
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.sync()
                print(f"   bfloat16 copy built in {time.perf_counter() - t0:.1f} s")
                throughput = None
            dname = str(dtype).removeprefix("torch.")
            for name in self.MEASUREMENTS:
                estimate_flops = self.estimate_flops(name, lm, records, assay)
                rate = throughput or (50e12 if dtype == torch.float32 else 300e12) * (1e-3 if self.smoke else 1)
                estimate = estimate_flops / rate
                left = budget_end - time.perf_counter()
                label = f"   [{size} {dname} {name}]"
                print(f"{label} estimate {estimate:.1f} s ({si(estimate_flops, 'FLOP')} at {si(rate, 'FLOP/s')} "
                      f"{'measured on the forward row' if throughput else 'assumed'}); {left:.0f} s of budget left",
                      flush=True)
                if not self.smoke and estimate > left:
                    print(f"{label} skipped: the estimate does not fit in the time left")
                    self.rows.append(dict(model=size, dtype=dname, measurement=name, note="skipped (budget)"))
                    continue
                row, values = self.measure(name, lm, records, plan, assay, warm_records)
                row.update(model=size, dtype=dname, measurement=name)
                if name == "forward" and row["wall_s"] > 0:
                    throughput = row["flops"] / row["wall_s"]
                if dtype == torch.float32:
                    reference[name] = values
                    row["compared"] = "reference"
                else:
                    row.update(self.agreement(size, name, reference.get(name), values))
                peak = f", peak {row['peak_gib']:.2f} GiB" if self.device.type == "cuda" else ""
                print(f"{label} {row['wall_s']:.2f} s, {si(row['flops'], 'FLOP')}, "
                      f"{si(row['flops'] / row['wall_s'], 'FLOP/s')}{peak}", flush=True)
                self.rows.append(row)
        del lm
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def estimate_flops(self, name, lm, records, assay) -> float:
        """Forward FLOPs of a row from the architecture: 2 * params * tokens + 4 * L * n^2 * d per sequence,
        times the passes the measurement makes ((L + 1) / 2 forward passes' worth for layer skipping:
        the clean pass, then for each skipped block s the blocks after it)."""
        from plmdepth.model import n_params

        params, L, d = n_params(lm.network), lm.n_layers, lm.info.d_model

        def forward(n):  # one sequence of n residues (+ <cls>, <eos>)
            return 2.0 * params * (n + 2) + 4.0 * L * (n + 2) ** 2 * d

        if name == "variant_effects":
            return len({p for muts in assay.mutations for p, _, _ in muts}) * forward(len(assay.wild_type))
        total = sum(forward(len(r.sequence)) for r in records)
        return total * (L + 1) / 2 if name == "layer_skipping" else total

    def measure(self, name, lm, records, plan, assay, warm_records):
        """Warm up on a few sequences, then time the full row; (row, values to compare)."""
        run = getattr(self, f"run_{name}")
        with torch.no_grad():
            syncs = self.count_syncs(lambda: run(lm, warm_records, plan, self.small_assay(assay)))
            self.sync()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            counter = FlopCounter(lm)
            try:
                self.sync()
                t0 = time.perf_counter()
                values = run(lm, records, plan, assay)
                self.sync()
                wall = time.perf_counter() - t0
            finally:
                counter.remove()
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.device.type == "cuda" else float("nan")
        return dict(wall_s=wall, flops=counter.flops, tflops=counter.flops / wall / 1e12 if wall else float("nan"),
                    peak_gib=peak, warmup_syncs=syncs), values

    def count_syncs(self, work) -> int | None:
        """Run `work` (the warm-up: a batch or two) and count the times it made the host wait for
        the GPU (`torch.cuda.set_sync_debug_mode`): per-layer reads from the device show up here."""
        if self.device.type != "cuda":
            work()
            return None
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                work()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message).lower() for w in caught)

    @staticmethod
    def small_assay(assay):
        from plmdepth.probes.variant_effects import Assay

        keep = list(range(min(2, len(assay.mutations))))
        return Assay(assay.id, assay.wild_type, assay.variants.iloc[keep].reset_index(drop=True),
                     [assay.mutations[i] for i in keep])

    # ------------------------------------------------------------------ the rows
    @staticmethod
    def run_forward(lm, records, plan, assay):
        """The model's own forward pass, 16 sequences a batch: log-probabilities at the masked positions."""
        from plmdepth.probes.streaming import length_sorted_batches

        out = []
        for rows in length_sorted_batches(records, 16):
            recs = [records[i] for i in rows]
            batch = lm.tokenize([r.id for r in recs], [r.sequence for r in recs],
                                masked=[plan.for_id(r.id).masked for r in recs])
            masked = batch.input_ids == lm.alphabet.id(lm.alphabet.mask)
            out.append(torch.log_softmax(lm(batch)[masked].float(), dim=-1))
        return {"log_probs": torch.cat(out).cpu().numpy()}

    @staticmethod
    def run_logit_lens(lm, records, plan, assay):
        from plmdepth.probes.measurements import MEASUREMENTS

        m = MEASUREMENTS["logit_lens"]
        table, *_ = m.compute(lm, records, plan, m.config(n_bootstrap=0), progress=False)  # then its per-sequence sums
        return {k: table[k].to_numpy() for k in ("kl", "top1_agreement", "top1_accuracy")}

    @staticmethod
    def run_layer_skipping(lm, records, plan, assay):
        from plmdepth.probes.measurements import MEASUREMENTS

        m = MEASUREMENTS["layer_skipping"]
        effect, output, *_ = m.compute(lm, records, plan, m.config(), progress=False)
        return {"effect_mean": effect["effect_mean"].to_numpy(), "effect_max": effect["effect_max"].to_numpy(),
                "prob_l2_mean": output["prob_l2_mean"].to_numpy(), "kl_mean": output["kl_mean"].to_numpy()}

    @staticmethod
    def run_contributions(lm, records, plan, assay):
        from plmdepth.probes.measurements import MEASUREMENTS

        m = MEASUREMENTS["contributions"]
        table, *_ = m.compute(lm, records, plan, m.config(), progress=False)
        return {"ratio_mean": table["ratio_mean"].to_numpy(), "ratio_max": table["ratio_max"].to_numpy(),
                "cosine_mean": table["cosine_mean"].to_numpy()}

    @staticmethod
    def run_variant_effects(lm, records, plan, assay):
        from plmdepth.probes.variant_effects import VariantEffectsConfig, layer_scores

        return {"scores": layer_scores(lm, assay, VariantEffectsConfig(n_bootstrap=0))}

    # ------------------------------------------------------------------ agreement
    def agreement(self, size, name, reference, values) -> dict:
        import numpy as np

        if reference is None:
            return {"compared": "no float32 row"}
        found = {}
        for key, value in values.items():
            ref = reference[key]
            diff = float(np.nanmax(np.abs(np.asarray(value, float) - np.asarray(ref, float)))) if np.size(ref) else 0.0
            rho, r = spearman_pearson(ref, value)
            found[key] = dict(max_abs_diff=diff, spearman=rho, pearson=r)
            if key != self.PRIMARY[name]:
                self.details.append(f"{size} {name} {key}: max |bf16 - fp32| {diff:.3g}, "
                                    f"Spearman {rho:.4f}, Pearson {r:.4f} ({np.size(ref)} values)")
        row = {"compared": self.PRIMARY[name], **found[self.PRIMARY[name]]}
        if name == "forward":
            row["top1_agreement"] = float((values["log_probs"].argmax(-1) == reference["log_probs"].argmax(-1)).mean())
        return row

    # ------------------------------------------------------------------ output
    COLUMNS = [("model", "model", "{}"), ("dtype", "dtype", "{}"), ("measurement", "measurement", "{}"),
               ("wall_s", "wall s", "{:.2f}"), ("peak_gib", "peak GiB", "{:.2f}"), ("tflops", "TFLOP/s", "{:.3g}"),
               ("warmup_syncs", "syncs (warm-up)", "{:.0f}"),
               ("compared", "compared", "{}"), ("max_abs_diff", "max|bf16-fp32|", "{:.3g}"),
               ("spearman", "Spearman", "{:.4f}"), ("pearson", "Pearson", "{:.4f}"),
               ("top1_agreement", "top-1 agree", "{:.4f}")]

    def report(self):
        import pandas as pd

        print(f"\nResults ({time.perf_counter() - self.started:.0f} s in all); wall times after a warm-up, "
              "TFLOP/s from the FLOPs actually run:")
        cells = [[title for _, title, _ in self.COLUMNS]]
        for row in self.rows:
            cells.append([("-" if row.get(key) is None or (isinstance(row.get(key), float) and row[key] != row[key])
                           else fmt.format(row[key])) for key, _, fmt in self.COLUMNS])
            if row.get("note"):
                cells[-1][3] = row["note"]
        widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
        for r in cells:
            print("  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if self.details:
            print("\nOther columns, bfloat16 against float32:")
            for line in self.details:
                print("  " + line)
        if self.args.out is not None:
            self.args.out.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(self.rows).to_csv(self.args.out, index=False)
            print(f"\nwrote {self.args.out}")


if __name__ == "__main__":
    sys.exit(main())
