"""Does the first multi-threaded call of a CPU kernel give the same bytes as later calls?

Each of N fresh Python processes computes, twice, the MLP half of a GPT-2 block the size of
IgLM-S's (LayerNorm, a 192->768 matrix product, GPT-2's tanh GELU, 768->192) on fixed random
inputs with two threads, and compares the two results op by op. A process whose first call
differs prints the first op that differs, the batch rows it touched and the largest change.
This is the check behind the IgLM-S difference once seen by tests/test_slurm.py (README,
"Tests"): the first call of torch.tanh (MKL's vector math) computed the rows of the first
thread with MKL's low-accuracy code path (6 of 335 processes on a busy 2-core machine).
`--warm` first runs `plmdepth.cpu_math.initialise()`, as every model does when it is built.
Busy cores make it more likely (run it beside other work).

    .venv/bin/python scripts/first_call_check.py --processes 500 [--warm]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from collections import Counter

from tqdm import tqdm


def one_process(warm: bool) -> str:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    if warm:
        from plmdepth import cpu_math

        cpu_math.initialise()
    g = torch.Generator().manual_seed(0)
    h = torch.randn(16, 128, 192, generator=g)
    w_ln, b_ln = 1 + 0.1 * torch.randn(192, generator=g), 0.1 * torch.randn(192, generator=g)
    w_fc, b_fc = 0.07 * torch.randn(192, 768, generator=g), 0.1 * torch.randn(768, generator=g)
    w_proj, b_proj = 0.04 * torch.randn(768, 192, generator=g), 0.1 * torch.randn(192, generator=g)

    def mlp(x):
        out = {"layer_norm": F.layer_norm(x, (192,), w_ln, b_ln, 1e-5)}
        out["c_fc"] = torch.addmm(b_fc, out["layer_norm"].reshape(-1, 192), w_fc).view(16, 128, 768)
        f = out["c_fc"]
        out["tanh"] = torch.tanh(math.sqrt(2.0 / math.pi) * (f + 0.044715 * torch.pow(f, 3.0)))
        out["gelu"] = 0.5 * f * (1.0 + out["tanh"])
        out["c_proj"] = torch.addmm(b_proj, out["gelu"].reshape(-1, 768), w_proj).view(16, 128, 192)
        return out

    with torch.no_grad():
        first, second = mlp(h), mlp(h)
    for name in first:
        if not torch.equal(first[name], second[name]):
            diff = (first[name] - second[name]).abs()
            rows = (diff.reshape(16, -1).amax(1) > 0).nonzero().squeeze(1).tolist()
            return f"differs first at {name}: rows {rows}, largest change {diff.max().item():.4g}"
    return "same"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=200, help="fresh processes to start (default 200)")
    parser.add_argument("--warm", action="store_true", help="run plmdepth.cpu_math.initialise() first")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child's role
    args = parser.parse_args(argv)
    if args.one:
        print(one_process(args.warm))
        return 0
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    outcomes = Counter()
    child = [sys.executable, __file__, "--one"] + (["--warm"] if args.warm else [])
    for _ in tqdm(range(args.processes), desc="fresh processes", unit="process"):
        proc = subprocess.run(child, capture_output=True, text=True)
        line = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else (
            f"failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
        outcomes[line] += 1
        if line != "same":
            tqdm.write(line)
    print(f"{args.processes} processes{' (warm)' if args.warm else ''}: "
          + "; ".join(f"{n} {what}" for what, n in outcomes.most_common()))
    return 1 if any(what.startswith("failed") for what in outcomes) else 0  # a difference is a finding, not an error


if __name__ == "__main__":
    sys.exit(main())
