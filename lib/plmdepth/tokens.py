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

import re
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
        return [self.residue_id(a) for a in CANONICAL]

    one_residue_per_token = True  # every residue is a token of its own (see TokenizedAlphabet)

    def id(self, token: str) -> int:
        return self.index[token]

    def residue_id(self, letter: str) -> int:
        """The token id of residue `letter` inside a sequence."""
        return self.index[letter]

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
    return with_targets(ids, input_ids, attention, true_ids, residue_index, autoregressive)


def with_targets(ids: Sequence[str], input_ids: torch.Tensor, attention: torch.Tensor, true_ids: torch.Tensor,
                 residue_index: torch.Tensor, autoregressive: bool) -> Batch:
    """The `Batch` of encoded rows, with the residue each token's output is scored against: the
    same residue (masked, diffusion) or the one the next token holds (autoregressive)."""
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


@dataclass(frozen=True)
class TokenizedAlphabet(Alphabet):
    """A vocabulary whose own tokenizer cuts sequences into tokens (byte pairs, sentence pieces).

    `tokenizer` is a `tokenizers.Tokenizer` (a fast tokenizer's backend). A sequence is written
    as its residues joined by `separator` ("" or " ", as ProtBert-style vocabularies expect),
    broken into lines of `line_width` residues if set (ProtGPT2's FASTA bodies), between the
    texts `prefix` and `suffix`; `special_tokens` adds the tokenizer's own framing (its
    post-processor: BERT's [CLS] ... [SEP], Llama's <s>). `encode` maps every token back to
    the residues its characters hold, through the tokenizer's character offsets:
    `residue_index[t]` is the first residue of token t (-1 for tokens that hold none).

    `residue_tokens` maps each residue letter to its token inside a sequence, where a letter
    is a token of its own there; `one_residue_per_token` says whether the vocabulary has no
    token holding two or more residues (then masking one residue and a 20-letter readout are
    defined).
    """

    tokenizer: object = field(default=None, compare=False, repr=False)
    separator: str = ""
    line_width: int | None = None
    special_tokens: bool = False
    max_tokens: int | None = None  # the model's context, in tokens
    residue_tokens: dict = field(default_factory=dict, compare=False, repr=False)
    letters: str = ""  # the residue letters the tokenizer expresses (what a FASTA may contain)
    one_residue_per_token: bool = False

    @property
    def residues(self) -> str:
        return self.letters

    def residue_id(self, letter: str) -> int:
        if not self.one_residue_per_token or letter not in self.residue_tokens:
            raise ValueError("this model's tokens hold several residues each; use vocab='full', not 'amino_acids'.")
        return self.residue_tokens[letter]

    def body(self, sequence: str) -> str:
        """The sequence as text: residues joined by `separator`, in lines of `line_width`."""
        width = self.line_width or max(len(sequence), 1)
        lines = [sequence[i:i + width] for i in range(0, len(sequence), width)]
        return "\n".join(self.separator.join(line) for line in lines)

    def encode(self, ids: Sequence[str], sequences: Sequence[str], masked=None, autoregressive: bool = True) -> Batch:
        """Encode residue strings into a right-padded `Batch` with every token mapped to residues."""
        if masked is not None and any(len(m) for m in masked) and self.mask is None:
            raise ValueError("this model has no mask token; it cannot take masked positions")
        rows = [self._encode_one(seq_id, seq, autoregressive) for seq_id, seq in zip(ids, sequences)]
        width = max(len(r[0]) for r in rows)
        B, pad = len(rows), self.id(self.pad)
        true_ids = torch.full((B, width), pad, dtype=torch.long)
        attention = torch.zeros((B, width), dtype=torch.long)
        residue_index = torch.full((B, width), -1, dtype=torch.long)
        for b, (token_ids, first_residue, _) in enumerate(rows):
            n = len(token_ids)
            true_ids[b, :n] = torch.tensor(token_ids)
            attention[b, :n] = 1
            residue_index[b, :n] = torch.tensor(first_residue)
        input_ids = true_ids.clone()
        for b, positions in enumerate(masked or []):
            held = rows[b][2]
            for p in positions:
                token = next((t for t, h in enumerate(held) if p in h), None)
                if token is None:
                    raise ValueError(f"sequence '{ids[b]}': masked position {p} is outside 0..{len(sequences[b]) - 1}")
                if len(held[token]) != 1:
                    raise ValueError(f"sequence '{ids[b]}': residue {p} shares its token with other residues; "
                                     "only a residue that is a token of its own can be masked.")
                input_ids[b, token] = self.id(self.mask)
        return with_targets(ids, input_ids, attention, true_ids, residue_index, autoregressive)

    def _encode_one(self, seq_id: str, sequence: str, autoregressive: bool) -> tuple[list[int], list[int], list]:
        """Token ids of one framed sequence, the first residue each token holds (-1: none) and
        the residues each holds."""
        body = self.body(sequence)
        start = len(self.prefix_text)
        text = self.prefix_text + body + self.suffix_text
        encoding = self.tokenizer.encode(text, add_special_tokens=self.special_tokens)
        if self.max_tokens is not None and len(encoding.ids) > self.max_tokens:
            raise ValueError(f"sequence '{seq_id}' is {len(encoding.ids)} tokens long, longer than this model's "
                             f"context of {self.max_tokens} tokens; crop it or remove it.")
        residue_at = [-1] * len(text)  # character offset in `text` -> residue number
        r = 0
        for i, char in enumerate(body):
            if not char.isspace():
                residue_at[start + i] = r
                r += 1
        first, held, covered = [], [], []
        for (a, b), special in zip(encoding.offsets, encoding.special_tokens_mask):
            mine = [] if special and self.special_tokens else [residue_at[i] for i in range(a, b) if residue_at[i] >= 0]
            mine = [q for q in mine if not covered or q > covered[-1]]  # a character counted once
            first.append(mine[0] if mine else -1)
            held.append(mine)
            covered.extend(mine)
        if covered != list(range(len(sequence))):
            raise ValueError(f"sequence '{seq_id}': its tokens do not cover its residues one by one "
                             "(letters outside the tokenizer's alphabet?)")
        if not autoregressive and any(len(h) > 1 for h in held):
            raise ValueError(f"sequence '{seq_id}': a token holds several residues, which a masked model's "
                             "per-residue outputs cannot score; this vocabulary suits autoregressive models only.")
        return list(encoding.ids), first, held

    @property
    def prefix_text(self) -> str:
        return "".join(self.prefix)

    @property
    def suffix_text(self) -> str:
        return "".join(self.suffix)


WORD_MARKS = re.compile(r"^(\u2581|\u0120|##| )+")


def holds_several_residues(token: str) -> bool:
    """Whether a vocabulary token (without its word-boundary mark: ▁, Ġ, ##) is two or more letters."""
    core = WORD_MARKS.sub("", token)
    return len(core) >= 2 and core.isalpha() and core.isupper()
