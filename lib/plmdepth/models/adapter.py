"""Any transformers masked or causal language model as a `ProteinLM`, read from its own structure.

    lm = adapt(hf_model, alphabet, name="my-model", source="folder", objective="masked")

One traced forward pass of the model on a short sequence finds, with nothing named per
architecture:

- the **blocks**: the `nn.ModuleList` of the base model holding `num_hidden_layers` modules;
- the **final norm**: the one module of the base model that runs after the last block (none in
  post-LN encoders such as BERT, whose blocks end in their own norm);
- the **head**: the modules outside the base model that run after it, in the order they run
  (BERT's `cls`; ELECTRA's `generator_predictions` then `generator_lm_head`; ModernBERT's
  `head`, `drop`, `decoder`);
- whether every block receives the **same arguments** (attention mask, rotary tables) or each
  its own (ModernBERT alternates global and local attention): `ProteinLM` then records them
  per block.

Embeddings, position handling (absolute, rotary tables passed into each block, relative) and
attention masks stay the model's own: `ProteinLM.embed` runs the model's forward up to block 0.

What the structure does not say is how a block lays out its **sublayers**: `LAYOUTS` holds, per
`model_type`, which module's output is the attention update and which the MLP update (what
part skipping sets to zero), and where the stream between them is observed. An architecture
missing from it is still adapted; its sublayers are then refused in one sentence.

A head that scores more outputs than the tokenizer has tokens (ESM C: 64 for 33) is read on
the tokens' outputs only, in the readout and the model's own logits alike (the others belong to
no token), so that "full vocabulary" means the tokens for every model.

Finally the adapter's readout of its own last residual stream is compared with the model's
logits: a model whose forward does more than a final norm and a head after its last block
(a logit scale, a soft cap) is refused rather than measured wrongly.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from plmdepth.model import FirstOutputs, ModelInfo, ProteinLM, n_params, state_dict_checksum
from plmdepth.models.device import check_device, hf_placement
from plmdepth.models.hub import ModelLoadError, from_pretrained, quiet_transformers, slug, trusts_remote_code
from plmdepth.models.tokenizer import alphabet_of
from plmdepth.tokens import WORD_MARKS, Alphabet, encode


@dataclass(frozen=True)
class Layout:
    """How a block's sublayers sit. `attention` and `mlp` name the modules (inside a block) whose
    output, or its first element, is that sublayer's update; `mid` (pre-LN) the module whose
    input is the stream after the attention update; `mlp_base_of` (post-LN) the module whose
    second input is the stream the MLP update is added to. `norm` is what ModelInfo reports."""

    norm: str  # "pre-LN", "post-LN" or "parallel" (both sublayers read the block's input)
    attention: str
    mlp: str
    mid: str | None = None
    mlp_base_of: str | None = None

    def sublayers(self) -> dict:
        kind = "parallel" if self.norm == "parallel" else self.norm
        out = {"kind": kind, "attention": self.attention, "mlp": self.mlp}
        if self.mid:
            out["mid"] = self.mid
        if self.mlp_base_of:
            out["mlp_base_of"] = self.mlp_base_of
        return out


POST_LN = Layout("post-LN", "attention.output.dense", "output.dense", mlp_base_of="output")
DECODER = Layout("pre-LN", "self_attn", "mlp", mid="post_attention_layernorm")  # Llama and its descendants

LAYOUTS: dict[str, Layout] = {
    "esm": Layout("pre-LN", "attention.output.dense", "output.dense", mid="LayerNorm"),
    "esmc": DECODER,
    "bert": POST_LN,
    "roberta": POST_LN,
    "electra": POST_LN,
    "roformer": POST_LN,
    "modernbert": Layout("pre-LN", "attn", "mlp", mid="mlp_norm"),
    "gpt2": Layout("pre-LN", "attn", "mlp", mid="ln_2"),
    "llama": DECODER,
    "mistral": DECODER,
    "qwen2": DECODER,
    "gpt_neox": Layout("parallel", "attention", "mlp"),  # use_parallel_residual=True (the default)
}


def layout_of(config) -> Layout | None:
    """The sublayer layout of a config's `model_type` (GPT-NeoX: by its `use_parallel_residual`)."""
    if config.model_type == "gpt_neox" and not getattr(config, "use_parallel_residual", True):
        return Layout("pre-LN", "attention", "mlp", mid="post_attention_layernorm")
    return LAYOUTS.get(config.model_type)


PROBE = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"  # a short real sequence to trace and check the model on


def probe_batch(alphabet: Alphabet, objective: str, n: int = 12):
    """Two rows (one shorter, so that padding and the attention mask are exercised)."""
    ids, sequences = ["probe", "probe-short"], [PROBE[:n], PROBE[2:n - 3]]
    if hasattr(alphabet, "encode"):
        return alphabet.encode(ids, sequences, autoregressive=objective == "autoregressive")
    return encode(alphabet, ids, sequences, autoregressive=objective == "autoregressive")


@dataclass
class Structure:
    """What the traced pass found."""

    blocks: nn.ModuleList
    final_norm: nn.Module | None
    head: nn.Module
    per_layer_arguments: bool


def _blocks(base: nn.Module, n_layers: int) -> tuple[str, nn.ModuleList]:
    lists = [(name, m) for name, m in base.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n_layers]
    if not lists:
        raise ModelLoadError(f"{type(base).__name__} holds no list of {n_layers} blocks (num_hidden_layers); "
                             "the adapter needs the blocks as one nn.ModuleList.")
    return max(lists, key=lambda item: sum(p.numel() for p in item[1].parameters()))


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return a is b
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - objects without a usable ==
        return a is b


@torch.no_grad()
def trace(hf_model: nn.Module, batch, forward_kwargs: dict) -> Structure:
    """Find the blocks, final norm and head of `hf_model` from one forward pass on `batch`."""
    base = hf_model.base_model
    if base is hf_model:
        raise ModelLoadError(f"{type(hf_model).__name__} has no language-model head; load it with "
                             "AutoModelForMaskedLM or AutoModelForCausalLM.")
    base_name = next(name for name, m in hf_model.named_children() if m is base)
    list_name, blocks = _blocks(base, hf_model.config.num_hidden_layers)
    blocks_path = f"{base_name}.{list_name}"
    started: list[str] = []
    block_args: list = []
    last_block_done = {}
    handles = []
    names = dict(hf_model.named_modules())

    for name, module in names.items():
        if name.startswith(blocks_path + ".") and name.count(".") > blocks_path.count(".") + 1:
            continue  # inside a block
        handles.append(module.register_forward_pre_hook(lambda m, a, name=name: started.append(name)))
    for block in blocks:
        handles.append(block.register_forward_pre_hook(
            lambda m, args, kwargs: block_args.append((args[1:], kwargs)), with_kwargs=True))

    def mark_last_block_done(module, args, out):
        last_block_done.setdefault("at", len(started))

    handles.append(blocks[-1].register_forward_hook(mark_last_block_done))
    try:
        hf_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **forward_kwargs)
    finally:
        for handle in handles:
            handle.remove()
    after = started[last_block_done["at"]:]

    def top_level(candidates: list[str]) -> list[str]:
        chosen = []
        for name in candidates:
            if name in chosen or any(name.startswith(c + ".") for c in chosen):
                continue
            if isinstance(names[name], (nn.Dropout, nn.Identity)):
                continue
            chosen.append(name)
        return chosen

    in_base = top_level([n for n in after if n.startswith(base_name + ".") and not blocks_path.startswith(n)])
    if len(in_base) > 1:
        raise ModelLoadError(f"{type(base).__name__} runs {', '.join(in_base)} after its last block; the adapter "
                             "reads at most one module there (the final norm).")
    head_names = top_level([n for n in after if n and n != base_name and not n.startswith(base_name + ".")
                            and "." not in n])
    head_names = [n for n in dict.fromkeys(n for n in started if n in head_names)]  # in the order they start
    if not head_names:
        raise ModelLoadError(f"{type(hf_model).__name__} runs no head after its base model.")
    head = names[head_names[0]] if len(head_names) == 1 else nn.Sequential(
        OrderedDict((n, names[n]) for n in head_names))
    per_layer = any(not _same(block_args[0], other) for other in block_args[1:])
    return Structure(blocks, names[in_base[0]] if in_base else None, head, per_layer)


def context_tokens(config) -> int | None:
    """How many tokens the model's positions cover (None: no limit in its config). RoBERTa-style
    positions start after the padding id."""
    n = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if n is not None and config.model_type in ("roberta", "camembert", "xlm-roberta"):
        n -= (config.pad_token_id or 0) + 1
    return n


def family_of(config) -> str:
    archs = getattr(config, "architectures", None) or []
    return archs[0] if archs else config.model_type


@torch.no_grad()
def check_readout(lm: ProteinLM, batch, tolerance: float = 1e-4) -> float:
    """The largest difference between the model's own logits and the adapter's readout of its
    blocks, relative to the logits' scale; refused above `tolerance` (float32) or 5e-2 (half)."""
    own = lm.forward(batch).double()
    h = lm.embed(batch)
    for layer in range(lm.n_layers):
        h = lm.block(layer, h, batch)
    mine = lm.readout(h).double()
    real = batch.attention_mask.bool()
    scale = own[real].abs().max().clamp_min(1.0)
    err = float((mine - own)[real].abs().max() / scale)
    limit = tolerance if lm.network.dtype in (torch.float32, torch.float64) else 5e-2
    if not err <= limit:
        raise ModelLoadError(
            f"the adapter's readout of {lm.info.name}'s last block differs from its own logits by {err:.2g} "
            f"(relative); its forward does more after the last block than a final norm and a head, so it "
            f"needs its own layout (plmdepth/models/adapter.py).")
    return err


def adapt(hf_model: nn.Module, alphabet: Alphabet, *, name: str, source: str, objective: str,
          family: str | None = None, licence: str = "unknown", checksum: str | None = None,
          max_residues: int | None = None, check: bool = True) -> ProteinLM:
    """A loaded transformers LM as a `ProteinLM`; `alphabet` maps residues to its tokens.

    `max_residues` defaults to the positions the config covers minus the alphabet's framing
    tokens (one residue a token) or, for a tokenizer that cuts sequences itself, is bounded in
    tokens when a sequence is encoded. `check` compares the readout with the model's logits
    (`check_readout`)."""
    config = hf_model.config
    hf_model.eval()
    forward_kwargs = {"use_cache": False} if hasattr(config, "use_cache") else {}
    probe = probe_batch(alphabet, objective).to(next(hf_model.parameters()).device)
    structure = trace(hf_model, probe, forward_kwargs)
    layout = layout_of(config)
    norm = layout.norm if layout else ("pre-LN" if structure.final_norm is not None else "post-LN")
    info = ModelInfo(name=name, source=source, family=family or family_of(config), objective=objective,
                     modality="sequence", n_layers=config.num_hidden_layers, d_model=config.hidden_size,
                     n_params=n_params(hf_model), licence=licence, checksum=checksum or state_dict_checksum(hf_model),
                     norm="parallel" if norm == "parallel" else norm)
    if max_residues is None:
        tokens = context_tokens(config)
        if hasattr(alphabet, "encode"):  # a token holds at most `longest` residues; the exact check is in tokens
            longest = max([len(WORD_MARKS.sub("", t)) for t in alphabet.tokens if t and t.strip("\u2581\u0120#").isalpha()]
                          or [1])
            max_residues = 10**9 if tokens is None else tokens * longest
        else:
            max_residues = 10**9 if tokens is None else tokens - len(alphabet.prefix) - len(alphabet.suffix)
    head, n_tokens, vocabulary_outputs = structure.head, len(alphabet.tokens), None
    n_outputs = hf_model.get_output_embeddings().weight.shape[0]
    if n_outputs > n_tokens:  # outputs past the vocabulary belong to no token (ESM C: 64 for 33): read the tokens'
        head, vocabulary_outputs = nn.Sequential(OrderedDict(head=head, tokens=FirstOutputs(n_tokens))), n_tokens
    lm = ProteinLM(hf_model, structure.blocks, structure.final_norm, head, alphabet, info,
                   max_residues=max_residues, forward_kwargs=forward_kwargs,
                   sublayers=layout.sublayers() if layout else None,
                   per_layer_arguments=structure.per_layer_arguments, vocabulary_outputs=vocabulary_outputs)
    if check:
        check_readout(lm, probe)
    return lm


# ---------------------------------------------------------------------------------------- loading
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model",
                   "spiece.model")

def objective_of(config: dict) -> str:
    """autoregressive or masked, from a config's (config.json's) architecture class or, without
    one, from which of transformers' auto classes knows its model type."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    for arch in config.get("architectures") or []:
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "autoregressive"
        if arch.endswith("ForMaskedLM"):
            return "masked"
    if config.get("is_decoder"):
        return "autoregressive"
    causal = config.get("model_type") in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    masked = config.get("model_type") in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return "autoregressive" if causal and not masked else "masked"


def licence_of(folder) -> str:
    """The `license:` of a hub model card (README.md front matter) in `folder`, else "unknown"."""
    from pathlib import Path

    card = Path(folder, "README.md") if folder is not None else None
    if card is None or not card.is_file():
        return "unknown"
    lines = card.read_text(errors="replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return "unknown"
    for line in lines[1:]:
        if line.strip() == "---":
            break
        if line.startswith("license:"):
            return line.split(":", 1)[1].strip().strip("'\"") or "unknown"
    return "unknown"


def revision_of(repo_id: str) -> str:
    """The commit of a hub repository's cached snapshot (what was read), or "unknown"."""
    from pathlib import Path

    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    return Path(cached).parent.name if isinstance(cached, str) else "unknown"


def load_transformers(name_or_path: str, name: str | None = None, objective: str | None = None,
                      device=None, dtype=None, trust_remote_code: bool | None = None, family: str | None = None,
                      licence: str | None = None) -> ProteinLM:
    """Any transformers masked or causal LM from a hub id (or the local hub cache) or a
    save_pretrained folder, with its own tokenizer (`AutoTokenizer`), as a `ProteinLM`.

    A model whose architecture is defined by Python code in its repository (`auto_map` in its
    config) is refused unless `trust_remote_code` (default: `--trust-remote-code`, i.e. the
    PLMDEPTH_TRUST_REMOTE_CODE environment variable), which runs that code; a warning names it."""
    import logging
    from pathlib import Path

    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    if device is not None:
        check_device(device)
    trust_remote_code = trusts_remote_code() if trust_remote_code is None else trust_remote_code
    config = from_pretrained(AutoConfig, name_or_path, trust_remote_code=trust_remote_code)
    code = sorted({str(v) for v in (getattr(config, "auto_map", None) or {}).values()})
    if code and not trust_remote_code:
        raise ModelLoadError(f"'{name_or_path}' defines its architecture in Python code shipped with it (auto_map in "
                             "config.json); pass --trust-remote-code to run that code, if you trust its source.")
    if code:
        logging.getLogger(__name__).warning("running the Python code shipped with %s: %s", name_or_path,
                                            ", ".join(code))
    objective = objective or objective_of(config.to_dict())
    auto = AutoModelForCausalLM if objective == "autoregressive" else AutoModelForMaskedLM
    try:
        with quiet_transformers():
            hf_model = from_pretrained(auto, name_or_path, trust_remote_code=trust_remote_code,
                                       **hf_placement(device, dtype))
    except ValueError as err:
        raise ModelLoadError(f"'{name_or_path}' ({config.model_type}) has no {auto.__name__.removeprefix('AutoModelFor')} "
                             f"class in transformers ({str(err).splitlines()[0]}).") from None
    if device is not None:
        hf_model = hf_model.to(device)
    local = Path(name_or_path).exists()
    if local and not any(Path(name_or_path, f).is_file() for f in TOKENIZER_FILES):
        raise ModelLoadError(f"folder {name_or_path} has no tokenizer ({', '.join(TOKENIZER_FILES[:3])}, ...); a model "
                             "is read with the tokenizer it was trained with, saved next to its weights "
                             "(tokenizer.save_pretrained).")
    try:
        tokenizer = from_pretrained(AutoTokenizer, name_or_path, trust_remote_code=trust_remote_code)
    except ModelLoadError:
        raise
    except Exception as err:  # noqa: BLE001 - tokenizer classes raise many kinds
        raise ModelLoadError(f"'{name_or_path}': its tokenizer could not be loaded ({str(err).splitlines()[0]}).") \
            from None
    try:
        alphabet = alphabet_of(tokenizer, objective, max_tokens=context_tokens(config))
    except ModelLoadError as err:
        raise ModelLoadError(f"'{name_or_path}': {err}") from None
    if len(alphabet.tokens) > hf_model.get_output_embeddings().weight.shape[0]:
        raise ModelLoadError(f"'{name_or_path}': its tokenizer has {len(alphabet.tokens)} tokens, more than the "
                             f"{hf_model.get_output_embeddings().weight.shape[0]} its head scores.")
    source = str(name_or_path) if local else f"{name_or_path}@{revision_of(name_or_path)}"
    return adapt(hf_model, alphabet, name=name or slug(name_or_path), source=source, objective=objective,
                 family=family, licence=licence or licence_of(name_or_path if local else None))
