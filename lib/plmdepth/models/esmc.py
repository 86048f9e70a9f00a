"""ESM C through transformers (`EsmcForMaskedLM`), in the main environment: EvolutionaryScale's weights converted.

EvolutionaryScale's ESM C state dict (the `.pth` file its package reads, e.g.
``data/weights/esmc_300m_2024_12_v0.pth`` of ``EvolutionaryScale/esmc-300m-2024-12``) maps one to
one onto transformers' `EsmcForMaskedLM` (`convert`):

================================================  ==============================================
EvolutionaryScale (esm/models/esmc.py)            transformers (models/esmc)
================================================  ==============================================
embed                                             esmc.embed_tokens
transformer.blocks.i.attn.layernorm_qkv.0         esmc.layers.i.input_layernorm
transformer.blocks.i.attn.layernorm_qkv.1 (q|k|v) esmc.layers.i.self_attn.{q,k,v}_proj (split in 3)
transformer.blocks.i.attn.{q_ln,k_ln}             esmc.layers.i.self_attn.{q_norm,k_norm}
transformer.blocks.i.attn.out_proj                esmc.layers.i.self_attn.o_proj
transformer.blocks.i.ffn.0                        esmc.layers.i.post_attention_layernorm
transformer.blocks.i.ffn.1 (gate|up)              esmc.layers.i.mlp.{gate,up}_proj (SwiGLU halves)
transformer.blocks.i.ffn.3                        esmc.layers.i.mlp.down_proj
transformer.norm                                  esmc.norm
sequence_head.{0,2,3}                             lm_head.{dense,layer_norm,decoder}
================================================  ==============================================

Both apply the released models' residual scaling, updates divided by sqrt(n_layers / 36), and
the same rotary embedding (non-interleaved, base 10,000). The head has 64 outputs for the
33-token vocabulary; as in the package's path (`evolutionaryscale`), the 33 tokens' outputs are
read (`adapter.adapt`). With this, ESM C needs no second environment; ESM3 still does.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from plmdepth.model import ProteinLM
from plmdepth.models.adapter import adapt
from plmdepth.models.device import building_on, check_device
from plmdepth.models.evolutionaryscale import RELEASES
from plmdepth.models.hub import ModelLoadError, snapshot
from plmdepth.models.tokenizer import alphabet_of

MAX_RESIDUES = 2046  # the context the package's API takes (2048 tokens, with <cls> and <eos>)
HEAD_WIDTH = 64  # every released ESM C has 64-wide attention heads
BLOCK = re.compile(r"^transformer\.blocks\.(\d+)\.(.+)$")
RENAME = {
    "attn.layernorm_qkv.0": "input_layernorm", "attn.q_ln": "self_attn.q_norm", "attn.k_ln": "self_attn.k_norm",
    "attn.out_proj": "self_attn.o_proj", "ffn.0": "post_attention_layernorm", "ffn.3": "mlp.down_proj",
}
TOP = {"embed.weight": "esmc.embed_tokens.weight", "transformer.norm.weight": "esmc.norm.weight",
       **{f"sequence_head.{i}.{p}": f"lm_head.{name}.{p}" for i, name in (("0", "dense"), ("2", "layer_norm"),
                                                                        ("3", "decoder")) for p in ("weight", "bias")}}


def is_esm3(state: dict) -> bool:
    """Whether a state dict is ESM3's (several input tracks) rather than ESM C's."""
    return any(k.startswith("encoder.") for k in state)


def convert(state: dict) -> tuple[dict, dict]:
    """(EsmcConfig fields, `EsmcForMaskedLM` state dict) of an EvolutionaryScale ESM C state dict."""
    if is_esm3(state):
        raise ModelLoadError("these are ESM3 weights, which run through EvolutionaryScale's package in the second "
                             "environment (.venv-esm); only ESM C converts to transformers.")
    if "embed.weight" not in state:
        raise ModelLoadError("not an ESM C state dict (no embed.weight).")
    out: dict[str, torch.Tensor] = {}
    blocks = set()
    for key, value in state.items():
        if key in TOP:
            out[TOP[key]] = value
            continue
        match = BLOCK.match(key)
        if not match:
            raise ModelLoadError(f"unexpected entry {key} in an ESM C state dict.")
        i, rest = match.groups()
        blocks.add(int(i))
        module, _, param = rest.rpartition(".")
        prefix = f"esmc.layers.{i}."
        if module == "attn.layernorm_qkv.1":
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{prefix}self_attn.{name}.{param}"] = part.clone()
        elif module == "ffn.1":
            gate, up = value.chunk(2, dim=0)  # SwiGLU: silu(first half) * second half
            out[f"{prefix}mlp.gate_proj.{param}"], out[f"{prefix}mlp.up_proj.{param}"] = gate.clone(), up.clone()
        elif module in RENAME:
            out[f"{prefix}{RENAME[module]}.{param}"] = value
        else:
            raise ModelLoadError(f"unexpected entry {key} in an ESM C state dict.")
    vocab, d_model = state["embed.weight"].shape
    config = {"vocab_size": vocab, "hidden_size": d_model, "num_hidden_layers": len(blocks),
              "num_attention_heads": d_model // HEAD_WIDTH, "num_key_value_heads": d_model // HEAD_WIDTH,
              "head_dim": HEAD_WIDTH, "intermediate_size": state["transformer.blocks.0.ffn.3.weight"].shape[1],
              "max_position_embeddings": MAX_RESIDUES + 2}
    return config, out


def weights_file(path: Path) -> Path:
    """The `.pth` file itself, or the one under a downloaded repository's ``data/weights/``."""
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or folder (an ESM C .pth state dict, or a downloaded "
                             "repository holding one under data/weights/).")
    if path.is_file():
        return path
    found = sorted((path / "data" / "weights").glob("*.pth"))
    if len(found) != 1:
        raise ModelLoadError(f"{path}: expected one .pth file under data/weights/, found {len(found)}.")
    return found[0]


def read_state(path: Path) -> dict:
    """The state dict of a weights file, read without running code and mapped lazily from disk."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - torch raises several kinds for a bad file
        raise ModelLoadError(f"{path}: not a readable weights file ({str(err).splitlines()[0]}).") from None


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def load_esmc(name_or_path: str, name: str | None = None, device=None, dtype=None) -> ProteinLM:
    """ESM C as `EsmcForMaskedLM`: a registered release (``esmc_300m``, ``esmc_600m``: EvolutionaryScale's
    repository from the hub cache or the hub), a `.pth` state dict, or a folder holding one under
    ``data/weights/``; weights read in `dtype` onto `device`."""
    from transformers import EsmcConfig, EsmcForMaskedLM, EsmcTokenizer


    if device is not None:
        check_device(device)
    release = RELEASES.get(str(name_or_path))
    if release is not None:
        path = snapshot(release.repo) / "data" / "weights" / release.weights_file
        source, licence, label = f"{release.repo} data/weights/{release.weights_file}", release.licence, release.key
    else:
        path = weights_file(Path(name_or_path))
        source, licence, label = str(name_or_path), "unknown", name or path.stem
    config, state = convert(read_state(path))
    with building_on(device, dtype):
        hf_model = EsmcForMaskedLM(EsmcConfig(**config))
    hf_model.load_state_dict(state, strict=True, assign=device is None and dtype is None)
    hf_model = hf_model.to(device=device or "cpu", dtype=dtype or next(iter(state.values())).dtype).eval()
    alphabet = alphabet_of(EsmcTokenizer(), "masked")
    return adapt(hf_model, alphabet, name=name or label, source=source, objective="masked", family="ESM C",
                 licence=licence, checksum=file_checksum(path), max_residues=MAX_RESIDUES)
