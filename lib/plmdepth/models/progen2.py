"""ProGen2 (Salesforce; Nijkamp et al. 2022) as a small, readable torch module.

transformers has no ProGen2 class, so this is a re-implementation of the architecture in
Salesforce's `progen2/models/progen/modeling_progen.py` (a GPT-J variant), with the same
state-dict key names, so that the released checkpoints load with ``strict=True``:

    transformer.wte.weight                      token embeddings (no position embeddings)
    transformer.h.{i}.ln_1.{weight,bias}        the block's only LayerNorm
    transformer.h.{i}.attn.qkv_proj.weight      fused q/v/k projection, no bias   [3d, d]
    transformer.h.{i}.attn.out_proj.weight      no bias                           [d, d]
    transformer.h.{i}.mlp.fc_in.{weight,bias}   [n_inner, d]
    transformer.h.{i}.mlp.fc_out.{weight,bias}  [d, n_inner]
    transformer.ln_f.{weight,bias}
    lm_head.{weight,bias}                       untied, with bias                 [vocab, d]

A block is parallel, pre-LN:  h + attn(ln_1(h)) + mlp(ln_1(h)).

Two details are invisible in tensor shapes and silently give wrong logits if missed:

- the fused projection was laid out for 8 model-parallel shards (``mp_num = 8``): its 3d
  outputs are 8 consecutive chunks, each holding [query | value | key] (in that order) for
  n_head/8 heads. It is *not* three contiguous d-sized blocks of q, k, v.
- rotary embeddings act on the first `rotary_dim` channels of each query/key head and rotate
  adjacent pairs (GPT-J "rotate every two": (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)),
  with frequencies 10000^(-2i/rotary_dim) and positions 0..T-1.

Attention scores are computed in float32 and scaled by 1/sqrt(head_dim); the causal mask
fills future positions with -1e9 and padding adds (1 - mask) * -10000, as the original does.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from plmdepth import weights
from plmdepth.model import ModelInfo, ProteinLM, n_params, state_dict_checksum
from plmdepth.models.device import building_on, check_device
from plmdepth.models.hub import local_or_snapshot, slug
from plmdepth.tokens import Alphabet

MP_NUM = 8  # model-parallel shards the fused qkv projection was laid out for (fixed in ProGen2)

# tokenizer.json of salesforce/progen, in id order (ids 0..29). Checkpoints have 32 embedding
# rows and 32 logits; ids 30 and 31 are never produced by the tokenizer.
PROGEN2_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>", "1", "2") + tuple("ABCDEFGHIKLMNOPQRSTUVWXYZ")
# ProGen2 frames a protein N->C as "1" + residues + "2" (the reverse direction is "2" ... "1").
PROGEN2_ALPHABET = Alphabet(PROGEN2_TOKENS, pad="<|pad|>", prefix=("1",), suffix=("2",))

CAUSAL_FILL = -1e9  # what the original writes into future positions (its `masked_bias`)
PADDING_FILL = -10000.0  # what the original adds at padded keys


@dataclass(frozen=True)
class ProGen2Config:
    """The hyper-parameters a ProGen2 checkpoint needs (names as in its config.json)."""

    n_layer: int
    n_embd: int
    n_head: int
    rotary_dim: int | None
    n_positions: int = 1024
    vocab_size: int = 32
    n_inner: int | None = None  # None: 4 * n_embd
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.n_head % MP_NUM:
            raise ValueError(f"n_head {self.n_head} must be divisible by {MP_NUM}, the qkv layout's shard count")
        if self.rotary_dim is not None and (self.rotary_dim % 2 or not 0 < self.rotary_dim <= self.head_dim):
            raise ValueError(f"rotary_dim {self.rotary_dim} must be even and at most head_dim {self.head_dim}")
        if self.activation_function not in ("gelu_new", "gelu"):
            raise ValueError(f"activation_function {self.activation_function!r} is not gelu_new or gelu")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @classmethod
    def from_json_dict(cls, raw: dict, **overrides) -> "ProGen2Config":
        """From a checkpoint's config.json: Salesforce spelling (n_embd, vocab_size) or
        hugohrban/progen2-* spelling (embed_dim, vocab_size_emb, vocab_size_lm_head)."""
        values = {
            "n_layer": raw.get("n_layer"),
            "n_embd": raw.get("n_embd", raw.get("embed_dim")),
            "n_head": raw.get("n_head"),
            "rotary_dim": raw.get("rotary_dim"),
            "n_positions": raw.get("n_positions", raw.get("n_ctx")),
            "vocab_size": raw.get("vocab_size", raw.get("vocab_size_emb")),
            "n_inner": raw.get("n_inner"),
            "layer_norm_epsilon": raw.get("layer_norm_epsilon"),
            "activation_function": raw.get("activation_function"),
        }
        values = {k: v for k, v in values.items() if v is not None}
        values.update(overrides)
        return cls(**values)


# Sizes of the released checkpoints (progen2/README.md lists small, medium, oas, base, large,
# BFD90, xlarge; progen2/likelihood.py groups them as 151M: small; 754M: medium, oas, base;
# 2B: large, BFD90; 6B: xlarge). n_layer/n_embd/n_head/rotary_dim/n_positions: see the report
# of the change that added this module for where each number comes from and which are unverified.
PROGEN2_CONFIGS: dict[str, ProGen2Config] = {
    "progen2-small": ProGen2Config(n_layer=12, n_embd=1024, n_head=16, rotary_dim=32, n_positions=1024),
    "progen2-medium": ProGen2Config(n_layer=27, n_embd=1536, n_head=16, rotary_dim=48, n_positions=1024),
    "progen2-oas": ProGen2Config(n_layer=27, n_embd=1536, n_head=16, rotary_dim=48, n_positions=1024),
    "progen2-base": ProGen2Config(n_layer=27, n_embd=1536, n_head=16, rotary_dim=48, n_positions=2048),
    "progen2-large": ProGen2Config(n_layer=32, n_embd=2560, n_head=32, rotary_dim=64, n_positions=1024),
    "progen2-BFD90": ProGen2Config(n_layer=32, n_embd=2560, n_head=32, rotary_dim=64, n_positions=1024),
    "progen2-xlarge": ProGen2Config(n_layer=32, n_embd=4096, n_head=16, rotary_dim=64, n_positions=1024),
}


# ---------------------------------------------------------------------------- the network
def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh approximation of GELU (transformers' "gelu_new")."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def rotary_angles(length: int, dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """sin and cos of position * frequency, each [length, dim], every frequency repeated for
    the two channels of its pair (interleaved layout)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return angles.sin().repeat_interleave(2, dim=-1), angles.cos().repeat_interleave(2, dim=-1)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): a quarter turn of each adjacent pair."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


def apply_rotary(x: torch.Tensor, rotary_dim: int, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate the first `rotary_dim` channels of x [B, T, H, hd]; sin/cos are [T, rotary_dim]."""
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    sin, cos = sin[:, None, :], cos[:, None, :]  # broadcast over heads
    return torch.cat([rot * cos + rotate_pairs(rot) * sin, rest], dim=-1)


class ProGen2Attention(nn.Module):
    def __init__(self, config: ProGen2Config):
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.rotary_dim = config.rotary_dim or config.head_dim
        self.qkv_proj = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.out_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def split_qkv(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, T, 3d] -> q, k, v each [B, T, H, hd]: 8 shards, each [query | value | key]."""
        B, T, _ = qkv.shape
        shards = qkv.view(B, T, MP_NUM, 3, -1)  # the last 3 * d/8 of each shard split in three
        query, value, key = shards.unbind(dim=3)  # each [B, T, 8, d/8]; note the order q, v, k
        heads = lambda t: t.reshape(B, T, self.n_head, self.head_dim)  # noqa: E731 (shard-major heads)
        return heads(query), heads(key), heads(value)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.split_qkv(self.qkv_proj(x))
        sin, cos = rotary_angles(T, self.rotary_dim, x.device)
        q, k = apply_rotary(q, self.rotary_dim, sin, cos), apply_rotary(k, self.rotary_dim, sin, cos)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, hd]
        scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(self.head_dim)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, CAUSAL_FILL)
        if attention_mask is not None:
            scores = scores + attention_mask
        weights = scores.softmax(dim=-1).to(v.dtype)
        out = (weights @ v).transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)
        return self.out_proj(out)


class ProGen2MLP(nn.Module):
    def __init__(self, config: ProGen2Config):
        super().__init__()
        self.fc_in = nn.Linear(config.n_embd, config.inner_dim)
        self.fc_out = nn.Linear(config.inner_dim, config.n_embd)
        self.exact_gelu = config.activation_function == "gelu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc_in(x)
        x = nn.functional.gelu(x) if self.exact_gelu else gelu_new(x)
        return self.fc_out(x)


class ProGen2Block(nn.Module):
    """h -> h + attn(ln_1(h)) + mlp(ln_1(h)): one norm, attention and MLP side by side."""

    def __init__(self, config: ProGen2Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = ProGen2Attention(config)
        self.mlp = ProGen2MLP(config)

    def forward(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.ln_1(h)
        return h + self.attn(x, attention_mask) + self.mlp(x)


class ProGen2Transformer(nn.Module):
    def __init__(self, config: ProGen2Config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.h = nn.ModuleList(ProGen2Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)


@dataclass
class ProGen2Output:
    logits: torch.Tensor


class ProGen2LM(nn.Module):
    """ProGen2's causal LM: embeddings -> blocks -> ln_f -> lm_head (original key names)."""

    def __init__(self, config: ProGen2Config):
        super().__init__()
        self.config = config
        self.transformer = ProGen2Transformer(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    @staticmethod
    def padding_bias(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """[B, T] of 1 (token) / 0 (padding) -> additive [B, 1, 1, T] scores bias (float32)."""
        if attention_mask is None:
            return None
        return (1.0 - attention_mask.to(torch.float32))[:, None, None, :] * PADDING_FILL

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> ProGen2Output:
        if input_ids.shape[-1] > self.config.n_positions:
            raise ValueError(f"{input_ids.shape[-1]} tokens exceed this model's context of {self.config.n_positions}")
        mask = self.padding_bias(attention_mask)
        h = self.transformer.wte(input_ids)
        for layer in range(len(self.transformer.h)):
            h = self.transformer.h[layer](h, attention_mask=mask)
        h = self.transformer.ln_f(h)
        return ProGen2Output(logits=self.lm_head(h).float())


# ---------------------------------------------------------------------------- the wrapper
def wrap_progen2(model: ProGen2LM, name: str, source: str, licence: str = "BSD-3-Clause",
                 checksum: str | None = None) -> ProteinLM:
    """A `ProGen2LM` as a `ProteinLM` (parallel pre-LN; final norm `ln_f`).

    Attention and MLP read the same ln_1(h) and are added together (out = h + attn_out +
    mlp_out): the sublayers are declared "parallel", both updates measured against h.
    """
    cfg = model.config
    info = ModelInfo(name=name, source=source, family="ProGen2", objective="autoregressive", modality="sequence",
                     n_layers=cfg.n_layer, d_model=cfg.n_embd, n_params=n_params(model), licence=licence,
                     checksum=checksum or state_dict_checksum(model), norm="pre-LN (parallel)")
    n_special = len(PROGEN2_ALPHABET.prefix) + len(PROGEN2_ALPHABET.suffix)
    return ProteinLM(model, model.transformer.h, model.transformer.ln_f, model.lm_head, PROGEN2_ALPHABET, info,
                     max_residues=cfg.n_positions - n_special,
                     sublayers={"kind": "parallel", "attention": "attn", "mlp": "mlp"})


# ---------------------------------------------------------------------------- loading
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "pytorch_model.pt")
# persistent buffers of the original attention module (causal mask, fill value): not weights
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")


class ProGen2LoadError(RuntimeError):
    """A ProGen2 checkpoint that cannot be loaded, with what is wrong."""


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (any unpickling failure: one sentence)
        raise ProGen2LoadError(f"could not read {path} as a torch checkpoint ({type(err).__name__}: {err}).") from None
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ProGen2LoadError(f"{path} does not hold a state dict of tensors (nor one under 'model'/'state_dict').")
    return state


def _clean(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the original's mask buffers and a DataParallel/compile `module.` prefix."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        if not key.endswith(BUFFER_SUFFIXES):
            out[key] = value
    return out


def infer_config(state: dict[str, torch.Tensor], raw_config: dict | None = None, **overrides) -> ProGen2Config:
    """Sizes from tensor shapes; heads and rotary_dim (invisible in shapes) from config.json,
    else from the released size with the same depth and width."""
    if "transformer.wte.weight" not in state or "transformer.h.0.attn.qkv_proj.weight" not in state:
        raise ProGen2LoadError("the state dict has no 'transformer.wte.weight' / 'transformer.h.0.attn.qkv_proj.weight'"
                               f" (first keys: {sorted(state)[:4]}); it is not a ProGen2 checkpoint.")
    vocab_size, n_embd = state["transformer.wte.weight"].shape
    n_layer = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("transformer.h."))
    shapes = {"n_layer": n_layer, "n_embd": int(n_embd), "vocab_size": int(vocab_size),
              "n_inner": int(state["transformer.h.0.mlp.fc_in.weight"].shape[0])}
    if raw_config:
        config = ProGen2Config.from_json_dict(raw_config, **overrides)
        wrong = {k: (getattr(config, k), v) for k, v in shapes.items()
                 if (config.inner_dim if k == "n_inner" else getattr(config, k)) != v}
        if wrong:
            raise ProGen2LoadError(f"config.json disagrees with the weights' shapes (config, weights): {wrong}.")
        return config
    matches = [c for c in PROGEN2_CONFIGS.values() if (c.n_layer, c.n_embd, c.inner_dim) ==
               (shapes["n_layer"], shapes["n_embd"], shapes["n_inner"])]
    if not matches and not {"n_head", "rotary_dim"} <= set(overrides):
        raise ProGen2LoadError(f"no config.json and no released ProGen2 size has {n_layer} layers of width {n_embd}; "
                               "pass n_head= and rotary_dim= (they cannot be read from the weights).")
    base = matches[0] if matches else ProGen2Config(n_layer=n_layer, n_embd=int(n_embd), n_head=overrides["n_head"],
                                                    rotary_dim=overrides["rotary_dim"])
    # medium, oas and base share depth and width; without config.json this takes medium's
    # n_positions (1024), so pass n_positions=2048 for a bare progen2-base weights file
    return replace(base, **{"vocab_size": shapes["vocab_size"], "n_inner": shapes["n_inner"], **overrides})


def load_progen2(folder_or_file: str | Path, name: str | None = None, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None, **overrides) -> ProteinLM:
    """A ProGen2 checkpoint as a `ProteinLM`, from a folder (config.json + model.safetensors or
    pytorch_model.bin, as in hugohrban/progen2-* or the extracted Salesforce tarballs) or one
    weights file. fp16 weights are cast to `dtype`; the model is built on `device` (default the
    CPU) in `dtype` and the weights copied in; `overrides` set config fields (e.g. n_head)."""
    if device is not None:
        check_device(device)
    path = Path(folder_or_file)
    if not path.exists():
        raise ProGen2LoadError(f"{path} does not exist; pass a ProGen2 checkpoint folder or weights file.")
    raw_config = None
    if path.is_dir():
        found = [path / f for f in WEIGHT_FILES if (path / f).is_file()]
        if not found:
            raise ProGen2LoadError(f"folder {path} has none of {', '.join(WEIGHT_FILES)}.")
        weights_file = found[0]
        if (path / "config.json").is_file():
            raw_config = json.loads((path / "config.json").read_text())
    else:
        weights_file = path
        if (path.parent / "config.json").is_file():
            raw_config = json.loads((path.parent / "config.json").read_text())
    state = _clean(_read_state_dict(weights_file))
    config = infer_config(state, raw_config, **overrides)
    with building_on(device, dtype):
        model = ProGen2LM(config)
    try:
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ProGen2LoadError(f"{weights_file} does not match the ProGen2 architecture ({first}).") from None
    model = model.to(dtype).eval()
    checksum = "sha256:" + weights.sha256_of(weights_file)
    label = name or (path.name if path.is_dir() else path.stem)
    return wrap_progen2(model, label, str(path), checksum=checksum)


def config_dict(config: ProGen2Config) -> dict:
    """A config.json body in the Salesforce spelling (what `from_json_dict` reads back)."""
    return {"model_type": "progen", **asdict(config)}


def load_progen2_model(name_or_path: str, name: str | None = None, device: str | torch.device | None = None,
                       dtype: torch.dtype = torch.float32) -> ProteinLM:
    """ProGen2 from a local folder or weights file, or a hub repository (`hugohrban/progen2-small`)."""
    return load_progen2(local_or_snapshot(name_or_path), name=name or slug(name_or_path), dtype=dtype, device=device)


__all__ = [
    "MP_NUM", "PROGEN2_TOKENS", "PROGEN2_ALPHABET", "PROGEN2_CONFIGS", "ProGen2Config", "ProGen2LM",
    "ProGen2LoadError", "wrap_progen2", "load_progen2", "load_progen2_model", "infer_config", "config_dict",
]
