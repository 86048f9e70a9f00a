"""Sapiens VH and VL antibody language models as `transformers.RobertaForMaskedLM`.

Sapiens (Prihoda et al. 2022, "BioPhi", mAbs 14:2020203) is a pair of small fairseq
RoBERTa masked LMs trained on human antibody variable regions: one for heavy chains (VH)
and one for light chains (VL, kappa and lambda). The `sapiens==1.0.5` wheel (MIT) ships
both fairseq checkpoints; it is only the transport here (see `weights.fetch`). Neither
sapiens nor fairseq is installed: the checkpoints are read with `torch.load` (weights only,
`argparse.Namespace` allowed for the training arguments) and their tensors are copied onto
a `RobertaForMaskedLM`, which computes the same function.

Architecture (fairseq 0.10 `RobertaModel`, arch `roberta_small`, task `masked_lm`):

    x = E_tok[t] + E_pos[p]           p = padding_idx + 1 + (index among non-pad tokens),
                                      i.e. positions 2, 3, ... (pad = 1); pad tokens get p = 1
    x = LayerNorm_emb(x)              `emb_layer_norm` (fairseq: encoder_normalize_before=True
                                      in RoBERTa means *only* this embedding norm)
    4 x post-LN block:                x = LN(x + SelfAttn(x)); x = LN(x + fc2(gelu(fc1(x))))
                                      8 heads, d = 128, ffn 256, LayerNorm eps 1e-5
    logits = W_tok @ LN(gelu(dense(x))) + b      `lm_head`, W_tok tied to E_tok

This is exactly HF RoBERTa (post-LN, embedding LayerNorm, learned positions offset by
`pad_token_id + 1`, exact-erf gelu everywhere). fairseq has no segment embeddings; HF's
`token_type_embeddings` (one row, added to every token) is set to zeros. fairseq also zeroes
padded rows after the embedding norm, which changes nothing at non-pad tokens because pads
are masked out of attention.

Key mapping (fairseq `decoder.` prefix; newer fairseq writes `encoder.`, also accepted):

    sentence_encoder.embed_tokens.weight          -> roberta.embeddings.word_embeddings.weight
    sentence_encoder.embed_positions.weight       -> roberta.embeddings.position_embeddings.weight
    sentence_encoder.emb_layer_norm.{weight,bias} -> roberta.embeddings.LayerNorm.{weight,bias}
    (none)                                        -> roberta.embeddings.token_type_embeddings.weight = 0
    sentence_encoder.layers.{i}.
        self_attn.q_proj.*                        -> roberta.encoder.layer.{i}.attention.self.query.*
        self_attn.k_proj.*                        -> roberta.encoder.layer.{i}.attention.self.key.*
        self_attn.v_proj.*                        -> roberta.encoder.layer.{i}.attention.self.value.*
        self_attn.out_proj.*                      -> roberta.encoder.layer.{i}.attention.output.dense.*
        self_attn_layer_norm.*                    -> roberta.encoder.layer.{i}.attention.output.LayerNorm.*
        fc1.*                                     -> roberta.encoder.layer.{i}.intermediate.dense.*
        fc2.*                                     -> roberta.encoder.layer.{i}.output.dense.*
        final_layer_norm.*                        -> roberta.encoder.layer.{i}.output.LayerNorm.*
    lm_head.dense.*                               -> lm_head.dense.*
    lm_head.layer_norm.*                          -> lm_head.layer_norm.*
    lm_head.weight                                -> lm_head.decoder.weight (tied to the word embeddings;
                                                     checked equal, else the head is left untied)
    lm_head.bias                                  -> lm_head.bias (= lm_head.decoder.bias, tied)

(fairseq scales q by head_dim**-0.5 after q_proj, HF scales the scores: the same function.)

Vocabulary (fairseq `Dictionary`): `<s>` `<pad>` `</s>` `<unk>` = 0..3, then the 20 amino
acids of the wheel's `dict.txt` in its order (A C D ... Y) = 4..23, then `<mask>` = 24, added
by the `masked_lm` task. Sapiens frames a sequence as `<s> residues </s>` (sapiens/roberta.py
`seq2tokens`, `add_bos=True` for the masked LM task) and writes `X` and `*` as `<mask>`;
other unknown letters become `<unk>`. Context: `max_positions` tokens including the two
frame tokens, i.e. 142 residues (VH) and 126 residues (VL).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from plmdepth import weights
from plmdepth.model import ProteinLM
from plmdepth.models.architectures import wrap_roberta
from plmdepth.models.hub import quiet_transformers
from plmdepth.tokens import Alphabet

SAPIENS_WHEEL = weights.ShippedWheel(
    "sapiens",
    "1.0.5",
    sha256="af1a8d445e9d7ab9f5f04512cf325acdfd9dd0930eb957b63ec234df1f141a8b",
    members=(
        "sapiens/models/v1/checkpoint_vh.pt",
        "sapiens/models/v1/checkpoint_vl.pt",
        "sapiens/models/v1/dict.txt",
    ),
    licence="MIT",
)

CHAINS = ("vh", "vl")

SAPIENS_BOS, SAPIENS_PAD, SAPIENS_EOS, SAPIENS_UNK, SAPIENS_MASK = "<s>", "<pad>", "</s>", "<unk>", "<mask>"
SAPIENS_TOKENS: tuple[str, ...] = (
    (SAPIENS_BOS, SAPIENS_PAD, SAPIENS_EOS, SAPIENS_UNK) + tuple("ACDEFGHIKLMNPQRSTVWY") + (SAPIENS_MASK,)
)
SAPIENS_PREFIX: tuple[str, ...] = (SAPIENS_BOS,)  # tokens before the residues
SAPIENS_SUFFIX: tuple[str, ...] = (SAPIENS_EOS,)  # tokens after the residues
SAPIENS_MASK_LETTERS = "X*"  # letters sapiens itself turns into <mask>
SAPIENS_ALPHABET = Alphabet(SAPIENS_TOKENS, pad=SAPIENS_PAD, mask=SAPIENS_MASK, unk=SAPIENS_UNK,
                            prefix=SAPIENS_PREFIX, suffix=SAPIENS_SUFFIX)


class SapiensError(RuntimeError):
    """A Sapiens checkpoint that does not map onto RobertaForMaskedLM as expected."""


def checkpoint_path(chain: str, root: Path | None = None) -> Path:
    """The shipped fairseq checkpoint of the `chain` model ("vh" or "vl"), fetched once."""
    chain = _check_chain(chain)
    root = weights.fetch(SAPIENS_WHEEL) if root is None else Path(root)
    return root / "sapiens" / "models" / "v1" / f"checkpoint_{chain}.pt"


def read_checkpoint(chain: str, root: Path | None = None) -> tuple[dict[str, torch.Tensor], argparse.Namespace]:
    """(state dict, training arguments) of a shipped checkpoint, loaded as weights only."""
    path = checkpoint_path(chain, root)
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    args = checkpoint.get("args")
    if args is None:  # fairseq >= 0.10.2 may store an omegaconf `cfg` instead; the wheel's do not
        raise SapiensError(f"{path.name} has no `args`; expected a fairseq 0.10 checkpoint")
    return dict(checkpoint["model"]), args


def read_dictionary(root: Path | None = None) -> tuple[str, ...]:
    """The vocabulary in id order as fairseq builds it from the wheel's dict.txt."""
    root = weights.fetch(SAPIENS_WHEEL) if root is None else Path(root)
    with open(root / "sapiens" / "models" / "v1" / "dict.txt") as handle:
        symbols = tuple(line.split()[0] for line in handle if line.strip())
    return (SAPIENS_BOS, SAPIENS_PAD, SAPIENS_EOS, SAPIENS_UNK) + symbols + (SAPIENS_MASK,)


def roberta_config(args: argparse.Namespace, state: dict[str, torch.Tensor]):
    """The `RobertaConfig` of a fairseq RoBERTa checkpoint."""
    from transformers import RobertaConfig

    prefix = _prefix(state)
    tokens = state[f"{prefix}sentence_encoder.embed_tokens.weight"]
    positions = state[f"{prefix}sentence_encoder.embed_positions.weight"]
    pad = SAPIENS_TOKENS.index(SAPIENS_PAD)
    if positions.shape[0] != args.max_positions + pad + 1:
        raise SapiensError(f"{positions.shape[0]} position rows for max_positions {args.max_positions}; "
                           f"expected max_positions + {pad + 1}")
    if getattr(args, "encoder_normalize_before", None) or getattr(args, "layernorm_embedding", None) is False:
        raise SapiensError("expected a post-LN RoBERTa with an embedding LayerNorm")
    tied = torch.equal(state[f"{prefix}lm_head.weight"], tokens)
    return RobertaConfig(
        vocab_size=tokens.shape[0],
        hidden_size=args.encoder_embed_dim,
        num_hidden_layers=args.encoder_layers,
        num_attention_heads=args.encoder_attention_heads,
        intermediate_size=args.encoder_ffn_embed_dim,
        hidden_act=args.activation_fn,
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.attention_dropout,
        max_position_embeddings=positions.shape[0],
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=pad,
        bos_token_id=SAPIENS_TOKENS.index(SAPIENS_BOS),
        eos_token_id=SAPIENS_TOKENS.index(SAPIENS_EOS),
        tie_word_embeddings=tied,
    )


_LAYER_MAP = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.output.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "output.LayerNorm",
}
_TOP_MAP = {
    "sentence_encoder.embed_tokens": "roberta.embeddings.word_embeddings",
    "sentence_encoder.embed_positions": "roberta.embeddings.position_embeddings",
    "sentence_encoder.emb_layer_norm": "roberta.embeddings.LayerNorm",
    "lm_head.dense": "lm_head.dense",
    "lm_head.layer_norm": "lm_head.layer_norm",
}


def map_state_dict(state: dict[str, torch.Tensor], hidden_size: int) -> dict[str, torch.Tensor]:
    """fairseq RoBERTa state dict -> `RobertaForMaskedLM` state dict (see the module docstring).

    Raises `SapiensError` listing every checkpoint key the mapping does not cover.
    """
    prefix = _prefix(state)
    mapped: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, tensor in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        target = None
        if name == "lm_head.weight":
            target = "lm_head.decoder.weight"
        elif name == "lm_head.bias":
            target = "lm_head.bias"
        elif name is not None and name.startswith("sentence_encoder.layers."):
            index, _, rest = name[len("sentence_encoder.layers."):].partition(".")
            module, _, param = rest.rpartition(".")
            if index.isdigit() and module in _LAYER_MAP and param in ("weight", "bias"):
                target = f"roberta.encoder.layer.{index}.{_LAYER_MAP[module]}.{param}"
        elif name is not None:
            module, _, param = name.rpartition(".")
            if module in _TOP_MAP and param in ("weight", "bias"):
                target = f"{_TOP_MAP[module]}.{param}"
        if target is None:
            unmapped.append(key)
        else:
            mapped[target] = tensor
    if unmapped:
        raise SapiensError(f"checkpoint keys with no RobertaForMaskedLM counterpart: {', '.join(unmapped)}")
    reference = mapped["roberta.embeddings.word_embeddings.weight"]
    mapped["roberta.embeddings.token_type_embeddings.weight"] = reference.new_zeros(1, hidden_size)
    mapped["lm_head.decoder.bias"] = mapped["lm_head.bias"]  # tied in RobertaLMHead
    return mapped


def load_sapiens(chain: str, root: Path | None = None):
    """Sapiens `chain` ("vh" or "vl") as a `RobertaForMaskedLM` in eval mode.

    Every checkpoint tensor is mapped and every model tensor filled (strict); anything else
    raises `SapiensError` naming the keys.
    """
    from transformers import RobertaForMaskedLM

    state, args = read_checkpoint(chain, root)
    vocabulary = read_dictionary(root)
    if vocabulary != SAPIENS_TOKENS:
        raise SapiensError(f"the wheel's dictionary gives {vocabulary}, expected {SAPIENS_TOKENS}")
    config = roberta_config(args, state)
    if config.vocab_size != len(SAPIENS_TOKENS):
        raise SapiensError(f"checkpoint has {config.vocab_size} token rows for {len(SAPIENS_TOKENS)} tokens")
    mapped = map_state_dict(state, config.hidden_size)
    model = RobertaForMaskedLM(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(mapped)), sorted(set(mapped) - expected)
    if missing or unexpected:
        raise SapiensError(f"mapped Sapiens {chain} state dict does not fit RobertaForMaskedLM: "
                           f"missing {missing}, unexpected {unexpected}")
    model.load_state_dict(mapped, strict=True)
    if config.tie_word_embeddings and (
            model.lm_head.decoder.weight.data_ptr() != model.roberta.embeddings.word_embeddings.weight.data_ptr()):
        raise SapiensError("the LM head is not tied to the word embeddings")
    return model.eval()


def max_residues(model) -> int:
    """Residues that fit the model's context: positions minus the pad offset and the frame tokens."""
    cfg = model.config
    return cfg.max_position_embeddings - (cfg.pad_token_id + 1) - len(SAPIENS_PREFIX) - len(SAPIENS_SUFFIX)


def _check_chain(chain: str) -> str:
    key = chain.lower()
    if key not in CHAINS:
        raise ValueError(f"Sapiens chain must be one of {CHAINS}, not {chain!r}")
    return key


def _prefix(state: dict[str, torch.Tensor]) -> str:
    for prefix in ("decoder.", "encoder."):
        if f"{prefix}sentence_encoder.embed_tokens.weight" in state:
            return prefix
    raise SapiensError("no `decoder.sentence_encoder.embed_tokens.weight` (or `encoder.`) in the checkpoint")


def load_sapiens_model(chain: str) -> ProteinLM:
    """Sapiens VH or VL (fairseq RoBERTa masked LM, 4 blocks) from the sapiens 1.0.5 wheel, as a `ProteinLM`."""
    with quiet_transformers():
        hf_model = load_sapiens(chain)
    checksum = "sha256:" + weights.sha256_of(checkpoint_path(chain))
    return wrap_roberta(hf_model, f"sapiens-{chain}", SAPIENS_WHEEL.requirement, SAPIENS_ALPHABET,
                        max_residues(hf_model), family="Sapiens", licence=SAPIENS_WHEEL.licence, checksum=checksum)
