"""A model's own transformers tokenizer seen as an `Alphabet`, with every token mapped to residues.

    alphabet = alphabet_of(AutoTokenizer.from_pretrained(folder), objective="masked")

Two cases, tried in this order:

1. **One residue a token, written as itself** (ESM, ESM C, ProtBert, IgBert, character-level
   BERTs): the 20 amino acids are tokens of the vocabulary. The framing (the special tokens
   before and after the residues: `[CLS] ... [SEP]`, `<cls> ... <eos>`) is read from the
   tokenizer's own encoding of the 20 letters, joined ("ACDE...") or, for vocabularies that
   read words, space-separated ("A C D E ..." as ProtBert expects). The result is a plain
   `Alphabet`, and its ids are checked against the tokenizer's own on a real sequence.
2. **The tokenizer cuts the sequence** (byte pairs, sentence pieces): a `TokenizedAlphabet`
   that runs the tokenizer and maps each token to the residues its characters hold, through
   the tokenizer's character offsets. A masked model needs every residue to be a token of its
   own there (so that one residue can be masked and scored).

Special tokens come from the tokenizer (`pad_token`, `mask_token`, `unk_token`, `bos_token`);
an autoregressive model whose tokenizer adds nothing before the residues gets its `bos_token`
there, so that the first residue is predicted too. A vocabulary that cannot express the 20
amino acids is refused in one sentence naming the letters it lacks.
"""

from __future__ import annotations

from dataclasses import replace

from plmdepth.models.hub import ModelLoadError
from plmdepth.tokens import CANONICAL, Alphabet, TokenizedAlphabet, encode, holds_several_residues

CHECK = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"  # a real sequence the mapping is checked on
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _vocabulary(tokenizer) -> tuple[str, ...]:
    vocab = tokenizer.get_vocab()
    tokens = [f"<unused{i}>" for i in range(max(vocab.values()) + 1)]
    for token, i in vocab.items():
        tokens[i] = token
    return tuple(tokens)


def _specials(tokenizer, objective: str) -> dict:
    pad = tokenizer.pad_token or tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token
    if pad is None:
        raise ModelLoadError("the tokenizer names no padding, end or unknown token to pad a batch with.")
    mask = tokenizer.mask_token
    if objective != "autoregressive" and mask is None:
        raise ModelLoadError(f"a {objective} model needs a mask token, and its tokenizer has none.")
    return {"pad": pad, "mask": mask, "unk": tokenizer.unk_token}


def _find(ids: list[int], part: list[int]) -> int | None:
    return next((i for i in range(len(ids) - len(part) + 1) if ids[i:i + len(part)] == part), None)


def _per_residue(tokenizer, tokens, specials: dict, objective: str) -> Alphabet | None:
    """Case 1: a plain `Alphabet` when each residue is a vocabulary token of its own, else None."""
    index = {t: i for i, t in enumerate(tokens)}
    if not all(a in index for a in CANONICAL):
        return None
    letters = [index[a] for a in CANONICAL]
    for separator in ("", " "):
        ids = tokenizer(separator.join(CANONICAL))["input_ids"]
        at = _find(ids, letters)
        if at is None:
            continue
        prefix = tuple(tokens[i] for i in ids[:at])
        suffix = tuple(tokens[i] for i in ids[at + len(letters):])
        if objective == "autoregressive" and not prefix and tokenizer.bos_token:
            prefix = (tokenizer.bos_token,)
        alphabet = Alphabet(tokens, prefix=prefix, suffix=suffix, **specials)
        own = tokenizer(separator.join(CHECK))["input_ids"]
        mine = encode(alphabet, ["check"], [CHECK]).true_ids[0].tolist()
        if prefix and own[:1] != [index[prefix[0]]]:
            own = [index[p] for p in prefix[:1]] + own  # the bos token added for an autoregressive model
        if mine == own:
            return alphabet
    return None


def _cut_by_tokenizer(tokenizer, tokens, specials: dict, objective: str, max_tokens: int | None) -> TokenizedAlphabet:
    """Case 2: a `TokenizedAlphabet` over the tokenizer's fast backend."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelLoadError(f"its tokenizer ({type(tokenizer).__name__}) has no fast backend (tokenizer.json), "
                             "which mapping tokens to residues needs; save the model with a fast tokenizer.")
    unk = tokenizer.unk_token_id
    adds_first = bool(tokenizer("M")["input_ids"][:1]) and tokenizer("M")["input_ids"][0] in tokenizer.all_special_ids
    prefix = (tokenizer.bos_token,) if objective == "autoregressive" and not adds_first and tokenizer.bos_token else ()
    one_each = not any(holds_several_residues(t) for t in tokens)
    failure = ""
    for separator in ("", " "):
        alphabet = TokenizedAlphabet(tokens, prefix=prefix, tokenizer=backend, separator=separator, special_tokens=True,
                                     max_tokens=max_tokens, one_residue_per_token=one_each, **specials)
        try:
            expressed = [a for a in LETTERS if _expresses(alphabet, a, unk)]
        except ValueError as err:
            failure = str(err)
            continue
        missing = [a for a in CANONICAL if a not in expressed]
        if missing:
            failure = f"its tokenizer cannot express the amino acids {', '.join(missing)}"
            continue
        residue_tokens = {}
        for a in CANONICAL:
            ids, _, held = alphabet._encode_one("check", "MK" + a + "TA", objective == "autoregressive")
            token = next(i for i, h in enumerate(held) if 2 in h)
            if held[token] == [2]:
                residue_tokens[a] = ids[token]
        alphabet = replace(alphabet, residue_tokens=residue_tokens, letters="".join(expressed))
        if objective != "autoregressive" and not (one_each and len(residue_tokens) == len(CANONICAL)):
            raise ModelLoadError(f"a {objective} model needs each residue to be a token of its own, and its "
                                 "tokenizer joins residues into tokens.")
        alphabet.encode(["check"], [CHECK], autoregressive=objective == "autoregressive")
        return alphabet
    raise ModelLoadError(f"{failure.rstrip('.')}; the model cannot read protein sequences.")


def _expresses(alphabet: TokenizedAlphabet, letter: str, unk: int | None) -> bool:
    try:
        ids, _, held = alphabet._encode_one("check", letter, True)
    except ValueError:
        return False
    return unk is None or unk not in ids


def alphabet_of(tokenizer, objective: str, max_tokens: int | None = None) -> Alphabet | TokenizedAlphabet:
    """The `Alphabet` of a transformers tokenizer for a model of `objective` (see the module)."""
    tokens = _vocabulary(tokenizer)
    specials = _specials(tokenizer, objective)
    return _per_residue(tokenizer, tokens, specials, objective) or _cut_by_tokenizer(
        tokenizer, tokens, specials, objective, max_tokens)
