"""Residues to token ids, with every residue's token position known.

Each model has an `Alphabet`: its vocabulary in id order and the special tokens placed
before (`prefix`) and after (`suffix`) the residues. Ids are built from the vocabulary
directly rather than through a transformers tokenizer, because several shipped
vocabularies are mis-tokenized by transformers 5's tokenizers (SPEC §5).

A `Batch` carries, for every token, which residue it holds (`residue_index`) and which
residue its output is scored against (`target_index`): the same residue for masked and
diffusion models, the next residue for autoregressive ones. Measurements use these two
maps and never count special tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import torch

CANONICAL = "ACDEFGHIKLMNPQRSTVWY"


@dataclass(frozen=True)
class Alphabet:
    """A model's vocabulary (index = token id) and how a sequence is framed."""

    tokens: tuple[str, ...]
    pad: str
    mask: str | None = None
    unk: str | None = None
    prefix: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()

    @cached_property
    def index(self) -> dict[str, int]:
        return {tok: i for i, tok in enumerate(self.tokens)}

    @property
    def residues(self) -> str:
        """Single-letter residue tokens of the vocabulary (what a FASTA may contain)."""
        return "".join(t for t in self.tokens if len(t) == 1 and t.isalpha() and t.isupper())

    @property
    def canonical_ids(self) -> list[int]:
        """Token ids of the 20 canonical amino acids, in `CANONICAL` order."""
        return [self.index[a] for a in CANONICAL]

    def id(self, token: str) -> int:
        return self.index[token]

    @classmethod
    def from_vocab_file(cls, path, **kwargs) -> "Alphabet":
        with open(path) as handle:
            tokens = tuple(line.strip() for line in handle if line.strip())
        return cls(tokens=tokens, **kwargs)


@dataclass
class Batch:
    """Token ids of a batch of sequences and the maps from tokens to residues.

    `input_ids` hold the mask token at masked residues; `true_ids` hold the real residue
    tokens everywhere. `residue_index[b, t]` is the 0-based residue at token t (-1 for
    special and padding tokens); `target_index[b, t]` is the residue that the output at
    token t predicts (-1 where it predicts none) and `target_ids` its true token id.
    `model_inputs` holds extra inputs of the model's own forward beyond the token ids (a
    structure model's coordinates), keyed by argument name; empty for sequence-only models.
    """

    ids: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    true_ids: torch.Tensor
    residue_index: torch.Tensor
    target_index: torch.Tensor
    target_ids: torch.Tensor
    layer_context: dict = field(default_factory=dict, repr=False)
    model_inputs: dict = field(default_factory=dict, repr=False)

    def to(self, device) -> "Batch":
        for name in ("input_ids", "attention_mask", "true_ids", "residue_index", "target_index", "target_ids"):
            setattr(self, name, getattr(self, name).to(device))
        self.model_inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                             for k, v in self.model_inputs.items()}
        return self


def encode(
    alphabet: Alphabet,
    ids: Sequence[str],
    sequences: Sequence[str],
    masked: Sequence[Sequence[int]] | None = None,
    autoregressive: bool = False,
) -> Batch:
    """Encode residue strings into a right-padded `Batch`.

    `masked[i]` lists 0-based residue positions of sequence i replaced by the mask token.
    Letters not in the vocabulary become the unknown token (validate with
    `fasta.check_residues` first to make that an error instead).
    """
    if masked is not None and alphabet.mask is None and any(len(m) for m in masked):
        raise ValueError("this model has no mask token; it cannot take masked positions")
    n_pre, n_suf = len(alphabet.prefix), len(alphabet.suffix)
    width = max(len(s) for s in sequences) + n_pre + n_suf
    B = len(sequences)
    pad = alphabet.id(alphabet.pad)
    true_ids = torch.full((B, width), pad, dtype=torch.long)
    attention = torch.zeros((B, width), dtype=torch.long)
    residue_index = torch.full((B, width), -1, dtype=torch.long)
    unk = alphabet.index.get(alphabet.unk) if alphabet.unk else None

    def token_id(b: int, letter: str) -> int:
        if letter in alphabet.index:
            return alphabet.index[letter]
        if unk is None:
            raise ValueError(f"sequence '{ids[b]}': letter '{letter}' has no token in this model")
        return unk

    for b, seq in enumerate(sequences):
        body = [token_id(b, a) for a in seq]
        row = [alphabet.id(t) for t in alphabet.prefix] + body + [alphabet.id(t) for t in alphabet.suffix]
        true_ids[b, : len(row)] = torch.tensor(row)
        attention[b, : len(row)] = 1
        residue_index[b, n_pre : n_pre + len(seq)] = torch.arange(len(seq))
    input_ids = true_ids.clone()
    if masked is not None:
        mask_id = alphabet.id(alphabet.mask) if alphabet.mask else None
        for b, positions in enumerate(masked):
            for p in positions:
                if not 0 <= p < len(sequences[b]):
                    raise ValueError(f"sequence '{ids[b]}': masked position {p} is outside 0..{len(sequences[b]) - 1}")
                input_ids[b, n_pre + p] = mask_id
    if autoregressive:
        target_index = torch.full_like(residue_index, -1)
        target_index[:, :-1] = residue_index[:, 1:]
        target_ids = torch.full_like(true_ids, -1)
        target_ids[:, :-1] = true_ids[:, 1:]
        target_ids[target_index < 0] = -1
    else:
        target_index = residue_index.clone()
        target_ids = torch.where(residue_index >= 0, true_ids, torch.full_like(true_ids, -1))
    return Batch(list(ids), input_ids, attention, true_ids, residue_index, target_index, target_ids)
