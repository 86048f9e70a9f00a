"""The GPU path, checked where there is no GPU: devices refused in one sentence, models built
and loaded in the requested dtype, the probes in bfloat16, and benchmarks/gpu.py's logic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SEQUENCES
from plmdepth.models import ModelLoadError, check_device, load_model
from plmdepth.models.esm2 import esm2_config, load_esm2, random_esm2
from plmdepth.plan import make_plan
from plmdepth.probes.contributions import contributions
from plmdepth.probes.layer_skipping import layer_skipping
from plmdepth.probes.logit_lens import LogitLens, layer_log_probs, logit_lens
from plmdepth.probes.variant_scoring import masked_marginals

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = not torch.cuda.is_available()

# bfloat16 keeps 8 significant bits: each rounding is off by up to 2^-9 (0.2%) of the value,
# and a few blocks of them move activations by about 1%. Quantities built from them (ratios of
# norms, log-probabilities, KL) are compared against float32 at 5% of their size plus 0.02
# absolute (log-probabilities of order 1): loose enough for bfloat16, far tighter than a
# wrong layer, sign or missing upcast would be (those change these values by order 1).
RTOL, ATOL = 0.05, 0.02


def _one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and ". " not in message


def tiny_config():
    """ESM-2's published config shrunk to 3 blocks of width 32 (everything else as released)."""
    return esm2_config("8M", num_hidden_layers=3, hidden_size=32, num_attention_heads=4, intermediate_size=128)


def float32_and_bfloat16():
    """A random tiny ESM-2 in float32, and the same weights in bfloat16 (built in bfloat16)."""
    lm32 = random_esm2(tiny_config(), seed=0)
    lm16 = random_esm2(tiny_config(), seed=1, dtype=torch.bfloat16)
    lm16.network.load_state_dict(lm32.network.state_dict())
    return lm32, lm16


# ----------------------------------------------------------------------------- devices
@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_is_refused_in_one_sentence_without_it(device):
    with pytest.raises(ModelLoadError) as err:
        check_device(device)
    assert _one_sentence(str(err.value)) and "sees no CUDA device" in str(err.value)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_is_refused_in_one_sentence_without_it():
    with pytest.raises(ModelLoadError) as err:
        check_device("mps")
    assert _one_sentence(str(err.value)) and "no Apple MPS device" in str(err.value)


def test_a_gpu_index_past_the_machines_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_device("cuda")
    check_device("cuda:0")
    with pytest.raises(ModelLoadError) as err:
        check_device("cuda:3")
    assert _one_sentence(str(err.value)) and "has 1 CUDA device (cuda:0)" in str(err.value)
    with pytest.raises(ModelLoadError) as err:
        check_device("gpu")
    assert _one_sentence(str(err.value)) and "not a device name" in str(err.value)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_loaders_refuse_a_missing_device_before_reading_anything(tmp_path, monkeypatch):
    from plmdepth.models import esm2

    monkeypatch.setattr(esm2, "from_pretrained", lambda *a, **k: pytest.fail("weights were read"))
    for call in (lambda: load_model(str(tmp_path / "absent"), device="cuda:3"),
                 lambda: load_esm2(str(tmp_path / "absent"), device="cuda"),
                 lambda: random_esm2(tiny_config(), device="cuda")):
        with pytest.raises(ModelLoadError) as err:
            call()
        assert _one_sentence(str(err.value))


# ----------------------------------------------------------------------------- dtypes
def test_models_are_built_and_loaded_in_the_requested_dtype(tmp_path, monkeypatch):
    from plmdepth.models import esm2

    lm32, lm16 = float32_and_bfloat16()
    assert {p.dtype for p in lm32.parameters()} == {torch.float32}
    assert {p.dtype for p in lm16.parameters()} == {torch.bfloat16}
    lm32.network.save_pretrained(tmp_path / "esm")
    asked = []
    real = esm2.from_pretrained
    monkeypatch.setattr(esm2, "from_pretrained", lambda *a, **k: asked.append(k) or real(*a, **k))

    loaded = load_model(str(tmp_path / "esm"), dtype="bfloat16")
    assert asked[-1]["dtype"] == torch.bfloat16  # read in bfloat16, not read in float32 and cast
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    # the rotary table stays float32, as transformers builds it: in bfloat16 its frequencies
    # would be off by up to 0.4%, i.e. by radians at positions in the hundreds
    assert loaded.network.esm.rotary_embeddings.inv_freq.dtype == torch.float32
    for name, value in loaded.network.state_dict().items():
        assert torch.equal(value, lm16.network.state_dict()[name]), name

    again = load_model(str(tmp_path / "esm"))  # float32 on the CPU: the weights exactly as saved
    assert asked[-1]["dtype"] == torch.float32
    for name, value in again.network.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, lm32.network.state_dict()[name]), name


def test_probes_in_bfloat16_are_finite_full_precision_and_agree_with_float32():
    lm32, lm16 = float32_and_bfloat16()
    records = list(SEQUENCES)
    plan = make_plan(records, "masked", seed=0)

    batch = lm16.tokenize([r.id for r in records[:2]], [r.sequence for r in records[:2]],
                          masked=[plan.for_id(r.id).masked for r in records[:2]])
    with torch.no_grad():
        logp = layer_log_probs(lm16, LogitLens(lm16), batch, batch.residue_index >= 0)
    assert len(logp) == 4 and all(lp.dtype == torch.float32 and torch.isfinite(lp).all() for lp in logp)

    lens32, lens16 = (logit_lens(lm, records, plan, progress=False) for lm in (lm32, lm16))
    skip32, skip16 = (layer_skipping(lm, records, plan, progress=False) for lm in (lm32, lm16))
    parts32, parts16 = (contributions(lm, records, progress=False) for lm in (lm32, lm16))
    with torch.no_grad():
        scores32, scores16 = (masked_marginals(lm, LogitLens(lm), records[0].sequence, [2, 9, 20]).numpy()
                              for lm in (lm32, lm16))
    pairs = [(lens32[["kl", "top1_agreement"]], lens16[["kl", "top1_agreement"]]),
             (skip32[0][["effect_mean", "effect_max"]], skip16[0][["effect_mean", "effect_max"]]),
             (skip32[1][["prob_l2_mean", "kl_mean"]], skip16[1][["prob_l2_mean", "kl_mean"]]),
             (parts32[["ratio_mean", "ratio_max", "cosine_mean"]], parts16[["ratio_mean", "ratio_max", "cosine_mean"]]),
             (scores32, scores16)]
    for ref, got in pairs:
        ref, got = np.asarray(ref, dtype=float), np.asarray(got, dtype=float)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    assert not np.array_equal(parts16["ratio_mean"], parts32["ratio_mean"])  # the bfloat16 run is its own
    assert lens16["kl"].iloc[-1] == 0 and (lens16["top1_agreement"].iloc[-1] == 1)


# ----------------------------------------------------------------------------- benchmarks/gpu.py
def _gpu_script(*args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_gpu_benchmark_refuses_without_cuda_in_one_line():
    done = _gpu_script("--models", "3B", timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a CUDA GPU" in lines[0] and "--cpu-smoke" in lines[0]


def test_gpu_benchmark_cpu_smoke_runs_every_row_and_compares_bfloat16(tmp_path):
    out = tmp_path / "gpu.csv"
    done = _gpu_script("--cpu-smoke", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert text.splitlines()[0].startswith("python ") and f"torch {torch.__version__}" in text.splitlines()[0]
    assert "estimate" in text and "Results (" in text and f"wrote {out}" in text
    table = pd.read_csv(out)
    measurements = ["forward", "logit_lens", "layer_skipping", "contributions", "variant_effects"]
    assert list(table["measurement"]) == measurements * 2
    assert list(table["dtype"]) == ["float32"] * 5 + ["bfloat16"] * 5
    assert (table["wall_s"] > 0).all() and (table["flops"] > 0).all()
    # a layer-skipping row runs (L + 1) / 2 forward passes' worth of blocks, more than one forward
    flops = table[table["dtype"] == "float32"].set_index("measurement")["flops"]
    assert flops["layer_skipping"] > 1.5 * flops["forward"]
    bf16 = table[table["dtype"] == "bfloat16"].set_index("measurement")
    assert list(bf16["compared"]) == ["log_probs", "kl", "effect_mean", "ratio_mean", "scores"]
    assert (bf16["max_abs_diff"] < 0.1).all() and (bf16["max_abs_diff"] > 0).any()
    assert bf16.loc["forward", "top1_agreement"] > 0.9
    for line in ("model", "dtype", "measurement", "TFLOP/s", "top-1 agree"):
        assert line in text
