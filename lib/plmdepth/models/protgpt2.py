"""ProtGPT2: a GPT-2 whose tokens are byte-pair encodings of several residues.

ProtGPT2 (Ferruz et al. 2022, `nferruz/ProtGPT2`) is `transformers.GPT2LMHeadModel` with a
50,257-token byte-level BPE vocabulary learnt on UniRef50: one token holds one to about ten
residues. It was trained on sequences written as FASTA bodies, 60 residues a line, between
`<|endoftext|>` separators, so a sequence is presented as

    <|endoftext|> MKTAYIAKQR...(60)\\n ...(60)\\n ... <|endoftext|>

The interface measures tokens, so every token is mapped back to the residues it holds
(`BPEAlphabet.encode`): `residue_index[t]` is the first residue of token t (-1 for the
separators and line breaks, which hold none), and the output at token t predicts token t+1,
so `target_index[t]` is the first residue of token t+1 and `target_ids[t]` its id. Thus

- the logit lens compares next-token distributions over the full BPE vocabulary at every
  token that predicts residues (a 20-letter vocabulary does not apply and is refused);
- layer skipping's split point t ("residues >= t") falls on token boundaries: a token is on
  the measured side when its first residue is >= t;
- a sequence's log-likelihood (variant effects) is the sum over its residue-holding tokens.
  A substitution can change how the sequence is cut into tokens; the log-likelihood ratio
  compares the two tokenisations as the model reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from plmdepth.model import ProteinLM
from plmdepth.models.architectures import quiet_transformers, wrap_gpt2
from plmdepth.models.device import check_device, hf_placement
from plmdepth.models.hub import ModelLoadError, local_or_snapshot, slug
from plmdepth.tokens import Alphabet, Batch

SEPARATOR = "<|endoftext|>"
LINE_WIDTH = 60
# ProtGPT2 as published (nferruz/ProtGPT2 config.json)
PROTGPT2_CONFIG = {"n_layer": 36, "n_embd": 1280, "n_head": 20, "n_positions": 1024, "vocab_size": 50257}


def fasta_body(sequence: str, line_width: int = LINE_WIDTH) -> str:
    """The sequence as ProtGPT2 saw it in training: lines of `line_width` residues."""
    return "\n".join(sequence[i:i + line_width] for i in range(0, len(sequence), line_width))


@dataclass(frozen=True)
class BPEAlphabet(Alphabet):
    """A byte-pair vocabulary: `tokens` in id order plus the tokenizer that cuts sequences.

    `tokenizer` is a `tokenizers.Tokenizer` (the fast tokenizer's backend). The single-letter
    tokens are still listed by `residues` (the letters a FASTA may contain), but
    `canonical_ids` is refused: a 20-letter readout would ignore most of the vocabulary.
    """

    tokenizer: object = field(default=None, compare=False, repr=False)
    line_width: int = LINE_WIDTH
    max_tokens: int | None = None  # the model's context, in tokens

    @property
    def canonical_ids(self) -> list[int]:
        raise ValueError("this model's tokens hold several residues each; use vocab='full', not 'amino_acids'.")

    def encode(self, ids: Sequence[str], sequences: Sequence[str], masked=None, autoregressive: bool = True) -> Batch:
        """Encode residue strings into a right-padded `Batch` with every token mapped to residues."""
        if not autoregressive:
            raise ValueError("a byte-pair vocabulary is supported for autoregressive models only")
        if masked is not None and any(len(m) for m in masked):
            raise ValueError("this model has no mask token; it cannot take masked positions")
        rows = [self._encode_one(seq_id, seq) for seq_id, seq in zip(ids, sequences)]
        width = max(len(r[0]) for r in rows)
        B, pad = len(rows), self.id(self.pad)
        true_ids = torch.full((B, width), pad, dtype=torch.long)
        attention = torch.zeros((B, width), dtype=torch.long)
        residue_index = torch.full((B, width), -1, dtype=torch.long)
        for b, (token_ids, first_residue) in enumerate(rows):
            n = len(token_ids)
            true_ids[b, :n] = torch.tensor(token_ids)
            attention[b, :n] = 1
            residue_index[b, :n] = torch.tensor(first_residue)
        target_index = torch.full_like(residue_index, -1)
        target_index[:, :-1] = residue_index[:, 1:]
        target_ids = torch.full_like(true_ids, -1)
        target_ids[:, :-1] = true_ids[:, 1:]
        target_ids[target_index < 0] = -1
        return Batch(list(ids), true_ids.clone(), attention, true_ids, residue_index, target_index, target_ids)

    def _encode_one(self, seq_id: str, sequence: str) -> tuple[list[int], list[int]]:
        """Token ids of one framed sequence and the first residue each token holds (-1: none)."""
        body = fasta_body(sequence, self.line_width)
        start = len(self.prefix_text)
        text = self.prefix_text + body + self.suffix_text
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        if self.max_tokens is not None and len(encoding.ids) > self.max_tokens:
            raise ValueError(f"sequence '{seq_id}' is {len(encoding.ids)} tokens long, longer than this model's "
                             f"context of {self.max_tokens} tokens; crop it or remove it.")
        # character offset in `text` -> residue number (line breaks and separators hold none)
        residue_at = [-1] * len(text)
        r = 0
        for i, char in enumerate(body):
            if char != "\n":
                residue_at[start + i] = r
                r += 1
        first, covered = [], []
        for a, b in encoding.offsets:
            held = [residue_at[i] for i in range(a, b) if residue_at[i] >= 0]
            first.append(held[0] if held else -1)
            covered.extend(held)
        if covered != list(range(len(sequence))):
            raise ValueError(f"sequence '{seq_id}': its tokens do not cover its residues one by one "
                             "(letters outside the tokenizer's alphabet?)")
        return list(encoding.ids), first

    @property
    def prefix_text(self) -> str:
        return "".join(self.prefix)

    @property
    def suffix_text(self) -> str:
        return "".join(self.suffix)


def bpe_alphabet(tokenizer_folder: str | Path, max_tokens: int | None = None) -> BPEAlphabet:
    """The `BPEAlphabet` of a folder holding a fast GPT-2 tokenizer (tokenizer.json, or
    vocab.json + merges.txt), framed `<|endoftext|> sequence <|endoftext|>`."""
    from transformers import AutoTokenizer

    fast = AutoTokenizer.from_pretrained(str(tokenizer_folder), use_fast=True)
    backend = fast.backend_tokenizer
    vocab = backend.get_vocab(with_added_tokens=True)
    tokens = [None] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    if any(t is None for t in tokens) or SEPARATOR not in vocab:
        raise ValueError(f"{tokenizer_folder}: not a GPT-2 byte-pair tokenizer with contiguous ids and {SEPARATOR}")
    return BPEAlphabet(tuple(tokens), pad=SEPARATOR, prefix=(SEPARATOR,), suffix=(SEPARATOR,), tokenizer=backend,
                       max_tokens=max_tokens)


def load_protgpt2(folder: str | Path, name: str, source: str | None = None, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None) -> ProteinLM:
    """ProtGPT2 (or any GPT-2 protein model with a byte-pair tokenizer) from a local folder, its
    weights read in `dtype` onto `device` (default: as saved, on the CPU)."""
    from transformers import GPT2LMHeadModel

    if device is not None:
        check_device(device)
    folder = Path(folder)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json")):
        raise ModelLoadError(f"folder {folder} has no tokenizer.json or vocab.json; a GPT-2 protein model needs "
                             "the byte-pair tokenizer it was trained with, saved next to its weights.")
    with quiet_transformers():
        hf_model = GPT2LMHeadModel.from_pretrained(folder, **hf_placement(device, dtype))
    if device is not None:
        hf_model = hf_model.to(device)
    n_positions = hf_model.config.n_positions
    alphabet = bpe_alphabet(folder, max_tokens=n_positions)
    if len(alphabet.tokens) != hf_model.config.vocab_size:
        raise ModelLoadError(f"folder {folder}: the tokenizer has {len(alphabet.tokens)} tokens but the model "
                             f"{hf_model.config.vocab_size}; save the model with the tokenizer it was trained with.")
    # every token holds at least one character, so the context in residues is bounded by the one in tokens;
    # the exact check is made in tokens when a sequence is encoded.
    return wrap_gpt2(hf_model, name, source or str(folder), alphabet, family="ProtGPT2", licence="Apache-2.0",
                     max_residues=LINE_WIDTH * n_positions)


def load_protgpt2_model(name_or_path: str, name: str | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> ProteinLM:
    """ProtGPT2 from a local folder or a hub repository (`nferruz/ProtGPT2`)."""
    return load_protgpt2(local_or_snapshot(name_or_path), name=name or slug(name_or_path), source=str(name_or_path),
                         device=device, dtype=dtype)
