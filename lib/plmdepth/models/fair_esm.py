"""ESM-2 loaded through fair-esm (`esm` 2.0.0) behind the `ProteinLM` interface.

fair-esm's `ESM2.forward(tokens, repr_layers=...)` returns a dict, and its `TransformerLayer`
works time-first, ``(T, B, E)``, with a boolean ``self_attn_padding_mask`` (True = padding).
`ProteinLM` needs a forward that returns ``.logits`` and batch-first blocks, so this module
adds a thin adapter and nothing else:

- `FairEsmLayer` wraps one fair-esm `TransformerLayer`: ``forward(h[B,T,E], padding_mask=...)``
  transposes in, calls the layer's own forward, transposes out. Its `mid` submodule (an
  identity) is called with the batch-first stream ``h + a`` that enters the layer's
  ``final_layer_norm``, so `ProteinLM.block_parts` observes the attention and MLP updates
  batch-first (`SUBLAYERS`: ``"mid"``; the updates part skipping zeroes are the outputs of
  ``layer.self_attn`` and ``layer.fc2``).
- `FairEsmLM` wraps an `ESM2`: ``forward(input_ids, attention_mask=None)`` is `ESM2.forward`'s
  computation line by line (embed_scale, token-dropout rescaling, padding zeroed, the
  blocks, ``emb_layer_norm_after``, ``lm_head``) with the blocks called as
  ``self.layers[l](h, padding_mask=...)``. Its logits equal ``ESM2.forward(tokens)["logits"]``
  bit for bit (tests/test_fair_esm.py).

`load_fair_esm` loads a fair-esm name (``esm2_t6_8M_UR50D``) or a local ``.pt`` file;
`hf_to_fair_esm` builds a fair-esm ESM2 with the weights of a transformers `EsmForMaskedLM`
(how the tests compare the two loaders on the same random weights).

Differences between the two implementations, all handled here:
- layer-norm eps: fair-esm's norms are ``torch.nn.LayerNorm`` (eps 1e-5; apex's fused norm if
  installed, also 1e-5); transformers uses ``config.layer_norm_eps`` (1e-5 in the released
  ESM-2 configs, 1e-12 by default). `hf_to_fair_esm` sets every norm's eps from the config.
- MLP width: fair-esm hard-codes ``4 * embed_dim``; `hf_to_fair_esm` replaces fc1/fc2 when
  ``config.intermediate_size`` differs (tiny test configs; every released ESM-2 is 4x).
- token dropout: both zero the ``<mask>`` embeddings and scale by 0.88 / (1 - observed mask
  ratio); fair-esm counts the length as tokens != ``<pad>``, transformers as
  ``attention_mask.sum()``. Identical when the attention mask is the non-pad mask, which
  `FairEsmLM.forward` checks.
- attention: fair-esm masks padded keys with -inf in an explicit softmax (and skips the
  mask when a batch has no padding); transformers adds its own mask in SDPA. Same maths,
  float rounding differs (~1e-7).
- rotary: both compute ``inv_freq = 1 / 10000^(2i/d)`` and apply it to the query after the
  1/sqrt(d) scaling; fair-esm keeps one copy per layer, transformers one per model. The
  copies are derived, not loaded.
"""

from __future__ import annotations

import argparse
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from plmdepth import weights
from plmdepth.model import ModelInfo, ProteinLM
from plmdepth.model import n_params, state_dict_checksum
from plmdepth.models.architectures import ESM_ALPHABET, ESM_TOKENS
from plmdepth.models.hub import ModelLoadError, hub_reachable

FAIR_ESM_HOST = "dl.fbaipublicfiles.com"
FAIR_ESM_URL = f"https://{FAIR_ESM_HOST}/fair-esm/models/{{name}}.pt"
MAX_RESIDUES = 1022  # fair-esm ESM-2 was trained on 1024 positions, <cls> and <eos> included

# transformers `EsmForMaskedLM` state-dict key -> fair-esm `ESM2` key ({i} = block index,
# {p} = weight or bias). Not copied: `esm.rotary_embeddings.inv_freq` (fair-esm derives its
# per-layer `layers.{i}.self_attn.rot_emb.inv_freq` from the head size; the tests check the two
# are equal) and `esm.embeddings.position_ids` (non-persistent). `lm_head.decoder.weight` goes
# to `lm_head.weight`, which fair-esm ties to `embed_tokens.weight` (so does transformers; an
# untied source is copied into an untied `lm_head.weight`).
KEY_MAP = {
    "esm.embeddings.word_embeddings.weight": "embed_tokens.weight",
    "esm.encoder.layer.{i}.attention.self.query.{p}": "layers.{i}.self_attn.q_proj.{p}",
    "esm.encoder.layer.{i}.attention.self.key.{p}": "layers.{i}.self_attn.k_proj.{p}",
    "esm.encoder.layer.{i}.attention.self.value.{p}": "layers.{i}.self_attn.v_proj.{p}",
    "esm.encoder.layer.{i}.attention.output.dense.{p}": "layers.{i}.self_attn.out_proj.{p}",
    "esm.encoder.layer.{i}.attention.LayerNorm.{p}": "layers.{i}.self_attn_layer_norm.{p}",
    "esm.encoder.layer.{i}.intermediate.dense.{p}": "layers.{i}.fc1.{p}",
    "esm.encoder.layer.{i}.output.dense.{p}": "layers.{i}.fc2.{p}",
    "esm.encoder.layer.{i}.LayerNorm.{p}": "layers.{i}.final_layer_norm.{p}",
    "esm.encoder.emb_layer_norm_after.{p}": "emb_layer_norm_after.{p}",
    "esm.contact_head.regression.{p}": "contact_head.regression.{p}",
    "lm_head.dense.{p}": "lm_head.dense.{p}",
    "lm_head.layer_norm.{p}": "lm_head.layer_norm.{p}",
    "lm_head.decoder.weight": "lm_head.weight",
    "lm_head.bias": "lm_head.bias",
}
DERIVED_HF_KEYS = ("esm.rotary_embeddings.inv_freq", "esm.embeddings.position_ids")


def _key_pattern(template: str) -> re.Pattern:
    body = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(f"^{body}$")


_KEY_PATTERNS = [(_key_pattern(hf), fair) for hf, fair in KEY_MAP.items()]


def fair_esm_key(hf_key: str) -> str | None:
    """The fair-esm `ESM2` key of a transformers `EsmForMaskedLM` key (None if not copied)."""
    for pattern, fair in _KEY_PATTERNS:
        match = pattern.match(hf_key)
        if match:
            return fair.format(**match.groupdict())
    return None


def _esm2_class():
    from esm.model.esm2 import ESM2

    return ESM2


# ------------------------------------------------------------------------ adapter
# pre-LN: `mid` sees h + a batch-first; the attention update is `self_attn`'s output (time-first), the MLP's `fc2`'s
SUBLAYERS = {"kind": "pre-LN", "mid": "mid", "attention": "layer.self_attn", "mlp": "layer.fc2"}


@dataclass
class FairEsmOutput:
    """What `FairEsmLM.forward` returns: the logits [B, T, 33]."""

    logits: torch.Tensor


class FairEsmLayer(nn.Module):
    """One fair-esm `TransformerLayer` seen batch-first: ``h[B,T,E] -> h[B,T,E]``.

    `mid` is an identity called with ``(h + a)`` batch-first, the stream entering the layer's
    ``final_layer_norm`` (observed through a hook that lives only during the call, so the
    fair-esm module itself is left as it was).
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer
        self.mid = nn.Identity()

    def forward(self, h: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        def observe_mid(module, args):
            self.mid(args[0].transpose(0, 1))  # returns None: the norm's input is left as it is

        handle = self.layer.final_layer_norm.register_forward_pre_hook(observe_mid)
        try:
            x, _ = self.layer(h.transpose(0, 1), self_attn_padding_mask=padding_mask)
        finally:
            handle.remove()
        return x.transpose(0, 1)


class FairEsmLM(nn.Module):
    """A fair-esm `ESM2` with batch-first blocks and a forward that returns ``.logits``."""

    def __init__(self, esm2: nn.Module):
        super().__init__()
        if not isinstance(esm2, _esm2_class()):
            raise TypeError(f"expected an esm.model.esm2.ESM2, not {type(esm2).__name__}")
        self.esm2 = esm2
        self.layers = nn.ModuleList(FairEsmLayer(layer) for layer in esm2.layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> FairEsmOutput:
        """`ESM2.forward(input_ids)["logits"]`, through `self.layers` (see `ESM2.forward`)."""
        m, tokens = self.esm2, input_ids
        assert tokens.ndim == 2
        padding_mask = tokens.eq(m.padding_idx)  # B, T
        if attention_mask is not None and not torch.equal(attention_mask.bool(), ~padding_mask):
            raise ValueError("fair-esm takes padding from the <pad> tokens; attention_mask must be 0 exactly there")

        x = m.embed_scale * m.embed_tokens(tokens)
        if m.token_dropout:
            x = x.masked_fill((tokens == m.mask_idx).unsqueeze(-1), 0.0)
            mask_ratio_train = 0.15 * 0.8
            src_lengths = (~padding_mask).sum(-1)
            mask_ratio_observed = (tokens == m.mask_idx).sum(-1).to(x.dtype) / src_lengths
            x = x * (1 - mask_ratio_train) / (1 - mask_ratio_observed)[:, None, None]
        x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))

        if not padding_mask.any():
            padding_mask = None
        for layer in self.layers:
            x = layer(x, padding_mask=padding_mask)

        # ESM2 normalises time-first then transposes; x.transpose(0, 1) is that same tensor
        x = m.emb_layer_norm_after(x.transpose(0, 1)).transpose(0, 1)
        return FairEsmOutput(logits=m.lm_head(x))


def check_alphabet(alphabet) -> None:
    """Raise unless a fair-esm alphabet is `registry.ESM_ALPHABET` (same 33 tokens, same order)."""
    tokens = tuple(alphabet.all_toks)
    if tokens != ESM_TOKENS:
        raise ValueError(f"fair-esm alphabet {tokens} differs from plmdepth's ESM alphabet {ESM_TOKENS}")
    specials = {"padding_idx": "<pad>", "mask_idx": "<mask>", "cls_idx": "<cls>", "eos_idx": "<eos>",
                "unk_idx": "<unk>"}
    for attr, token in specials.items():
        if getattr(alphabet, attr) != ESM_ALPHABET.id(token):
            raise ValueError(f"fair-esm alphabet has {attr}={getattr(alphabet, attr)}, not {ESM_ALPHABET.id(token)}")
    if not (alphabet.prepend_bos and alphabet.append_eos) or alphabet.use_msa:
        raise ValueError("fair-esm ESM-2 alphabet must frame sequences as <cls> ... <eos> (ESM-1b architecture)")


def wrap_fair_esm(esm2_model: nn.Module, name: str, source: str, objective: str = "masked",
                  licence: str = "MIT", checksum: str | None = None) -> ProteinLM:
    """A fair-esm `ESM2` as a `ProteinLM` (pre-LN; final norm `emb_layer_norm_after`)."""
    adapter = FairEsmLM(esm2_model)
    check_alphabet(esm2_model.alphabet)
    info = ModelInfo(name=name, source=source, family="ESM-2", objective=objective, modality="sequence",
                     n_layers=esm2_model.num_layers, d_model=esm2_model.embed_dim, n_params=n_params(esm2_model),
                     licence=licence, checksum=checksum or state_dict_checksum(esm2_model), norm="pre-LN")
    return ProteinLM(adapter, adapter.layers, esm2_model.emb_layer_norm_after, esm2_model.lm_head, ESM_ALPHABET,
                     info, max_residues=MAX_RESIDUES, sublayers=SUBLAYERS)


# ------------------------------------------------------------------------ loading
def _torch_load(path: Path, trust_pickle: bool):
    if trust_pickle:
        return torch.load(path, map_location="cpu", weights_only=False)
    # fair-esm checkpoints pickle their config as argparse.Namespace; torch >= 2.6 loads
    # weights_only by default, which refuses it unless allow-listed.
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_local(path: Path, trust_pickle: bool):
    """`esm.pretrained.load_model_and_alphabet_local`, with the contact-regression file optional
    (contacts are not used here) and the checkpoint read with weights_only unless trusted."""
    import esm.pretrained

    regression = path.with_name(path.stem + "-contact-regression.pt")
    try:
        model_data = _torch_load(path, trust_pickle)
        regression_data = _torch_load(regression, trust_pickle) if regression.is_file() else None
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        first = next((line for line in lines if "Unsupported global" in line), lines[-1] if lines else "")
        raise ModelLoadError(
            f"{path} pickles more than tensors and an argparse.Namespace ({first}); if you trust the file, "
            "pass trust_pickle=True to load it with torch.load(weights_only=False).") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise ModelLoadError(f"could not read {path} as a fair-esm checkpoint ({type(err).__name__}: "
                             f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}).") from None
    if not isinstance(model_data, dict) or "cfg" not in model_data or "model" not in model_data:
        raise ModelLoadError(f"{path} is not a fair-esm ESM-2 checkpoint (no 'cfg'/'model' entries); pass an "
                             "esm2_*.pt file from https://dl.fbaipublicfiles.com/fair-esm/models/.")
    # fair-esm picks the ESM-2 builder by the name's "esm2" prefix; a 'cfg' entry means ESM-2
    model_name = path.stem if path.stem.startswith("esm2") else f"esm2_{path.stem}"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Regression weights not found")
            return esm.pretrained.load_model_and_alphabet_core(model_name, model_data, regression_data)
    except Exception as err:  # noqa: BLE001 - missing/unexpected keys, bad cfg: one line
        first = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
        first = first if len(first) <= 200 else first[:197] + "..."
        raise ModelLoadError(f"{path} does not load as a fair-esm ESM-2 ({first}); pass an unmodified "
                             "esm2_*.pt file from https://dl.fbaipublicfiles.com/fair-esm/models/.") from None


def _hub_cache(name: str) -> tuple[Path, Path]:
    folder = Path(torch.hub.get_dir(), "checkpoints")
    return folder / f"{name}.pt", folder / f"{name}-contact-regression.pt"


def _load_hub(name: str):
    import esm.pretrained

    if not name.startswith("esm2_") or not callable(getattr(esm.pretrained, name, None)):
        raise ModelLoadError(f"'{name}' is not a fair-esm ESM-2 model; use a name such as esm2_t6_8M_UR50D "
                             "or the path of a local .pt file.")
    url = FAIR_ESM_URL.format(name=name)
    what_to_do = (f"download {url} (and {name}-contact-regression.pt, optional) where the network is reachable "
                  "and pass the .pt file's path")
    cached = all(p.is_file() for p in _hub_cache(name))
    if not cached and not hub_reachable(FAIR_ESM_HOST):
        raise ModelLoadError(f"fair-esm model '{name}' is not in the torch hub cache ({_hub_cache(name)[0].parent}) "
                             f"and {FAIR_ESM_HOST} cannot be reached from here; {what_to_do}.")
    try:
        return esm.pretrained.load_model_and_alphabet(name)
    except Exception as err:  # noqa: BLE001 - fair-esm raises bare Exception, URLError, RuntimeError, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"could not load fair-esm model '{name}' ({first}); {what_to_do}.") from None


def load_fair_esm(name_or_path: str, name: str | None = None, objective: str = "masked",
                  trust_pickle: bool = False) -> ProteinLM:
    """ESM-2 through fair-esm: an `esm.pretrained` name (needs the network unless cached in the
    torch hub folder) or a local ``.pt`` checkpoint, as a `ProteinLM` in eval mode."""
    text = str(name_or_path)
    path = Path(text)
    if path.exists() or text.endswith(".pt"):
        if not path.is_file():
            raise ModelLoadError(f"no fair-esm checkpoint file at {path}; pass the path of an esm2_*.pt file.")
        model, alphabet = _load_local(path, trust_pickle)
        source, checksum = str(path), "sha256:" + weights.sha256_of(path)
    else:
        model, alphabet = _load_hub(text)
        cached = _hub_cache(text)[0]
        source = f"fair-esm:{text} ({FAIR_ESM_URL.format(name=text)})"
        checksum = "sha256:" + weights.sha256_of(cached) if cached.is_file() else state_dict_checksum(model)
    if not isinstance(model, _esm2_class()):
        raise ModelLoadError(f"'{text}' loads as a fair-esm {type(model).__name__}, not ESM-2; "
                             "only ESM-2 is supported.")
    check_alphabet(alphabet)
    return wrap_fair_esm(model.eval(), name or (path.stem if path.suffix == ".pt" else text), source,
                         objective=objective, checksum=checksum)


# ------------------------------------------------------------ transformers -> fair-esm
def _layer_norms(module: nn.Module):
    return [m for m in module.modules()
            if isinstance(getattr(m, "eps", None), float) and hasattr(m, "normalized_shape")]


def hf_to_fair_esm(hf_model) -> nn.Module:
    """A fair-esm `ESM2` with the weights of a transformers `EsmForMaskedLM` (see `KEY_MAP`).

    Same depth, width, heads, alphabet and token dropout; every layer norm gets the config's
    ``layer_norm_eps``; fc1/fc2 follow ``config.intermediate_size``. Raises ValueError for
    configurations fair-esm's ESM2 cannot express (absolute positions, an embedding layer
    norm, another vocabulary or rotary base).
    """
    import esm

    cfg = hf_model.config
    problems = []
    if getattr(cfg, "position_embedding_type", "absolute") != "rotary":
        problems.append("position_embedding_type must be 'rotary'")
    if getattr(cfg, "emb_layer_norm_before", False):
        problems.append("emb_layer_norm_before must be False (ESM2 has no embedding layer norm)")
    if cfg.vocab_size != len(ESM_TOKENS) or cfg.pad_token_id != 1 or cfg.mask_token_id != 32:
        problems.append("the vocabulary must be the 33 ESM tokens with <pad>=1 and <mask>=32")
    if float(getattr(cfg, "rope_theta", 10000.0) or 10000.0) != 10000.0:
        problems.append("rope_theta must be 10000")
    if getattr(cfg, "is_decoder", False):
        problems.append("is_decoder must be False")
    if problems:
        raise ValueError("cannot express this EsmForMaskedLM as a fair-esm ESM2: " + "; ".join(problems))

    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    check_alphabet(alphabet)
    model = _esm2_class()(num_layers=cfg.num_hidden_layers, embed_dim=cfg.hidden_size,
                          attention_heads=cfg.num_attention_heads, alphabet=alphabet,
                          token_dropout=bool(cfg.token_dropout))
    if cfg.intermediate_size != 4 * cfg.hidden_size:
        for layer in model.layers:
            layer.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
            layer.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
            layer.ffn_embed_dim = cfg.intermediate_size
    for norm in _layer_norms(model):
        norm.eps = float(cfg.layer_norm_eps)

    source = hf_model.state_dict()
    if not torch.equal(source["lm_head.decoder.weight"], source["esm.embeddings.word_embeddings.weight"]):
        model.lm_head.weight = nn.Parameter(torch.empty_like(model.lm_head.weight))  # untied, as the source is
    target = model.state_dict()
    mapped = {fair_esm_key(k): v for k, v in source.items() if fair_esm_key(k) is not None}
    unused = {k for k in source if fair_esm_key(k) is None} - set(DERIVED_HF_KEYS)
    derived = {k for k in target if k.endswith("rot_emb.inv_freq")}
    missing = set(target) - set(mapped) - derived
    if unused or missing or set(mapped) - set(target):
        raise ValueError(f"weight mapping incomplete: transformers keys not copied {sorted(unused)}, "
                         f"fair-esm keys not filled {sorted(missing)}, unknown {sorted(set(mapped) - set(target))}")
    for key, value in mapped.items():
        if target[key].shape != value.shape:
            raise ValueError(f"{key}: fair-esm shape {tuple(target[key].shape)} != transformers {tuple(value.shape)}")
    model.load_state_dict({**{k: target[k] for k in derived}, **mapped}, strict=True)
    param = next(hf_model.parameters())
    return model.to(device=param.device, dtype=param.dtype).eval()
