"""First calls of MKL's vector math, made on one thread before any multi-threaded call.

On the CPU, torch computes tanh, exp, log, erf and the other functions in `FUNCTIONS` with
MKL's vector math. When the first call of such a function came from two threads at once (torch
splits a large tensor between its threads), the first thread's share has been computed with
another code path: MKL's AVX2 low-accuracy ("EP") tanh instead of the AVX-512 high-accuracy one
that every later call uses (MKL appears to pick its code path during that first call). On a
busy 2-core machine it happened in 1 of 233 IgLM-S logit-lens runs, where it changed the KL in
the 6th significant digit (README, "Tests"), and in 6 of 335 runs of
scripts/first_call_check.py; with one single-threaded tanh call made first, in none of 325.
`initialise()` calls each function once on a tensor too small to be split, so the first call
runs on the calling thread alone; `ProteinLM` calls it when a model is built, before any
forward pass.
"""

from __future__ import annotations

import torch

#: torch's float functions that ATen hands to MKL's vector math (where torch is built with MKL)
FUNCTIONS = ("acos", "asin", "atan", "cos", "cosh", "erf", "erfc", "erfinv", "exp", "expm1", "log", "log10",
             "log1p", "log2", "sin", "sinh", "tan", "tanh", "trunc", "lgamma", "sqrt")

_done = False


def initialise() -> None:
    """Call each of `FUNCTIONS` once, on this thread only (once per process)."""
    global _done
    if _done:
        return
    x = torch.full((8,), 0.5)  # 8 elements: below torch's parallel grain, so never split between threads
    for name in FUNCTIONS:
        getattr(torch, name)(x)
    _done = True
