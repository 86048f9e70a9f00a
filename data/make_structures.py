#!/usr/bin/env python3
"""Regenerate the protein chains under ``data/structures/`` (the structures ProteinMPNN reads).

Python standard library plus the plmdepth package (``pip install -e .``, e.g. the project's
``.venv``), whose PDB reader ``plmdepth.structures`` supplies the record filter, residue names
and backbone atoms.  It fetches Debian's ``emboss-test`` package with ``apt-get download``
(never installs it), checks the sha256 of the ``.deb`` and of every PDB file it reads out of
it, and writes, for each chain listed in ``CHAINS``:

* ``<id>.pdb``           one protein chain: the source file's ``HEADER`` line, then the chain's
                         ``ATOM`` records of the backbone atoms N, CA, C and O (every alternate
                         location kept, lines copied verbatim), ``TER`` and ``END``
* ``structures.fasta``   one record per chain, id ``<pdb id>_<chain>`` (e.g. ``1fx2_A``), whose
                         sequence is the chain's residues in file order (standard residues to
                         one letter, anything else ``X``; a residue's name is that of its first
                         record)
* ``checksums.sha256``   sha256 of the files above (``sha256sum -c checksums.sha256`` format)

Only the backbone atoms are kept because they are all ProteinMPNN reads; hetero atoms,
waters, ligands and the other chains of each entry are left out.  Run twice, it writes
byte-identical files.  See ``structures/README.md`` for provenance and licences.

Usage::

    python data/make_structures.py [--out DIR] [--deb PATH]

``--deb`` uses a ``.deb`` already at hand (its sha256 is checked); otherwise the pinned version
is downloaded with ``apt-get download emboss-test=VERSION`` into a temporary folder.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import lzma
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from plmdepth.structures import BACKBONE, first_model_atoms, one_letter

PACKAGE = "emboss-test"
VERSION = "6.6.0+dfsg-12"
DEB = f"{PACKAGE}_{VERSION}_all.deb"
DEB_SHA256 = "ea22a043860d11b072303fcc535c132115cb9c3d32b30d4de70bb522b1096f94"

ROOT = "./usr/share/EMBOSS/test/data/"
#: source file inside the .deb (relative to ROOT) -> its sha256
SOURCES = {
    "structure/pdb/1fx2.ent": "c553ee6306f3a8c3d72dce62e927fd08a4a78c1a57a206987527a9b81398decc",
    "structure/2hhb.ent": "52185eca61a49e6db4f300263e5d7e9cb4193445c16b9db24cea4951343f5614",
    "structure/pdb/4at1.ent": "886601e72819207bb7201b853af7b03fcc95f1b863e5d5d01e5aa8e020a0cf3d",
    "structure/pdb/1cs4.ent": "c5e1e3431a97f589633b8a3be0df499b102bf37d4ea92cc0c6b397bda974d956",
}
#: (output id, source file, chain), in the order of structures.fasta
CHAINS = (
    ("1fx2_A", "structure/pdb/1fx2.ent", "A"),
    ("2hhb_A", "structure/2hhb.ent", "A"),
    ("2hhb_B", "structure/2hhb.ent", "B"),
    ("4at1_B", "structure/pdb/4at1.ent", "B"),
    ("1cs4_A", "structure/pdb/1cs4.ent", "A"),
    ("1cs4_B", "structure/pdb/1cs4.ent", "B"),
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_deb(deb: Path | None, download_dir: Path) -> bytes:
    """The pinned .deb's bytes (downloaded with apt-get unless given), sha256-checked."""
    if deb is None:
        cmd = ["apt-get", "download", f"{PACKAGE}={VERSION}"]
        print("running:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, cwd=download_dir)
        deb = download_dir / DEB
    data = deb.read_bytes()
    if sha256_bytes(data) != DEB_SHA256:
        raise SystemExit(f"error: {deb} has sha256 {sha256_bytes(data)}, expected {DEB_SHA256}")
    return data


def ar_members(data: bytes) -> dict[str, bytes]:
    """The members of an `ar` archive (the container format of a .deb)."""
    if not data.startswith(b"!<arch>\n"):
        raise SystemExit("error: not a .deb (ar) archive")
    members, offset = {}, 8
    while offset < len(data):
        header = data[offset:offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[offset + 60:offset + 60 + size]
        offset += 60 + size + (size % 2)
    return members


def read_sources(deb: bytes) -> dict[str, str]:
    """The text of every file in `SOURCES`, read from the .deb's data.tar.xz and sha256-checked."""
    payload = lzma.decompress(ar_members(deb)["data.tar.xz"])
    texts = {}
    with tarfile.open(fileobj=io.BytesIO(payload)) as archive:
        for path, expected in SOURCES.items():
            raw = archive.extractfile(ROOT + path).read()
            if sha256_bytes(raw) != expected:
                raise SystemExit(f"error: {path} in {DEB} has sha256 {sha256_bytes(raw)}, expected {expected}")
            texts[path] = raw.decode("ascii")
    return texts


def chain_records(text: str, chain: str) -> tuple[list[str], str]:
    """(backbone ATOM lines of `chain` in the first model, its one-letter sequence); the first
    model's records as `plmdepth.structures` reads them, HETATMs (selenomethionine too) left out."""
    lines, residues = [], {}
    for _, line, name in first_model_atoms(text.splitlines()):
        if not line.startswith("ATOM  ") or line[21] != chain:
            continue
        residues.setdefault((line[22:26], line[26]), one_letter(name))
        if line[12:16].strip() in BACKBONE:
            lines.append(line.rstrip())
    return lines, "".join(residues.values())


def write_all(out: Path, texts: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fasta, written = [], []
    for chain_id, source, chain in CHAINS:
        text = texts[source]
        atoms, sequence = chain_records(text, chain)
        header = text.splitlines()[0].rstrip()
        pdb = "\n".join([header, *atoms, "TER", "END"]) + "\n"
        (out / f"{chain_id}.pdb").write_text(pdb, encoding="ascii", newline="\n")
        written.append(f"{chain_id}.pdb")
        fasta.append(f">{chain_id} {chain_id[:4].upper()} chain {chain}, {PACKAGE} {VERSION} {source}\n{sequence}\n")
    (out / "structures.fasta").write_text("".join(fasta), encoding="ascii", newline="\n")
    written.append("structures.fasta")
    sums = "".join(f"{sha256_bytes((out / name).read_bytes())}  {name}\n" for name in written)
    (out / "checksums.sha256").write_text(sums, encoding="ascii", newline="\n")
    for name in written:
        print(f"wrote {out / name}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "structures")
    parser.add_argument("--deb", type=Path, default=None, help=f"a local {DEB} (sha256 checked)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="make-structures-") as tmp:
        texts = read_sources(fetch_deb(args.deb, Path(tmp)))
    write_all(args.out, texts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
