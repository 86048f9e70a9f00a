"""DPLM-2 (ByteDance; `airkingbd/dplm2_150m`, `_650m`, `_3b`) behind the one interface.

DPLM-2 is a discrete-diffusion language model over amino-acid tokens *and* structure tokens.
What follows was established from its public source (bytedance/dplm, Apache-2.0):

- Network: `EsmForDPLM2` (`src/byprot/models/dplm2/modules/dplm2_modeling_esm.py`) subclasses
  transformers' `EsmForMaskedLM` and rebuilds it from `ModifiedEsmModel` / `ModifiedEsmEncoder`
  / `ModifiedEsmLayer` / `ModifiedEsmAttention` / `ModifiedEsmSelfAttention`, which keep every
  module name of transformers' ESM-2 (`esm.embeddings.word_embeddings`,
  `esm.encoder.layer.N.attention.{self.query,self.key,self.value,output.dense,LayerNorm}`,
  `esm.encoder.layer.N.{intermediate.dense,output.dense,LayerNorm}`,
  `esm.encoder.emb_layer_norm_after`, `lm_head.{dense,layer_norm,decoder,bias}`; per-layer
  `attention.self.rotary_embeddings.inv_freq` buffers, which transformers 5 remaps onto its one
  model-level table). Pre-LN blocks, erf-GELU, query scaled by head_dim^-1/2 before the rotary
  and attention with scale 1 — all as ESM-2. `EsmForDPLM2.__init__` sets
  `tie_word_embeddings = False`: the decoder is its own matrix. Synthyra/FastPLMs
  (`dplm2_fastplms/get_dplm2_weights.py`) loads the hub checkpoints of all three sizes into
  modules of exactly these names, so they load here with `from_pretrained` unchanged.
  DPLM-2 starts from DPLM (`src/byprot/models/utils.py` `get_net_dplm2`: the DPLM state dict,
  then `resize_token_embeddings(33 + 8192 + 4)`; the 3B run adds LoRA, `configs/experiment/
  dplm2/dplm2_3b.yaml`), so depth and width are ESM-2's: 150M 30 x 640, 650M 33 x 1280,
  3B 36 x 2560.
- Vocabulary (`vocab.txt` on the hub; `DPLM2Tokenizer` in
  `src/byprot/datamodules/dataset/tokenized_protein.py` reads it line by line, id = line):
  ids 0-32 are ESM-2's 33 tokens with the specials renamed `<cls_aa>` 0, `<pad>` 1,
  `<eos_aa>` 2, `<unk_aa>` 3, `<mask_aa>` 32; then `<cls_struct>` 33, `<eos_struct>` 34,
  `<unk_struct>` 35, the 8192 structure codes `0000`..`8191` at 36..8227 and `<mask_struct>`
  8228; 8229 in all (`TokenizerConfig.vocab_size = 33 + 8192 + 4`; the ids as recorded from the
  hub's vocab.txt by a third-party port, and `0000` = 36, `8191` = 8227 in FastPLMs' tokenizer
  tests, which — through a transformers tokenizer — list `<mask_struct>` as 8229). The loader
  therefore takes the ids from the folder's own vocab.txt, line by line as DPLM2Tokenizer
  does, checks them against the config, and falls back to the layout above only when a
  folder has no vocab.txt. The model tells the modalities apart by id alone:
  `get_modality_type` gives 1 (amino acid) to ids < 33, 0 (structure) to ids >= 33, 2 to
  padding.
- Layout (`dplm2.py` `compute_loss`, `generate_dplm2.py` `initialize_conditional_generation`):
  `[<cls_struct> s_1..s_n <eos_struct> <pad>..]` then `[<cls_aa> a_1..a_n <eos_aa> <pad>..]`,
  each half padded to the same width W, concatenated: one structure token per residue.
  Folding (sequence -> structure) fills the structure half with `<mask_struct>`.
- Positions: no modality-type embedding. `ModifiedRotaryEmbedding` builds its table for L/2
  positions and, whenever the batch holds both modalities, rotates the two halves
  (`chunk(2, dim=-2)`) with the *same* table: each modality has its own positions 0..W-1
  (structure token i and residue token i share phase i). A batch of one modality gets plain
  positions 0..L-1. Attention masks padding keys only (`get_extended_attention_mask`).
- Embeddings: `MultimodalDiffusionProteinLanguageModel.forward` (the forward used in training,
  `compute_loss`, and in generation, `forward_decoder`) first calls `net.esm.embeddings(input_ids,
  attention_mask=input_ids != pad)` and passes the result *with* `input_ids` to the network,
  whose `ModifiedEsmModel.forward` calls `self.embeddings(input_ids=..., inputs_embeds=...)`
  again. With ESM-2's `token_dropout` (on in the hub config; `mask_token_id` = 32 =
  `<mask_aa>`) the token-dropout rescaling (1 - 0.12) / (1 - masked fraction) is therefore
  applied twice. We reproduce that (`config.dplm2_embedding_passes`, default 2; set 1 for
  the network called on its own, as FastPLMs' re-implementation does). Hub config values
  (`DPLM2_COMMON`: vocab_size 8229, pad 1, mask 32, token_dropout, rotary, 1026 positions,
  layer-norm eps 1e-5) are as a third-party port records airkingbd/dplm2_150m's config.json;
  they were not read from the hub here (no hub access), and loading uses the folder's config.

This module: `DPLM2ForMaskedLM`, a subclass of transformers' `EsmForMaskedLM` (same module and
parameter names, so a DPLM-2 checkpoint folder loads with `from_pretrained`) whose forward
computes DPLM-2's per-modality positions and embeddings and then runs transformers' own ESM
forward; and a *sequence-conditioned view* as a `ProteinLM`: every structure token is
`<mask_struct>`, because DPLM-2's structure tokenizer (a separate learnt network,
`airkingbd/struct_tokenizer`: GVP encoder + lookup-free quantiser) is not available here, so
structure cannot be given. This is DPLM-2's own folding input. `residue_index` and
`target_index` map the amino-acid half only; the structure half is never measured. The
readout is the full 8229-token head (amino-acid and structure tokens; DPLM-2's sampler
restricts amino-acid positions to ids < 33 itself — use `vocab="amino_acids"` for the 20).
DPLM-2 Bit (`airkingbd/dplm2_bit_650m`) predicts structure codes bit by bit with another
head and is not supported.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from plmdepth.model import ModelInfo, ProteinLM, n_params, state_dict_checksum
from plmdepth.models.adapter import LAYOUTS
from plmdepth.models.hub import quiet_transformers
from plmdepth.models.device import check_device, hf_placement
from plmdepth.models.hub import ModelLoadError, local_or_snapshot, slug
from plmdepth.tokens import Alphabet, Batch

AA_TOKENS = ("<cls_aa>", "<pad>", "<eos_aa>", "<unk_aa>", *"LAGVSERTIDPKQNFYMHWCXBUZO", ".", "-", "<null_1>",
             "<mask_aa>")
N_STRUCT_CODES = 8192
DPLM2_TOKENS = (AA_TOKENS + ("<cls_struct>", "<eos_struct>", "<unk_struct>")
                + tuple(f"{i:04d}" for i in range(N_STRUCT_CODES)) + ("<mask_struct>",))
AA_BOUND = 33  # ids below are amino-acid tokens, ids at or above structure tokens (get_modality_type)
STRUCT_TYPE, AA_TYPE, PAD_TYPE = 0, 1, 2
EMBEDDING_PASSES = 2
# As published (hub config.json of airkingbd/dplm2_*; ESM-2 of the same size): blocks, width, heads, MLP
DPLM2_CONFIGS = {
    "dplm2_150m": dict(num_hidden_layers=30, hidden_size=640, num_attention_heads=20, intermediate_size=2560),
    "dplm2_650m": dict(num_hidden_layers=33, hidden_size=1280, num_attention_heads=20, intermediate_size=5120),
    "dplm2_3b": dict(num_hidden_layers=36, hidden_size=2560, num_attention_heads=40, intermediate_size=10240),
}
DPLM2_COMMON = dict(vocab_size=len(DPLM2_TOKENS), pad_token_id=1, mask_token_id=32, token_dropout=True,
                    position_embedding_type="rotary", max_position_embeddings=1026, layer_norm_eps=1e-5,
                    emb_layer_norm_before=False, dplm_type="dplm2_esm")


def is_dplm2_config(config: dict) -> bool:
    """A config (as a dict) written for DPLM-2: ESM with a `dplm_type` naming DPLM-2."""
    return str(config.get("dplm_type") or "").startswith("dplm2")


def modality_type(input_ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """0 structure, 1 amino acid, 2 padding (DPLM-2's `get_modality_type`)."""
    real = input_ids.ne(pad_id)
    types = ((input_ids < AA_BOUND) & real).long()
    types[~real] = PAD_TYPE
    return types


def modality_position_ids(input_ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Rotary positions (1, L): 0..L/2-1 in each half when the batch holds both modalities
    (`ModifiedRotaryEmbedding`), else 0..L-1."""
    types = modality_type(input_ids, pad_id)
    length = input_ids.shape[1]
    positions = torch.arange(length, device=input_ids.device)
    if bool((types == AA_TYPE).any()) and bool((types == STRUCT_TYPE).any()):
        if length % 2:
            raise ValueError("a DPLM-2 input holding both modalities must be two halves of equal width "
                             f"(structure, then amino acids); this one is {length} tokens wide.")
        positions = positions % (length // 2)
    return positions[None]


@functools.cache
def _network_class():
    """`DPLM2ForMaskedLM`, defined on first use: its base class brings transformers' modelling code,
    which a process that only reads results (a chapter) never needs."""
    from transformers import EsmForMaskedLM

    class DPLM2ForMaskedLM(EsmForMaskedLM):
        """transformers' `EsmForMaskedLM` with DPLM-2's forward: per-modality rotary positions and
        the embeddings computed as DPLM-2 computes them; every module and parameter name kept."""

        _tied_weights_keys = {}

        def __init__(self, config):
            config.tie_word_embeddings = False  # as EsmForDPLM2.__init__
            super().__init__(config)

        def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                    position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None, **kwargs):
            if input_ids is None:
                raise ValueError("DPLM-2 reads the modality of every token from its id; pass input_ids.")
            pad = self.config.pad_token_id
            real = input_ids.ne(pad)
            if attention_mask is None:
                attention_mask = real.long()
            if position_ids is None:
                position_ids = modality_position_ids(input_ids, pad)
            if inputs_embeds is None:
                embeddings = self.esm.embeddings
                inputs_embeds = embeddings(input_ids=input_ids, attention_mask=real)
                for _ in range(int(getattr(self.config, "dplm2_embedding_passes", EMBEDDING_PASSES)) - 1):
                    inputs_embeds = embeddings(input_ids=input_ids, attention_mask=real, inputs_embeds=inputs_embeds)
            return super().forward(input_ids=None, attention_mask=attention_mask, position_ids=position_ids,
                                   inputs_embeds=inputs_embeds, **kwargs)

    return DPLM2ForMaskedLM


def __getattr__(name: str):
    if name == "DPLM2ForMaskedLM":
        return _network_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class DPLM2Alphabet(Alphabet):
    """DPLM-2's vocabulary and its two-half layout; `encode` builds the sequence-conditioned
    input (every structure token `<mask_struct>`), mapping the amino-acid half to residues."""

    struct_prefix: tuple[str, ...] = ("<cls_struct>",)
    struct_suffix: tuple[str, ...] = ("<eos_struct>",)
    struct_mask: str = "<mask_struct>"

    def encode(self, ids: Sequence[str], sequences: Sequence[str], masked=None, autoregressive: bool = False) -> Batch:
        if autoregressive:
            raise ValueError("DPLM-2 is a diffusion model; it has no autoregressive reading.")
        n_pre, n_suf = len(self.prefix), len(self.suffix)
        if (len(self.struct_prefix), len(self.struct_suffix)) != (n_pre, n_suf):
            raise ValueError("the structure and amino-acid halves must be framed alike")
        half = max(len(s) for s in sequences) + n_pre + n_suf
        B, pad = len(sequences), self.id(self.pad)
        true_ids = torch.full((B, 2 * half), pad, dtype=torch.long)
        residue_index = torch.full((B, 2 * half), -1, dtype=torch.long)
        unk = self.index.get(self.unk) if self.unk else None
        mask_id = self.id(self.mask)
        for b, seq in enumerate(sequences):
            body = []
            for letter in seq:
                if len(letter) == 1 and letter in self.index and self.index[letter] < AA_BOUND:
                    body.append(self.index[letter])
                elif unk is not None:
                    body.append(unk)
                else:
                    raise ValueError(f"sequence '{ids[b]}': letter '{letter}' has no token in this model")
            struct = ([self.id(t) for t in self.struct_prefix] + [self.id(self.struct_mask)] * len(seq)
                      + [self.id(t) for t in self.struct_suffix])
            aa = [self.id(t) for t in self.prefix] + body + [self.id(t) for t in self.suffix]
            true_ids[b, : len(struct)] = torch.tensor(struct)
            true_ids[b, half: half + len(aa)] = torch.tensor(aa)
            residue_index[b, half + n_pre: half + n_pre + len(seq)] = torch.arange(len(seq))
        input_ids = true_ids.clone()
        for b, positions in enumerate(masked or []):
            for p in positions:
                if not 0 <= p < len(sequences[b]):
                    raise ValueError(f"sequence '{ids[b]}': masked position {p} is outside 0..{len(sequences[b]) - 1}")
                input_ids[b, half + n_pre + p] = mask_id
        attention = true_ids.ne(pad).long()
        target_ids = torch.where(residue_index >= 0, true_ids, torch.full_like(true_ids, -1))
        return Batch(list(ids), input_ids, attention, true_ids, residue_index, residue_index.clone(), target_ids)


def dplm2_alphabet(tokens: Sequence[str] = DPLM2_TOKENS) -> DPLM2Alphabet:
    return DPLM2Alphabet(tuple(tokens), pad="<pad>", mask="<mask_aa>", unk="<unk_aa>", prefix=("<cls_aa>",),
                         suffix=("<eos_aa>",))


def check_vocabulary(tokens: Sequence[str], config) -> str | None:
    """Why `tokens` cannot be this DPLM-2's vocabulary (None when it can)."""
    index = {t: i for i, t in enumerate(tokens)}  # a token listed twice takes its last line, as in DPLM2Tokenizer
    if len(tokens) > config.vocab_size:
        return f"it lists {len(tokens)} tokens but the model has only {config.vocab_size} embedding rows"
    for token in ("<cls_aa>", "<eos_aa>", "<unk_aa>", "<mask_aa>", "<pad>", *"ACDEFGHIKLMNPQRSTVWY"):
        if index.get(token, AA_BOUND) >= AA_BOUND:
            return f"amino-acid token {token} is missing or not below id {AA_BOUND}"
    for token in ("<cls_struct>", "<eos_struct>", "<mask_struct>"):
        if index.get(token, -1) < AA_BOUND:
            return f"structure token {token} is missing or below id {AA_BOUND}"
    if index["<pad>"] != config.pad_token_id or index["<mask_aa>"] != config.mask_token_id:
        return "its <pad> and <mask_aa> ids differ from the config's pad_token_id and mask_token_id"
    return None


def wrap_dplm2(hf_model: "DPLM2ForMaskedLM", name: str, source: str, alphabet: DPLM2Alphabet | None = None,
               checksum: str | None = None) -> ProteinLM:
    """A `DPLM2ForMaskedLM` as a sequence-conditioned `ProteinLM` (pre-LN; final norm
    `emb_layer_norm_after`; the readout is the full LM head over all 8229 tokens)."""
    cfg = hf_model.config
    info = ModelInfo(name=name, source=source, family="DPLM-2", objective="diffusion", modality="sequence+structure",
                     n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, n_params=n_params(hf_model),
                     licence="Apache-2.0", checksum=checksum or state_dict_checksum(hf_model), norm="pre-LN")
    return ProteinLM(hf_model, hf_model.esm.encoder.layer, hf_model.esm.encoder.emb_layer_norm_after,
                     hf_model.lm_head, alphabet or dplm2_alphabet(), info,
                     max_residues=cfg.max_position_embeddings - 2, sublayers=LAYOUTS["esm"].sublayers())


def load_dplm2(name_or_path: str | Path, name: str | None = None, device: str | torch.device | None = None,
               dtype: torch.dtype | None = None) -> ProteinLM:
    """DPLM-2 from a local save_pretrained folder or a hub repository (`airkingbd/dplm2_650m`),
    its weights read in `dtype` onto `device` (default: as saved, on the CPU)."""
    import json

    if device is not None:
        check_device(device)
    local = Path(name_or_path)
    folder = local_or_snapshot(name_or_path)
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"folder {folder} has no config.json; pass a folder written by save_pretrained.")
    config = json.loads((folder / "config.json").read_text())
    if not is_dplm2_config(config):
        raise ModelLoadError(f"'{name_or_path}' is not a DPLM-2 checkpoint (its config has no dplm_type "
                             f"'dplm2_*'); load ESM-2 and DPLM folders with load_esm2.")
    if "bit" in str(config["dplm_type"]):
        raise ModelLoadError(f"'{name_or_path}' is DPLM-2 Bit ({config['dplm_type']}), whose head predicts "
                             "structure codes bit by bit; only the token-level DPLM-2 models are supported.")
    with quiet_transformers():
        hf_model = _network_class().from_pretrained(folder, **hf_placement(device, dtype))
    if device is not None:
        hf_model = hf_model.to(device)
    tokens = DPLM2_TOKENS
    if (folder / "vocab.txt").is_file():
        tokens = tuple(line.strip() for line in (folder / "vocab.txt").read_text().splitlines())  # as DPLM2Tokenizer
    problem = check_vocabulary(tokens, hf_model.config)
    if problem:
        raise ModelLoadError(f"{folder}/vocab.txt does not fit this DPLM-2 model: {problem}.")
    # rows past the listed tokens (none in the published vocabulary) are named so the full readout covers them
    tokens = tuple(tokens) + tuple(f"<unused_{i}>" for i in range(len(tokens), hf_model.config.vocab_size))
    source = str(name_or_path) if local.exists() else f"{name_or_path}@{folder.name}"
    return wrap_dplm2(hf_model.eval(), name or slug(name_or_path), source, dplm2_alphabet(tokens),
                      checksum=state_dict_checksum(hf_model))
