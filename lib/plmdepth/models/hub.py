"""The Hugging Face hub: reachability, local snapshots, configs, and what to say when it fails.

Every loader that reads a hub repository goes through here, so an unreachable hub, a missing
cache entry or a folder without `config.json` ends in the same one-sentence `ModelLoadError`.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path


TRUST_REMOTE_CODE = "PLMDEPTH_TRUST_REMOTE_CODE"  # set (to 1) by --trust-remote-code; inherited by workflow jobs


def trusts_remote_code() -> bool:
    """Whether this run may execute Python code shipped with a model (`--trust-remote-code`)."""
    return os.environ.get(TRUST_REMOTE_CODE, "0") not in ("0", "", "false", "False")


class ModelLoadError(RuntimeError):
    """A model name, hub id or folder that cannot be loaded, with what to do about it."""


class HubUnreachable(ModelLoadError):
    """A hub repository that is not cached here, and the hub cannot be reached."""


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """True when `host` answers on port 443 (False at once when HF_HUB_OFFLINE is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def slug(name_or_path: str | Path) -> str:
    """A folder-safe name for a hub id or a local path (`facebook/esm2_t6_8M_UR50D` -> `facebook__esm2_t6_8M_UR50D`)."""
    text = str(name_or_path).rstrip("/")
    if Path(text).exists():
        text = Path(text).resolve().name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text.replace("/", "__"))


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def from_pretrained(cls, name_or_path: str, **kwargs):
    """`cls.from_pretrained` from a local folder, the local hub cache, or the hub."""
    if Path(name_or_path).exists():
        if not Path(name_or_path, "config.json").is_file():
            raise ModelLoadError(f"folder {name_or_path} has no config.json; pass a folder written by save_pretrained.")
        return cls.from_pretrained(name_or_path, **kwargs)
    try:
        return cls.from_pretrained(name_or_path, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if not hub_reachable():
        raise HubUnreachable(
            f"'{name_or_path}' is not a local folder, not in the Hugging Face cache, and the hub cannot "
            "be reached from here; download it where the hub is reachable (`hf download "
            f"{name_or_path} --local-dir <folder>`) and pass that folder."
        )
    try:
        return cls.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"could not load '{name_or_path}' from the Hugging Face hub ({_first_line(err)}); check the id, "
            "and for gated models log in with `hf auth login`."
        ) from None


def snapshot(repo_id: str) -> Path:
    """A local folder holding hub repository `repo_id` (the cache, or downloaded if reachable)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (the hub client raises several error types)
        pass
    if not hub_reachable():
        raise HubUnreachable(
            f"'{repo_id}' is not in the Hugging Face cache and the hub cannot be reached from here; download it "
            f"where the hub is reachable (`hf download {repo_id} --local-dir <folder>`) and pass that folder."
        )
    try:
        return Path(snapshot_download(repo_id))
    except Exception as err:  # noqa: BLE001
        raise ModelLoadError(f"could not download '{repo_id}' from the Hugging Face hub ({_first_line(err)}).") from None


def local_or_snapshot(name_or_path: str | Path) -> Path:
    """`name_or_path` itself when it exists here, else the hub repository's snapshot folder."""
    local = Path(name_or_path)
    return local if local.exists() else snapshot(str(name_or_path))


def read_config(name_or_path: str) -> dict:
    """config.json of a local folder (read as JSON: its model type may be unknown to transformers)
    or of a hub repository (through transformers' AutoConfig)."""
    from transformers import AutoConfig

    local = Path(name_or_path, "config.json")
    if local.is_file():
        return json.loads(local.read_text())
    return from_pretrained(AutoConfig, name_or_path, trust_remote_code=trusts_remote_code()).to_dict()


@contextmanager
def quiet_transformers():
    """Silence transformers' load reports while loading shipped checkpoints whose extra
    heads (AntiBERTy's species/chain heads, GPT-2's `masked_bias`) are known and unused."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
