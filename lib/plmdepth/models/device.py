"""Where a model runs: the device check, and how a loader places its weights there.

`check_device` answers in one sentence, before anything is loaded, when a device is not
usable here (no CUDA, no MPS, or `cuda:N` past the GPUs this machine has).

Loaders that take `device` and `dtype` build or read their weights there directly rather
than materialising them in float32 on the CPU and copying them over: `hf_placement(...)`
gives `from_pretrained` its `dtype` (and a `device_map` when `accelerate` is installed, so
the weights are read straight onto the device), and `building_on(...)` is the context to
construct a model in (random initialisation, or before a state dict is copied in). Either
way, buffers an architecture builds in float32 on purpose (transformers' rotary `inv_freq`)
stay float32, where casting the finished module with `.to(dtype)` would round them too.
"""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager, nullcontext

import torch

from plmdepth.models.hub import ModelLoadError

def check_device(device: str | torch.device) -> None:
    """One sentence, before any loading, when `device` is not a device torch can use here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelLoadError(f"--device {device!r} is not a device name; use cpu, cuda, cuda:N or mps.") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device}: torch {torch.__version__} sees no CUDA device on this machine; "
                             "run with --device cpu, or on a machine with a GPU and a CUDA build of torch.")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ModelLoadError(f"--device {device}: this machine has {count} CUDA device{'s' if count > 1 else ''} "
                             f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}); pick one of them.")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"--device {device}: this machine has no Apple MPS device; run with --device cpu.")


# precisions that keep the weights and the residual stream in float32 and compute the matrix products
# in a narrower type (torch.autocast: weights and inputs of each product rounded, accumulated in float32;
# norms, softmax and everything else in float32)
MIXED = {"mixed-bfloat16": torch.bfloat16}
PRECISIONS = ("float32", "mixed-bfloat16", "bfloat16", "float16", "float64")


def as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """The weights' dtype of a precision: `torch.bfloat16` from "bfloat16" (or the dtype itself),
    float32 for a mixed precision (`MIXED`); one sentence for anything else."""
    if dtype in MIXED:
        return torch.float32
    value = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not (isinstance(value, torch.dtype) and value.is_floating_point):
        raise ModelLoadError(f"--dtype {dtype!r} is not a floating-point torch dtype; "
                             f"use one of {', '.join(PRECISIONS)}.")
    return value


def computing_in(dtype: torch.dtype | str, device: str | torch.device):
    """The context a measurement runs in: `torch.autocast` to the narrow type of a mixed precision,
    nothing otherwise (the weights' dtype is then the computation's)."""
    if dtype in MIXED:
        return torch.autocast(torch.device(device).type, dtype=MIXED[dtype])
    return nullcontext()


def hf_placement(device: str | torch.device | None, dtype: torch.dtype | None) -> dict:
    """`from_pretrained` keyword arguments that read the weights in `dtype`, straight onto
    `device` when `accelerate` is installed (transformers needs it for `device_map`);
    without it they are read on the CPU in `dtype`, to be moved with `.to(device)`."""
    kwargs = {} if dtype is None else {"dtype": dtype}
    if device is not None and torch.device(device).type != "cpu" and importlib.util.find_spec("accelerate"):
        kwargs["device_map"] = str(torch.device(device))
    return kwargs


@contextmanager
def building_on(device: str | torch.device | None, dtype: torch.dtype | None):
    """Construct modules directly on `device` with floating-point tensors in `dtype` (torch's
    default device and dtype, restored afterwards)."""
    previous = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        with torch.device(device) if device is not None else nullcontext():
            yield
    finally:
        torch.set_default_dtype(previous)
