#!/usr/bin/env python
"""Per-layer variant-effect scoring benchmark (SPEC M5): the fast path against a plain reference.

Run by hand from the repository root (it is not a test):

    .venv/bin/python benchmarks/variant_effects.py                 # 2,000 singles, length 300, ESM-2 35M arch
    .venv/bin/python benchmarks/variant_effects.py --quick         # small workload: checks that it all runs
    .venv/bin/python benchmarks/variant_effects.py --design random # 2,000 of the 5,700 singles, ~all positions

What it does:

1. prints the machine;
2. times `layer_scores(..., scoring="masked_marginal")` (one forward pass per distinct mutated
   position, `batch_size` masked copies of the wild type per call, every layer read from the
   same pass) and `layer_scores(..., scoring="wt_marginal")` (one unmasked pass in total),
   counting the sequences that go through the model's own forward;
3. times a plain reference that runs, for every variant, its own masked copy of the wild
   type through the model's own forward with `output_hidden_states=True` (nothing shared
   between variants) and reads every layer with `lm.readout`, on a subset of the variants;
   its time is extrapolated linearly to all variants (labelled as such). On that subset the
   fast scores are checked against the reference (max abs difference, tolerance 1e-5);
4. prints a table: method, sequence-passes per variant, wall time, speed-up vs the reference.

The model is a randomly initialised ESM-2 35M architecture (12 layers, hidden 480, 20 heads,
rotary, token dropout), so nothing is downloaded. The wild type is a seeded random string of
the 20 canonical amino acids; DMS scores are seeded random normals (they are not used for timing).
See benchmarks/README_variant_effects.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from plmdepth.models.architectures import wrap_esm  # noqa: E402
from plmdepth.probes.variant_effects import Assay, VariantEffectsConfig, layer_scores, parse_mutant  # noqa: E402
from common import Timer, machine  # benchmarks/common.py (this folder is on sys.path)

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
TOL = 1e-5


# ----------------------------------------------------------------------------- set-up
def build_35m(seed: int = 0):
    """Randomly initialised ESM-2 35M architecture (published config), wrapped, eval mode."""
    from transformers import EsmConfig, EsmForMaskedLM

    config = EsmConfig(vocab_size=33, hidden_size=480, num_hidden_layers=12, num_attention_heads=20,
                       intermediate_size=1920, max_position_embeddings=1026, position_embedding_type="rotary",
                       token_dropout=True, mask_token_id=32, pad_token_id=1, emb_layer_norm_before=False,
                       layer_norm_eps=1e-5)
    torch.manual_seed(seed)
    hf_model = EsmForMaskedLM(config).eval()
    return wrap_esm(hf_model, "esm2_t12_35M-random", "random init (published config)")


def make_assay(length: int, n_variants: int, design: str, seed: int = 0) -> Assay:
    """A random wild type and `n_variants` distinct single mutants with random DMS scores.

    design "grouped": all 19 substitutions at ceil(n/19) seeded random positions (the last
    position partly), i.e. few distinct positions; "random": a seeded random choice of n of
    the 19 * length possible singles (nearly every position is mutated).
    """
    rng = np.random.default_rng(seed)
    wt = "".join(rng.choice(list(AMINO_ACIDS), size=length))
    if n_variants > 19 * length:
        raise SystemExit(f"only {19 * length} distinct single mutants exist for length {length}")
    if design == "grouped":
        n_pos = -(-n_variants // 19)
        positions = np.sort(rng.choice(length, n_pos, replace=False))
        candidates = [(int(p), a) for p in positions for a in AMINO_ACIDS if a != wt[p]]
        candidates = candidates[:n_variants]  # all 19 at the first positions, the rest at the last one
    else:
        allsingles = [(p, a) for p in range(length) for a in AMINO_ACIDS if a != wt[p]]
        keep = np.sort(rng.choice(len(allsingles), n_variants, replace=False))
        candidates = [allsingles[i] for i in keep]
    rows = []
    for p, a in candidates:
        seq = wt[:p] + a + wt[p + 1:]
        rows.append({"mutant": f"{wt[p]}{p + 1}{a}", "mutated_sequence": seq, "DMS_score": float(rng.normal())})
    frame = pd.DataFrame(rows)
    mutations = [parse_mutant(m, wt, "bench") for m in frame["mutant"]]
    return Assay("bench", wt, frame, mutations)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min ({seconds:.0f} s)"


# ----------------------------------------------------------------------------- counting / timing
class PassCounter:
    """Counts calls of the model's own forward (`lm.network.forward`) and the sequences in them,
    and calls of `lm.embed` and the sequences that go through it. Installed as instance attributes
    (nn.Module.__call__ looks `forward` up on the instance), removed by `close()`."""

    def __init__(self, lm):
        self.lm = lm
        self.forward_calls = self.forward_seqs = self.embed_calls = self.embed_seqs = 0
        original_forward, original_embed = lm.network.forward, lm.embed

        def forward(*args, **kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            self.forward_calls += 1
            self.forward_seqs += int(ids.shape[0])
            return original_forward(*args, **kwargs)

        def embed(batch):
            self.embed_calls += 1
            self.embed_seqs += int(batch.input_ids.shape[0])
            return original_embed(batch)

        lm.network.forward = forward
        lm.embed = embed

    def reset(self):
        self.forward_calls = self.forward_seqs = self.embed_calls = self.embed_seqs = 0

    def close(self):
        del self.lm.network.forward
        del self.lm.embed


# ----------------------------------------------------------------------------- reference
@torch.no_grad()
def reference_masked_marginal(lm, assay: Assay, variants: list[int], batch_size: int) -> np.ndarray:
    """Plain reference: one masked copy of the wild type per variant (per mutation), nothing shared.

    Each copy goes through the model's own forward with output_hidden_states=True. In
    transformers 5 `hidden_states` has L + 1 entries and the last one is taken after the final
    norm (`emb_layer_norm_after`), so layers 0..L-1 are read with `lm.readout(hidden_states[l])`
    and layer L from the model's own logits (lm.readout would apply the final norm twice).
    Only the masked token is read out (what the score needs). Copies are batched `batch_size`
    at a time like the fast path; batching distinct variants shares no computation.
    """
    wt, ids, n_pre = assay.wild_type, lm.alphabet.index, len(lm.alphabet.prefix)
    jobs = [(v, p, w, m) for v in variants for p, w, m in assay.mutations[v]]
    scores = np.zeros((lm.n_layers + 1, len(variants)))
    column = {v: i for i, v in enumerate(variants)}
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        batch = lm.tokenize([f"v{v}" for v, *_ in chunk], [wt] * len(chunk), masked=[[p] for _, p, _, _ in chunk])
        out = lm.network(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                          output_hidden_states=True, **lm.forward_kwargs)
        rows = torch.arange(len(chunk))
        tok = torch.tensor([n_pre + p for _, p, _, _ in chunk])
        per_layer = [lm.readout(h[rows, tok]) for h in out.hidden_states[:-1]] + [out.logits[rows, tok]]
        for layer, z in enumerate(per_layer):
            lp = torch.log_softmax(z.double(), -1)
            for b, (v, p, w, m) in enumerate(chunk):
                scores[layer, column[v]] += float(lp[b, ids[m]] - lp[b, ids[w]])
    return scores


@torch.no_grad()
def reference_wt_marginal(lm, assay: Assay) -> np.ndarray:
    """One unmasked forward of the wild type, every layer read at every mutated position."""
    wt, ids, n_pre = assay.wild_type, lm.alphabet.index, len(lm.alphabet.prefix)
    batch = lm.tokenize(["wt"], [wt])
    out = lm.network(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                      output_hidden_states=True, **lm.forward_kwargs)
    per_layer = [lm.readout(h[0]) for h in out.hidden_states[:-1]] + [out.logits[0]]
    scores = np.zeros((lm.n_layers + 1, len(assay.mutations)))
    for layer, z in enumerate(per_layer):
        lp = torch.log_softmax(z.double(), -1)
        for v, muts in enumerate(assay.mutations):
            scores[layer, v] = sum(float(lp[n_pre + p, ids[m]] - lp[n_pre + p, ids[w]]) for p, w, m in muts)
    return scores


@torch.no_grad()
def last_hidden_state_check(lm, assay: Assay) -> float:
    """max |lm.readout(hidden_states[-1]) - logits| at the residues: the double final norm."""
    batch = lm.tokenize(["wt"], [assay.wild_type], masked=[[0]])
    out = lm.network(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                      output_hidden_states=True, **lm.forward_kwargs)
    return float((lm.readout(out.hidden_states[-1]) - out.logits).abs().max())


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=int, default=300, help="wild-type length (residues)")
    ap.add_argument("--n-variants", type=int, default=2000, help="distinct single mutants")
    ap.add_argument("--design", choices=("grouped", "random"), default="grouped",
                    help="grouped: all 19 substitutions at ~n/19 positions; random: n of the 19*length singles")
    ap.add_argument("--batch-size", type=int, default=16, help="masked copies per forward call (both paths)")
    ap.add_argument("--reference-subset", type=int, default=100, help="variants the reference is run on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    ap.add_argument("--quick", action="store_true", help="length 120, 200 variants, subset 20")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.length, args.n_variants, args.reference_subset = 120, 200, 20

    print("== machine")
    print(machine())
    print()

    lm = build_35m(args.seed)
    assay = make_assay(args.length, args.n_variants, args.design, args.seed)
    n = len(assay.mutations)
    positions = sorted({p for muts in assay.mutations for p, _, _ in muts})
    print("== workload")
    print(f"model         {lm.info.name}: {lm.n_layers} layers, d_model {lm.info.d_model}, "
          f"{lm.info.n_params / 1e6:.1f}M parameters, random init (seed {args.seed})")
    print(f"assay         wild type of {len(assay.wild_type)} residues; {n} distinct single mutants "
          f"(design '{args.design}') at {len(positions)} distinct positions")
    print(f"config        VariantEffectsConfig(scoring=..., batch_size={args.batch_size}), vocab 'full'")
    print()

    counter = PassCounter(lm)
    # warm-up (one small call, not timed)
    with torch.no_grad():
        lm.forward(lm.tokenize(["w"], [assay.wild_type]))

    # ---- fast path: masked_marginal
    counter.reset()
    with Timer() as t_mm:
        fast = layer_scores(lm, assay, VariantEffectsConfig(scoring="masked_marginal", batch_size=args.batch_size))
    mm_counts = (counter.forward_calls, counter.forward_seqs, counter.embed_calls, counter.embed_seqs)
    # ---- wt_marginal
    counter.reset()
    with Timer() as t_wm:
        fast_wt = layer_scores(lm, assay, VariantEffectsConfig(scoring="wt_marginal", batch_size=args.batch_size))
    wm_counts = (counter.forward_calls, counter.forward_seqs, counter.embed_calls, counter.embed_seqs)

    # ---- reference on a subset
    rng = np.random.default_rng(args.seed + 1)
    k = min(args.reference_subset, n)
    subset = sorted(int(i) for i in rng.choice(n, k, replace=False))
    counter.reset()
    with Timer() as t_ref:
        ref = reference_masked_marginal(lm, assay, subset, args.batch_size)
    ref_counts = (counter.forward_calls, counter.forward_seqs)
    counter.reset()
    ref_wt = reference_wt_marginal(lm, assay)
    double_norm = last_hidden_state_check(lm, assay)
    counter.close()

    print("== forward passes (counted on lm.network.forward and lm.embed)")
    print(f"masked_marginal  hf forward calls {mm_counts[0]}, sequences {mm_counts[1]}; embed calls {mm_counts[2]}, "
          f"sequences {mm_counts[3]}; expected sequences = distinct positions = {len(positions)}")
    print(f"wt_marginal      hf forward calls {wm_counts[0]}, sequences {wm_counts[1]}; embed calls {wm_counts[2]}, "
          f"sequences {wm_counts[3]}")
    print(f"reference        hf forward calls {ref_counts[0]}, sequences {ref_counts[1]} for {k} variants")
    print()

    print("== correctness")
    print(f"scores shape   {fast.shape} (layers 0..{lm.n_layers} x variants)")
    diff = float(np.abs(fast[:, subset] - ref).max())
    diff_wt = float(np.abs(fast_wt - ref_wt).max())
    print(f"masked_marginal vs reference on {k} variants x {fast.shape[0]} layers: max |diff| = {diff:.2e} "
          f"({'OK' if diff <= TOL else 'FAIL'}, tolerance {TOL:g}); max |score| = {np.abs(ref).max():.3f}")
    print(f"wt_marginal vs one-pass reference on all {n} variants: max |diff| = {diff_wt:.2e} "
          f"({'OK' if diff_wt <= TOL else 'FAIL'})")
    print(f"note: lm.readout(hidden_states[-1]) vs the model's logits: max |diff| = {double_norm:.2e} "
          "(transformers' last hidden state is already final-normed; the reference uses the logits for layer L)")
    print()

    ref_per_variant = t_ref.wall / k
    ref_extrap = ref_per_variant * n
    ref_cpu_extrap = t_ref.cpu / k * n
    print(f"== timings ({n} variants; wall and process CPU time)")
    header = ["method", "passes/variant", "wall time", "CPU time", "speed-up vs reference"]
    rows = [
        ["masked_marginal (layer_scores)", f"{mm_counts[1] / n:.4f}  ({mm_counts[1]}/{n})",
         fmt_s(t_mm.wall) + " measured", fmt_s(t_mm.cpu), f"{ref_extrap / t_mm.wall:.1f}x"],
        ["wt_marginal (layer_scores)", f"{wm_counts[1] / n:.4f}  ({wm_counts[1]}/{n})", fmt_s(t_wm.wall) + " measured",
         fmt_s(t_wm.cpu), f"{ref_extrap / t_wm.wall:.0f}x"],
        [f"reference, 1 forward/variant", f"{ref_counts[1] / k:.4f}  ({ref_counts[1]}/{k})",
         fmt_s(ref_extrap) + f" EXTRAPOLATED from {k} variants ({fmt_s(t_ref.wall)} measured)",
         fmt_s(ref_cpu_extrap) + " extrap.", "1.0x"],
    ]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print()
    print(f"per sequence-pass: fast {t_mm.wall / max(mm_counts[1], 1) * 1e3:.0f} ms, "
          f"reference {t_ref.wall / max(ref_counts[1], 1) * 1e3:.0f} ms (wall)")
    print(f"expected speed-up from passes alone: {n / max(mm_counts[1], 1):.1f}x")
    ok = diff <= TOL and diff_wt <= TOL and mm_counts[1] == len(positions) and wm_counts[1] == 1
    print("RESULT", "OK" if ok else "CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
