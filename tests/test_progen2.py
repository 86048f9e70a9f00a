"""ProGen2 re-implementation: a plain reference written from the state dict, the wrapper's
anatomy and measurements, padding, and checkpoint loading (tiny random models only)."""

import json
import math

import pytest
import torch

from conftest import PROGEN2_TINY as TINY
from conftest import PROGEN2_TINY_2PER as TINY_2PER
from conftest import SEQUENCES, tiny_progen2, tiny_progen2_model
from plmdepth.models.progen2 import (
    MP_NUM, PROGEN2_ALPHABET, PROGEN2_CONFIGS, PROGEN2_TOKENS, ProGen2LM, ProGen2LoadError, config_dict, load_progen2,
    wrap_progen2,
)

def ids_of(sequence):
    return [PROGEN2_TOKENS.index(t) for t in ("1", *sequence, "2")]


# ------------------------------------------------------------------------- reference
@torch.no_grad()
def reference_logits(state, config, token_ids):
    """One unpadded sequence, plain float64 loops from the state dict; index arithmetic for the
    fused projection: row block of head n = shard n // (H/8), slot n % (H/8), each shard
    [query | value | key] of width d/8."""
    sd = {k: v.double() for k, v in state.items()}
    d, H = config.n_embd, config.n_head
    hd, local, per_shard = d // H, d // MP_NUM, H // MP_NUM
    rd = config.rotary_dim or hd
    T = len(token_ids)

    def layer_norm(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + config.layer_norm_epsilon) * w + b

    def rotate(x):  # x [T, hd]: pairs (2i, 2i+1) of the first rd channels turn by t * 10000^(-2i/rd)
        out = x.clone()
        for t in range(T):
            for i in range(rd // 2):
                angle = t * 10000.0 ** (-2 * i / rd)
                c, s = math.cos(angle), math.sin(angle)
                a, b = x[t, 2 * i], x[t, 2 * i + 1]
                out[t, 2 * i], out[t, 2 * i + 1] = a * c - b * s, b * c + a * s
        return out

    h = sd["transformer.wte.weight"][token_ids]
    for layer in range(config.n_layer):
        p = lambda name: sd[f"transformer.h.{layer}.{name}"]  # noqa: E731
        x = layer_norm(h, p("ln_1.weight"), p("ln_1.bias"))
        W = p("attn.qkv_proj.weight")
        heads = []
        for n in range(H):
            base = (n // per_shard) * 3 * local + (n % per_shard) * hd
            q = x @ W[base: base + hd].T
            v = x @ W[base + local: base + local + hd].T
            k = x @ W[base + 2 * local: base + 2 * local + hd].T
            q, k = rotate(q), rotate(k)
            out = torch.zeros(T, hd, dtype=torch.float64)
            for t in range(T):
                scores = (k[: t + 1] @ q[t]) / math.sqrt(hd)
                out[t] = torch.softmax(scores, 0) @ v[: t + 1]
            heads.append(out)
        a = torch.cat(heads, -1) @ p("attn.out_proj.weight").T
        u = x @ p("mlp.fc_in.weight").T + p("mlp.fc_in.bias")
        u = 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))
        m = u @ p("mlp.fc_out.weight").T + p("mlp.fc_out.bias")
        h = h + a + m
    h = layer_norm(h, sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"])
    return h @ sd["lm_head.weight"].T + sd["lm_head.bias"]


@pytest.mark.parametrize("config", [TINY, TINY_2PER], ids=["1-head-per-shard", "2-heads-per-shard"])
def test_model_equals_plain_reference(config):
    model = tiny_progen2_model(config, seed=1)
    state = model.state_dict()
    for rec in SEQUENCES[:3]:
        ids = ids_of(rec.sequence)
        got = model(torch.tensor([ids])).logits[0]
        ref = reference_logits(state, config, ids)
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)


def test_qkv_layout_is_not_a_contiguous_split():
    """The check above would not notice a layout mistake if q, v, k happened to coincide."""
    model = tiny_progen2_model(seed=2)
    ids = torch.tensor([ids_of(SEQUENCES[0].sequence)])
    before = model(ids).logits
    with torch.no_grad():  # reorder rows to the naive [Q; K; V] layout: the logits must change
        for block in model.transformer.h:
            w = block.attn.qkv_proj.weight
            shards = w.view(MP_NUM, 3, -1, w.shape[1])
            block.attn.qkv_proj.weight.copy_(shards.transpose(0, 1).reshape_as(w))
    assert (model(ids).logits - before).abs().max() > 1e-3


def test_state_dict_keys_are_the_checkpoints():
    keys = set(tiny_progen2_model().state_dict())
    expected = {"transformer.wte.weight", "transformer.ln_f.weight", "transformer.ln_f.bias",
                "lm_head.weight", "lm_head.bias"}
    for i in range(TINY.n_layer):
        expected |= {f"transformer.h.{i}.{k}" for k in (
            "ln_1.weight", "ln_1.bias", "attn.qkv_proj.weight", "attn.out_proj.weight",
            "mlp.fc_in.weight", "mlp.fc_in.bias", "mlp.fc_out.weight", "mlp.fc_out.bias")}
    assert keys == expected


def test_vocabulary_and_framing():
    assert len(PROGEN2_TOKENS) == 30 and PROGEN2_TOKENS[:5] == ("<|pad|>", "<|bos|>", "<|eos|>", "1", "2")
    assert PROGEN2_TOKENS.index("A") == 5 and PROGEN2_TOKENS.index("Z") == 29 and "J" not in PROGEN2_TOKENS
    lm = tiny_progen2()
    batch = lm.tokenize(["a", "b"], ["MKV", "AC"])
    assert batch.input_ids.tolist() == [[3, 16, 14, 25, 4], [3, 5, 7, 4, 0]]
    assert lm.alphabet is PROGEN2_ALPHABET and lm.objective == "autoregressive"
    assert lm.info.family == "ProGen2" and lm.info.norm == "pre-LN (parallel)"
    assert lm.max_residues == TINY.n_positions - 2


def test_released_sizes():
    counts = {}
    for name, config in PROGEN2_CONFIGS.items():
        with torch.device("meta"):
            counts[name] = sum(p.numel() for p in ProGen2LM(config).parameters())
    assert round(counts["progen2-small"] / 1e6) == 151
    assert round(counts["progen2-medium"] / 1e6) == 765 and counts["progen2-base"] == counts["progen2-oas"]
    assert round(counts["progen2-xlarge"] / 1e8) == 64


# ------------------------------------------------------------------------- the wrapper
def test_wrapper_anatomy_equals_own_forward():
    lm = tiny_progen2(seed=3)
    batch = lm.tokenize([r.id for r in SEQUENCES], [r.sequence for r in SEQUENCES])
    with torch.no_grad():
        own = lm(batch)
        for layer, h in lm.hidden_states(batch):
            pass
        assert layer == lm.n_layers
        torch.testing.assert_close(lm.readout(h), own, rtol=0, atol=0)


def test_attention_and_mlp_are_observable_separately():
    """Parallel block: out = h + attn_out + mlp_out, both read ln_1(h) (hooks, no model.py change)."""
    lm = tiny_progen2(seed=4)
    batch = lm.tokenize([r.id for r in SEQUENCES], [r.sequence for r in SEQUENCES])
    with torch.no_grad():
        h = lm.embed(batch)
        for layer, block in enumerate(lm.layers):
            seen = {}
            hooks = [getattr(block, part).register_forward_hook(
                lambda m, args, out, part=part: seen.__setitem__(part, out)) for part in ("attn", "mlp")]
            out = lm.block(layer, h, batch)
            for hook in hooks:
                hook.remove()
            torch.testing.assert_close(h + seen["attn"] + seen["mlp"], out)
            h = out


def test_right_padding_does_not_change_real_positions():
    lm = tiny_progen2(seed=5)
    batch = lm.tokenize([r.id for r in SEQUENCES], [r.sequence for r in SEQUENCES])
    assert (batch.attention_mask == 0).any()
    with torch.no_grad():
        padded = lm(batch)
        for b, rec in enumerate(SEQUENCES):
            alone = lm(lm.tokenize([rec.id], [rec.sequence]))[0]
            torch.testing.assert_close(padded[b, : alone.shape[0]], alone, rtol=1e-5, atol=1e-5)


def test_parallel_sublayers_add_up_to_the_block_and_match_hand_computed_parts():
    lm = tiny_progen2(seed=6)
    batch = lm.tokenize([r.id for r in SEQUENCES], [r.sequence for r in SEQUENCES])
    with torch.no_grad():
        h = lm.embed(batch)
        for layer in range(lm.n_layers):
            parts = lm.block_parts(layer, h, batch)
            block = lm.layers[layer]
            x = block.ln_1(h)
            mask = batch.layer_context["kwargs"].get("attention_mask")
            torch.testing.assert_close(parts["mlp"], block.mlp(x))
            torch.testing.assert_close(parts["attention"], block.attn(x, attention_mask=mask))
            torch.testing.assert_close(h + parts["attention"] + parts["mlp"], parts["out"])
            assert parts["mlp_base"] is h and parts["attention_base"] is h
            h = parts["out"]


# ------------------------------------------------------------------------- loading
def _logits(lm, sequence="MKTAYIAKQRQISFVK"):
    with torch.no_grad():
        return lm(lm.tokenize(["x"], [sequence]))


def test_load_folder_round_trip(tmp_path):
    model = tiny_progen2_model(seed=8)
    (tmp_path / "config.json").write_text(json.dumps(config_dict(model.config)))
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    lm = load_progen2(tmp_path)
    assert lm.network.config == model.config and lm.info.checksum.startswith("sha256:")
    torch.testing.assert_close(_logits(lm), _logits(wrap_progen2(model, "m", "m")), rtol=0, atol=0)


def test_load_hugohrban_style_safetensors(tmp_path):
    from safetensors.torch import save_file

    model = tiny_progen2_model(seed=9)
    c = model.config
    (tmp_path / "config.json").write_text(json.dumps({  # hugohrban/progen2-* spelling
        "model_type": "progen", "embed_dim": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head,
        "rotary_dim": c.rotary_dim, "n_positions": c.n_positions, "vocab_size_emb": 32, "vocab_size_lm_head": 32}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    torch.testing.assert_close(_logits(load_progen2(tmp_path)), _logits(wrap_progen2(model, "m", "m")))


def test_a_progen2_folder_loads_through_load_model(tmp_path):
    from safetensors.torch import save_file

    from plmdepth.models import load_model

    model = tiny_progen2_model(seed=9)
    c = model.config
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "progen", "embed_dim": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head,
        "rotary_dim": c.rotary_dim, "n_positions": c.n_positions, "vocab_size_emb": 32, "vocab_size_lm_head": 32}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    lm = load_model(str(tmp_path))
    assert lm.info.family == "ProGen2" and lm.objective == "autoregressive"
    torch.testing.assert_close(_logits(lm), _logits(wrap_progen2(model, "m", "m")))


def test_load_nested_fp16_file_with_original_buffers(tmp_path):
    model = tiny_progen2_model(seed=10)
    state = {k: v.half() for k, v in model.state_dict().items()}
    for i in range(TINY.n_layer):  # the original module's persistent buffers
        state[f"transformer.h.{i}.attn.bias"] = torch.ones(1, 1, 4, 4, dtype=torch.bool).tril()
        state[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e9)
    path = tmp_path / "progen2-tiny.pt"
    torch.save({"model": state}, path)
    with pytest.raises(ProGen2LoadError, match="n_head= and rotary_dim="):
        load_progen2(path)  # no config.json and not a released size: heads cannot be read from shapes
    lm = load_progen2(path, n_head=TINY.n_head, rotary_dim=TINY.rotary_dim, n_positions=TINY.n_positions)
    assert lm.network.lm_head.weight.dtype == torch.float32
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    torch.testing.assert_close(_logits(lm), _logits(wrap_progen2(model, "m", "m")), rtol=0, atol=0)


def test_load_failures_say_what_is_wrong(tmp_path):
    with pytest.raises(ProGen2LoadError, match="does not exist"):
        load_progen2(tmp_path / "missing")
    with pytest.raises(ProGen2LoadError, match="has none of"):
        load_progen2(tmp_path)
    model = tiny_progen2_model(seed=11)
    renamed = {k.replace("qkv_proj", "qkv"): v for k, v in model.state_dict().items()}
    torch.save(renamed, tmp_path / "pytorch_model.bin")
    with pytest.raises(ProGen2LoadError, match="not a ProGen2 checkpoint"):
        load_progen2(tmp_path)
    state = model.state_dict()
    state["transformer.h.0.attn.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(config_dict(model.config)))
    with pytest.raises(ProGen2LoadError, match="does not match the ProGen2 architecture"):
        load_progen2(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({**config_dict(model.config), "n_layer": 5}))
    with pytest.raises(ProGen2LoadError, match="disagrees with the weights"):
        load_progen2(tmp_path)
