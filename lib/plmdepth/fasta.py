"""FASTA input with the validation of SPEC §2.

`read_fasta` only parses and checks the file's own structure (empty records, duplicate
ids). Whether the letters fit a model is checked by `check_residues`, because that depends
on the model's alphabet and context length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class FastaError(ValueError):
    """A FASTA file or record that cannot be used, with a message that says why."""


@dataclass(frozen=True)
class Record:
    id: str
    description: str
    sequence: str


def read_fasta(path: str | Path, limit: int | None = None) -> list[Record]:
    """Read a FASTA file into records (sequence upper-cased, whitespace removed).

    Errors name the file and the record: a missing, compressed or binary file, text before the
    first header, a header with no id, an empty sequence, a duplicate id, or a file with no
    records. A byte-order mark at the start is ignored.
    `limit` keeps the first `limit` records (after validating the whole file).
    """
    path = Path(path)
    if not path.is_file():
        raise FastaError(f"FASTA file {path} does not exist.")
    records: list[Record] = []
    header: str | None = None
    chunks: list[str] = []
    seen: dict[str, int] = {}

    def flush(line_no: int) -> None:
        if header is None:
            return
        rid, _, desc = header.partition(" ")
        if not rid:
            raise FastaError(f"{path}: the header before line {line_no} has no id.")
        seq = "".join(chunks).upper()
        if not seq:
            raise FastaError(f"{path}: record '{rid}' has an empty sequence.")
        if rid in seen:
            raise FastaError(
                f"{path}: duplicate id '{rid}' (records {seen[rid] + 1} and {len(records) + 1}); "
                "ids must be unique because plans and results are keyed by them."
            )
        seen[rid] = len(records)
        records.append(Record(rid, desc.strip(), seq))

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raise FastaError(f"{path} is gzip-compressed; decompress it first (gunzip -k {path.name}).")
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark at the start is not part of the text
    except UnicodeDecodeError as err:
        # headers written by older tools are often Latin-1 (an accented name); sequences never are
        text = raw.decode("latin-1")
        if any(not line.isascii() and not line.lstrip().startswith(">") for line in text.splitlines()):
            raise FastaError(f"{path} is not a text file (byte {err.start} is not UTF-8, and not in a header "
                             "line); give a plain FASTA file.") from None
    if "\x00" in text:
        raise FastaError(f"{path} is not a text file (it holds NUL bytes); give a plain FASTA file.")
    line_no = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(">"):
            flush(line_no)
            header, chunks = line[1:].strip(), []
        elif header is None:
            raise FastaError(f"{path}: line {line_no} comes before the first '>' header.")
        else:
            chunks.append("".join(line.split()))
    flush(line_no + 1 if records or header else 1)
    if not records:
        raise FastaError(f"{path} holds no FASTA records.")
    return records[:limit] if limit is not None else records


AMBIGUOUS = "XBZUO"


def check_residues(
    records: list[Record],
    alphabet: str,
    max_length: int | None = None,
    unknown: str = "error",
    too_long: str = "error",
) -> list[Record]:
    """Check records against a model's residue alphabet and context length.

    A letter outside `alphabet` is an error naming the record and its 1-based position,
    unless `unknown="map"` and the letter is one of X/B/Z/U/O (it is then left in place and
    the tokenizer maps it to the model's unknown token). A sequence longer than
    `max_length` residues is an error (`too_long="error"`) or is cropped to its first
    `max_length` residues (`too_long="crop"`). Returns the (possibly cropped) records.
    """
    if unknown not in ("error", "map"):
        raise ValueError(f"unknown must be 'error' or 'map', not {unknown!r}")
    if too_long not in ("error", "crop"):
        raise ValueError(f"too_long must be 'error' or 'crop', not {too_long!r}")
    allowed = set(alphabet) | (set(AMBIGUOUS) if unknown == "map" else set())
    out = []
    for rec in records:
        for pos, letter in enumerate(rec.sequence, start=1):
            if letter not in allowed:
                hint = (" (or use --unknown map, unknown='map' from Python, to read it as the unknown token)"
                        if letter in AMBIGUOUS else "")
                raise FastaError(
                    f"record '{rec.id}': letter '{letter}' at position {pos} is not in the "
                    f"model's alphabet {''.join(sorted(alphabet))}{hint}."
                )
        if max_length is not None and len(rec.sequence) > max_length:
            if too_long == "error":
                raise FastaError(
                    f"record '{rec.id}' has {len(rec.sequence)} residues, more than the model's "
                    f"context of {max_length}; remove it, or use --too-long crop (too_long='crop' from "
                    f"Python) to keep its first {max_length} residues."
                )
            rec = Record(rec.id, rec.description, rec.sequence[:max_length])
        out.append(rec)
    return out
