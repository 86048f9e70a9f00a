"""GPU-hours of a workflow grid, estimated from forward-pass FLOPs.

    .venv/bin/python workflow/estimate.py                                   # the book's grid
    .venv/bin/python workflow/estimate.py --configfile workflow/paper.yaml  # the paper's grid
    .venv/bin/python workflow/estimate.py --configfile workflow/paper.yaml --tflops 250 --markdown

The jobs are the workflow's own (`plmdepth.publish.grid.jobs`). For one forward pass over a
sequence of n tokens a model of P parameters, L blocks and width d costs 2·P·n + 4·L·n²·d FLOPs
(matrix products, then attention scores and their weighted sum). Passes per unit of data:

- logit lens, contributions: one pass per sequence (all masked positions of the plan at once);
- layer skipping: L + 1 passes per sequence (the full model, then each block skipped);
- tuned lens: one pass per sequence, plus training the translators, 3 x epochs x positions x L x
  (2·d² + 2·d·V) (forward and backward through a d x d map and the head);
- variant effects: masked and diffusion models one pass per mutated position of an assay
  (masked marginals, context of at most 1,024 tokens), autoregressive models one pass per variant
  and one for the wild type (the prefix cache, which saves most of this, is not counted).

Hours = FLOPs / (`--tflops` x 1e12) / 3600: `--tflops` is the throughput one GPU achieves on these
passes (an assumption: measure it with benchmarks/gpu.py on your GPU; 300 is about 30% of an
H100's or H200's dense bfloat16 peak). Models of unknown size (not registered) are left out.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from functools import lru_cache

import yaml

from plmdepth.fasta import read_fasta
from plmdepth.models import REGISTRY
from plmdepth.probes.variant_effects import read_assays
from plmdepth.publish import grid
from plmdepth.publish.chapters import shared_parameters
from plmdepth.models.untrained import parse_twin

VOCAB = 33  # ESM-2's; the head is a small share of the cost for every registered model
CONTEXT = 1024


def forward(params: float, blocks: int, width: int, n: int) -> float:
    return 2 * params * n + 4 * blocks * n * n * width


@lru_cache
def _lengths(fasta: str, n_sequences: int | None) -> tuple[int, ...]:
    records = read_fasta(fasta)
    return tuple(len(r.sequence) + 2 for r in records[:n_sequences])  # + framing tokens


@lru_cache
def _assays(reference: str, assays: tuple | None, max_variants: int | None, seed: int):
    data = read_assays(reference, assays=list(assays) if assays else None, max_variants=max_variants, seed=seed)
    return [(min(len(a.wild_type) + 2, CONTEXT), len(a.variants),
             len({p for mutations in a.mutations for p, _, _ in mutations})) for a in data]


def job_flops(job: grid.Job) -> float | None:
    request = job.request
    base = parse_twin(request.model.argument)[0] if request.model.init_seed is not None else request.model.argument
    entry, params = REGISTRY.get(base), grid.parameter_count(base)  # a twin costs what its model does
    if entry is None or params is None:
        return None
    L, d, inputs, config = entry.blocks, entry.width, request.inputs, dict(request.params)
    if request.measurement == "variant_effects":
        total = 0.0
        for n, variants, positions in _assays(inputs.reference, inputs.assays, inputs.max_variants, request.seed):
            passes = variants + 1 if entry.objective == "autoregressive" else positions
            total += passes * forward(params, L, d, n)
        return total
    lengths = _lengths(inputs.fasta, inputs.n_sequences)
    # layer skipping: the clean pass and one rerun of the later blocks per skipped block (L + 1 passes at most);
    # part skipping: that for the block, its attention and its MLP, plus the direct effects' readouts
    passes = {"layer_skipping": L + 1, "part_skipping": 3 * (L + 1) + 1}.get(request.measurement, 1)
    total = passes * sum(forward(params, L, d, n) for n in lengths)
    if request.measurement == "tuned_lens":
        positions = sum(lengths) * (1.0 if entry.objective == "autoregressive" else request.mask_fraction)
        total += 3 * config.get("epochs", 50) * positions * L * (2 * d * d + 2 * d * VOCAB)
    return total


def _base(job: grid.Job) -> str:
    """The registered model a job runs (a twin counts with its model)."""
    argument = job.request.model.argument
    return parse_twin(argument)[0] if job.request.model.init_seed is not None else argument


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", help="a workflow config (e.g. workflow/paper.yaml) over parameters.yml")
    parser.add_argument("--tflops", type=float, default=300.0, help="achieved TFLOP/s per GPU (default 300)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    config = shared_parameters()
    if args.configfile:
        config.update(yaml.safe_load(open(args.configfile)))
    jobs, _ = grid.jobs(config)
    per_model: dict[str, list] = defaultdict(lambda: [0, 0.0])
    unknown = set()
    for job in jobs:
        flops = job_flops(job)
        if flops is None:
            unknown.add(_base(job))
            continue
        per_model[_base(job)][0] += 1
        per_model[_base(job)][1] += flops
    rows = sorted(per_model.items(), key=lambda item: item[1][1])
    hours = lambda flops: flops / (args.tflops * 1e12) / 3600  # noqa: E731
    print(f"{len(jobs)} measurements in {len(grid.folder_jobs(jobs))} results folders "
          f"({len(set(_base(j) for j in jobs))} models, untrained twins counted with their model); "
          f"{args.tflops:g} TFLOP/s per GPU assumed")
    if args.markdown:
        print("\n| model | size | measurements | PFLOP | GPU-minutes |\n|---|--:|--:|--:|--:|")
        for model, (n, flops) in rows:
            print(f"| {model} | {REGISTRY[model].size} | {n} | {flops / 1e15:,.2f} | {60 * hours(flops):,.2f} |")
    else:
        print(f"{'model':<20} {'size':>6} {'runs':>5} {'PFLOP':>10} {'GPU-minutes':>12}")
        for model, (n, flops) in rows:
            print(f"{model:<20} {REGISTRY[model].size:>6} {n:>5} {flops / 1e15:>10,.2f} {60 * hours(flops):>12,.2f}")
    total = sum(flops for _, (_, flops) in rows)
    print(f"total: {total / 1e15:,.1f} PFLOP, {hours(total):,.2f} GPU-hours"
          + (f"; not estimated (size unknown): {', '.join(sorted(unknown))}" if unknown else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
