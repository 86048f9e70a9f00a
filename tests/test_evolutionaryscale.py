"""ESM C and ESM3 through EvolutionaryScale's `esm` package, in the second environment .venv-esm.

This file runs in both environments. Tests decorated `@esm_env` need EvolutionaryScale's
package: they exist only when this file is imported inside .venv-esm. In the main environment
(where `esm` is fair-esm) they are not defined at all, and `test_the_esm_environment_tests_pass`
runs this file with .venv-esm's pytest and requires all of them to pass with none skipped.
Tests decorated `@main_env` exist only in the main environment (fair-esm is there, and
.venv-esm is reached from outside). Undecorated tests run in both.

Models are randomly initialised with the package's own constructors: ESM C 300M at full size
(30 blocks, d=960), ESM C 600M and ESM3-open at their full width with 3 blocks (each block
keeps the full-depth residual scaling factor).
"""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import SEQUENCES
from plmdepth.models import evolutionaryscale as es
from plmdepth import runner, second_env
from plmdepth.results import read_tables
from plmdepth.models import REGISTRY, ModelLoadError, load_model, resolve

ROOT = Path(__file__).resolve().parents[1]
ESM_PYTHON = ROOT / ".venv-esm" / "bin" / "python"
IN_ESM_ENV = es.package_status() == "evolutionaryscale"
MASKED = [[0, 3, 5], [2], [1, 4], [7, 8, 9]]
DMS = ROOT / "data" / "dms" / "DMS_substitutions.csv"


def esm_env(test):
    """Defined only inside .venv-esm; the main environment runs it through test_the_esm_environment_tests_pass."""
    return test if IN_ESM_ENV else None


def main_env(test):
    """Defined only in the main environment."""
    return None if IN_ESM_ENV else test


def _one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and not re.search(r"\.\s+[A-Z]", message[:-1])


def _write_fasta(path: Path) -> Path:
    path.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in SEQUENCES))
    return path


def write_random_weights(path: str, kind: str = "esmc", d_model: int = 960, n_layers: int = 2, seed: int = 0) -> None:
    """A random ESM C / ESM3 state dict as a .pth file (run inside .venv-esm: needs the package)."""
    torch.manual_seed(seed)
    torch.save(es.build(kind, d_model, n_layers).state_dict(), path)


# ------------------------------------------------------------------ both environments
def test_registry_entries_name_the_second_environment():
    expected = {"esmc_300m": ("ESM C", 30, 960, "sequence", "Cambrian Open License"),
                "esmc_600m": ("ESM C", 36, 1152, "sequence", "Cambrian Non-Commercial License"),
                "esm3_open": ("ESM3", 48, 1536, "sequence+structure",
                              "EvolutionaryScale Cambrian Non-Commercial License")}
    for name, (family, blocks, width, modality, licence) in expected.items():
        entry = REGISTRY[name]
        assert (entry.family, entry.blocks, entry.width, entry.modality, entry.licence) == \
            (family, blocks, width, modality, licence)
        # ESM C converts to transformers (models/esmc.py) and runs in the main environment; ESM3 needs .venv-esm
        assert entry.environment == ("esm" if family == "ESM3" else "main")
        assert entry.objective == "masked" and entry.source.startswith("EvolutionaryScale/")
        r = es.RELEASES[name]
        assert (r.family, r.n_layers, r.d_model, r.modality, r.licence, r.repo, r.size) == \
            (family, blocks, width, modality, licence, entry.source, entry.size)
    assert {e.environment for n, e in REGISTRY.items() if n not in expected} == {"main"}
    assert resolve("esm3_open").environment == "esm" and resolve("esmc_600m").environment == "main"
    assert resolve("some/esmc.pth").environment == "main"  # not there: the main environment's loader says so
    assert resolve("esm2_t6_8M").environment == "main" and resolve("esm2_t6_8M-fair").environment == "main"


@pytest.mark.parametrize("status, says", [("fair-esm", "is fair-esm"), ("missing", "is not installed"),
                                          ("other", "is another package")])
def test_without_evolutionaryscale_package_loading_is_a_one_sentence_error(monkeypatch, status, says):
    monkeypatch.setattr(es, "package_status", lambda: status)
    for call in (lambda: es.load_esmc("esmc_300m"), lambda: load_model("esm3_open"),
                 lambda: es.load_esmc("weights/esmc_300m_2024_12_v0.pth")):
        with pytest.raises(ModelLoadError) as err:
            call()
        message = str(err.value)
        assert _one_sentence(message), message
        assert says in message and es.ESM_RELEASE in message and "`make esm-env`" in message


def test_missing_second_environment_is_a_one_sentence_error(monkeypatch, tmp_path):
    monkeypatch.setattr(es, "package_status", lambda: "fair-esm")
    monkeypatch.setenv("PLMDEPTH_ESM_ENV", str(tmp_path / "no-venv-esm"))
    fasta = _write_fasta(tmp_path / "s.fasta")
    for call in (lambda: runner.measure("logit_lens", "esm3_open", fasta, out=tmp_path / "results"),
                 lambda: runner.measure("variant_effects", "esm3_open", DMS, out=tmp_path / "results")):
        with pytest.raises(ModelLoadError) as err:
            call()
        assert _one_sentence(str(err.value)) and "`make esm-env`" in str(err.value)
    assert not (tmp_path / "results").exists()


def test_second_environment_gets_the_run_request_as_json(monkeypatch, tmp_path):
    """No hand-kept copy of the command line: the child gets the RunRequest itself (its JSON, which
    reads back as the same request), and the results folder is the one the child prints."""
    from plmdepth.requests import RunRequest

    monkeypatch.setattr(es, "package_status", lambda: "fair-esm")
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("")
    monkeypatch.setenv("PLMDEPTH_ESM_ENV", str(tmp_path / "venv"))
    folder = tmp_path / "results" / "esm3_open"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"measurements": {"logit_lens": {}}}))
    sent = {}

    def child(argv, input, **kwargs):
        sent.update(argv=argv, request=json.loads(input))
        return subprocess.CompletedProcess(argv, 0, stdout="progress\n" + json.dumps({"results_folder": str(folder)}))

    monkeypatch.setattr(second_env.subprocess, "run", child)
    got = runner.measure("logit_lens", "esm3_open", _write_fasta(tmp_path / "s.fasta"), out=tmp_path / "results",
                     n_bootstrap=10, vocab="amino_acids")
    assert got == folder and sent["argv"][1:] == ["-m", "plmdepth", "run-request"]
    request = RunRequest.from_json(sent["request"])
    assert request == RunRequest.build("logit_lens", "esm3_open", tmp_path / "s.fasta", out=tmp_path / "results",
                                       n_bootstrap=10, vocab="amino_acids")
    assert request.model.argument == "esm3_open" and dict(request.params) == {"n_bootstrap": 10, "vocab": "amino_acids"}
    with pytest.raises(RuntimeError, match="wrote no variant_effects"):
        runner.measure("variant_effects", "esm3_open", DMS, out=tmp_path / "results")


# ------------------------------------------------------------------- main environment
@main_env
def test_esm_here_is_fair_esm_and_these_models_need_the_second_environment():
    assert es.package_status() == "fair-esm" and second_env.needed(resolve("esm3_open"))
    assert not second_env.needed(resolve("esm2_t6_8M")) and not second_env.needed(resolve("esmc_300m"))
    with pytest.raises(ModelLoadError, match="is fair-esm"):
        load_model("esm3_open")


def _require_esm_env():
    if not ESM_PYTHON.is_file():
        pytest.fail(f"{ESM_PYTHON} does not exist: create the second environment with `make esm-env` "
                    "(`make test` does)")


@pytest.mark.slow
@main_env
def test_the_esm_environment_tests_pass():
    """Every @esm_env test of this file, run with .venv-esm's pytest: all pass, none skipped."""
    _require_esm_env()
    proc = subprocess.run([str(ESM_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", __file__],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0, f".venv-esm tests failed: {summary}\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 20, summary
    assert not re.search(r"skipped|xfail|deselected|failed|error", summary), summary


@pytest.mark.slow
@main_env
def test_runs_from_the_main_environment_go_to_the_second_one(tmp_path):
    """runner.run / run_variant_effects on a random-weights .pth from the main environment: the run
    happens in .venv-esm, the results folder is the usual one, and the tables come back."""
    _require_esm_env()
    weights = tmp_path / "tiny_esm3.pth"
    subprocess.run([str(ESM_PYTHON), "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "from test_evolutionaryscale import write_random_weights; "
                    "write_random_weights(sys.argv[2], 'esm3', 1536, 2)",
                    str(ROOT / "tests"), str(weights)], cwd=ROOT, check=True)
    fasta, out = _write_fasta(tmp_path / "s.fasta"), tmp_path / "results"
    lens = _tables("logit_lens", str(weights), fasta, out=out, progress=False, batch_size=2)["logit_lens"]
    folder = out / "tiny_esm3.pth"
    pd.testing.assert_frame_equal(lens, pd.read_csv(folder / "logit_lens.csv"))
    assert list(lens["layer"]) == [0, 1, 2] and set(lens["model"]) == {"tiny_esm3"}
    last = lens.iloc[-1]
    assert last["kl"] == pytest.approx(0, abs=1e-6) and last["top1_agreement"] == 1
    skip = _tables("layer_skipping", str(weights), fasta, out=out, progress=False, max_rows=8)
    assert list(skip["skip_effect"][["skipped", "affected"]].itertuples(index=False, name=None)) == [(0, 1)]
    assert len(skip["skip_output"]) == 2
    parts = _tables("contributions", str(weights), fasta, out=out, progress=False)["contributions"]
    assert sorted(set(parts["part"])) == ["attention", "block", "mlp"]
    # batch_size 2: ESM3's geometric attention holds pairwise tensors of (batch, L, L, 256 heads), about 10 GB
    # for 16 copies of this 770-residue wild type even without coordinates
    effects = _tables("variant_effects", str(weights), DMS, out=out, assays=["A4_HUMAN_Seuma_2022_subset"],
                      max_variants=6, progress=False, n_bootstrap=10, batch_size=2)["variant_effects"]
    per_assay = effects[effects["assay"] == "A4_HUMAN_Seuma_2022_subset"]
    assert set(effects["assay"]) == {"A4_HUMAN_Seuma_2022_subset", "mean"} and list(per_assay["layer"]) == [0, 1, 2]
    assert set(effects["scoring"]) == {"masked_marginal"}
    run = json.loads((folder / "run.json").read_text())
    assert set(run["measurements"]) == {"logit_lens", "layer_skipping", "contributions", "variant_effects"}
    assert run["model"]["family"] == "ESM3" and run["model"]["checksum"].startswith("sha256:")
    assert run["model"]["n_layers"] == 2 and run["model"]["d_model"] == 1536
    # a failed run in .venv-esm comes back as one sentence
    with pytest.raises(ModelLoadError, match=r"failed \(.*letter"):
        bad = tmp_path / "bad.fasta"
        bad.write_text(">x\nMKJT\n")
        runner.measure("logit_lens", str(weights), bad, out=out, progress=False)


# --------------------------------------------------------------- inside .venv-esm
def _tables(measurement, *args, **kwargs):
    """runner.measure, then the tables it wrote."""
    return read_tables(runner.measure(measurement, *args, **kwargs), measurement)


def _batch(lm, records=SEQUENCES, masked=MASKED):
    return lm.tokenize([r.id for r in records], [r.sequence for r in records], masked=masked)


def _short_batch(lm):
    """Two short sequences (19 and 33 residues, padded, with masked positions): for the full-size model."""
    return _batch(lm, [SEQUENCES[2], SEQUENCES[0]], [[1, 4], [0, 3, 5]])


@pytest.fixture(scope="module")
def esmc_300m():
    """ESM C 300M at full size (30 blocks, d=960), random weights."""
    torch.manual_seed(0)
    return es.wrap(es.build_release("esmc_300m"), "esmc_300m", "random init")


@pytest.fixture(scope="module", params=["esmc_600m", "esm3_open"])
def shrunk(request):
    """ESM C 600M and ESM3-open at full width, 3 blocks."""
    torch.manual_seed(1)
    return es.wrap(es.build_release(request.param, n_layers=3), request.param, "random init")


@esm_env
def test_esm_here_is_evolutionaryscales_package():
    from importlib import metadata

    assert es.package_status() == "evolutionaryscale" and metadata.version("esm") == es.ESM_RELEASE.split("==")[1]
    assert not second_env.needed(resolve("esmc_300m"))


@esm_env
def test_alphabet_is_the_package_sequence_tokenizer():
    from esm.tokenization import get_esmc_model_tokenizers
    from esm.utils import encoding

    tokenizer = get_esmc_model_tokenizers()
    alphabet = es.sequence_alphabet()
    assert alphabet.tokens == tuple(sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get))
    for token, attr in (("<pad>", "pad_token_id"), ("<mask>", "mask_token_id"), ("<cls>", "cls_token_id"),
                        ("<eos>", "eos_token_id")):
        assert alphabet.id(token) == getattr(tokenizer, attr)
    assert alphabet.residues == "LAGVSERTIDPKQNFYMHWCXBUZO"
    lm = es.wrap(es.build("esmc", 64, 1, n_heads=4), "tiny", "random init")
    batch = lm.tokenize([r.id for r in SEQUENCES], [r.sequence for r in SEQUENCES])
    for row, record in zip(batch.input_ids, SEQUENCES):
        own = encoding.tokenize_sequence(record.sequence, tokenizer, add_special_tokens=True)
        assert row[: len(own)].tolist() == own.tolist()
    masked = _batch(lm)
    assert (masked.input_ids == tokenizer.mask_token_id).sum() == sum(len(m) for m in MASKED)


def _on_meta_without_files(monkeypatch, tmp_path):
    """The package's loaders, building on the meta device, with the weight files and hub folders faked."""
    import esm.pretrained
    import esm.utils.constants.esm3 as constants

    monkeypatch.setattr(esm.pretrained, "data_root", lambda model: tmp_path)
    monkeypatch.setattr(constants, "data_root", lambda model: tmp_path)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: {})
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", lambda self, state, strict=True: None)


@esm_env
@pytest.mark.parametrize("key", list(es.RELEASES))
def test_architecture_is_what_the_package_loader_builds(key, monkeypatch, tmp_path):
    import esm.pretrained

    _on_meta_without_files(monkeypatch, tmp_path)
    release = es.RELEASES[key]
    loader = getattr(esm.pretrained, release.loader)
    theirs = loader("meta", use_flash_attn=False) if release.family == "ESM C" else loader("meta")
    with torch.device("meta"):
        ours = es.build_release(key)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(ours) == shapes(theirs) and type(ours) is type(theirs)
    blocks = theirs.transformer.blocks
    assert len(blocks) == release.n_layers == REGISTRY[key].blocks
    assert theirs.transformer.norm.normalized_shape[0] == release.d_model == REGISTRY[key].width
    assert blocks[0].attn.n_heads == release.n_heads and release.d_model // release.n_heads == es.HEAD_WIDTH
    assert {b.scaling_factor for b in blocks} == {b.scaling_factor for b in ours.transformer.blocks} == \
        {math.sqrt(release.n_layers / 36)}
    assert [b.use_geom_attn for b in blocks] == [release.family == "ESM3" and i == 0 for i in range(len(blocks))]


@esm_env
def test_full_size_esmc_300m_is_the_package_forward(esmc_300m):
    lm = esmc_300m
    assert (lm.n_layers, lm.info.d_model, lm.info.family, lm.modality) == (30, 960, "ESM C", "sequence")
    assert 3.3e8 < lm.info.n_params < 3.4e8
    # the head's 64 outputs: the 33 vocabulary tokens, then 31 that belong to no token (read: the 33)
    assert lm.head[0][-1].out_features == 64 and len(lm.alphabet.tokens) == 33
    batch = _short_batch(lm)
    with torch.no_grad():
        own = lm.network(batch.input_ids, batch.attention_mask).output  # ESMCOutput
        states = dict(lm.hidden_states(batch))
        torch.testing.assert_close(lm.readout(states[30]), own.sequence_logits[..., :33], rtol=0, atol=1e-5)
        for layer in range(1, 31):  # the package's hidden states: every block's output
            torch.testing.assert_close(states[layer], own.hidden_states[layer - 1], rtol=0, atol=1e-5)
        torch.testing.assert_close(lm.final_norm(states[30]), own.embeddings, rtol=0, atol=1e-5)
        torch.testing.assert_close(states[0], lm.network.model.embed(batch.input_ids), rtol=0, atol=0)


@esm_env
def test_shrunk_esmc_600m_and_esm3_are_the_package_forward(shrunk):
    lm = shrunk
    is_esm3 = lm.info.family == "ESM3"
    assert lm.n_layers == 3 and lm.modality == ("sequence+structure" if is_esm3 else "sequence")
    batch = _batch(lm)
    with torch.no_grad():
        own = lm.network(batch.input_ids, batch.attention_mask).output
        states = dict(lm.hidden_states(batch))
        torch.testing.assert_close(lm.readout(states[3]), own.sequence_logits[..., :33], rtol=0, atol=1e-5)
        if is_esm3:  # ESMOutput.embeddings: the last block's output, before the final norm
            torch.testing.assert_close(states[3], own.embeddings, rtol=0, atol=1e-5)
        else:
            for layer in range(1, 4):
                torch.testing.assert_close(states[layer], own.hidden_states[layer - 1], rtol=0, atol=1e-5)


@esm_env
def test_a_padded_batch_gives_each_sequence_its_own_result(shrunk):
    batch = _batch(shrunk)
    with torch.no_grad():
        together = shrunk(batch)
        for i, record in enumerate(SEQUENCES):
            single = _batch(shrunk, [record], [MASKED[i]])
            alone = shrunk(single)
            torch.testing.assert_close(together[i, : alone.shape[1]], alone[0], rtol=1e-4, atol=1e-4)
        # unpadded, the sequence_id the adapter passes changes nothing against the package's default
        default = shrunk.network.model(sequence_tokens=single.input_ids).sequence_logits[..., :33]
        torch.testing.assert_close(alone, default, rtol=1e-5, atol=1e-5)


@esm_env
def test_block_parts_are_the_scaled_updates(esmc_300m, shrunk):
    """a = attn(h)/s, m = ffn(h + a)/s with s = sqrt(n_layers/36): what the block adds to the stream."""
    for lm in (esmc_300m, shrunk):
        factor = math.sqrt(es.RELEASES[lm.info.name].n_layers / 36)
        assert lm.sublayers == {"kind": "pre-LN", "mid": "ffn", "attention": "attn", "mlp": "ffn"}
        batch = _short_batch(lm)
        with torch.no_grad():
            h = lm.embed(batch)
            seen = []
            block0 = lm.layers[0]
            handle = (block0.geom_attn.register_forward_hook(lambda m, a, out: seen.append(out))
                      if block0.use_geom_attn else None)
            for layer in range(2):
                block = lm.layers[layer]
                assert block.scaling_factor == pytest.approx(factor)
                parts = lm.block_parts(layer, h, batch)
                sequence_id = batch.layer_context["args"][0]
                attention = block.attn(h, sequence_id) / block.scaling_factor
                torch.testing.assert_close(parts["attention"], attention, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(parts["mlp"], block.ffn(h + attention) / block.scaling_factor,
                                           rtol=1e-4, atol=1e-5)
                torch.testing.assert_close(parts["attention_base"] + parts["attention"] + parts["mlp"], parts["out"],
                                           rtol=1e-5, atol=1e-5)
                h = parts["out"]
            if handle is not None:  # ESM3 without coordinates: the geometric attention adds exactly zero
                handle.remove()
                assert seen and all(torch.count_nonzero(out) == 0 for out in seen)


@esm_env
def test_fast_skipping_equals_the_plain_reference(shrunk):
    """Batches of 3 and 1 (4 sequences): block arguments of a batch of one are broadcast to the skip rows."""
    from reference import assert_matches_reference, reference_skipping

    from plmdepth.probes.layer_skipping import SkipConfig, layer_skipping
    from plmdepth.plan import make_plan

    records = list(SEQUENCES)
    plan = make_plan(records, "masked", seed=2, mask_fraction=0.3)
    plans = [plan.for_id(r.id) for r in records]
    effect_table, output_table = layer_skipping(shrunk, records, plan, SkipConfig(batch_size=3),
                                                progress=False)
    effect, l2, kl = reference_skipping(shrunk, _batch(shrunk, records, [p.masked for p in plans]), plans, "future")
    assert len(effect_table) == 3 and effect_table["effect_max"].max() > 1e-3
    assert_matches_reference(effect_table, output_table, effect, l2, kl, rtol=1e-4)


@esm_env
def test_measurements_run_through_the_runner_on_a_weights_file(tmp_path):
    """ESM3 here; ESM C through the runner: test_runs_from_the_main_environment_go_to_the_second_one."""
    kind, d_model = "esm3", 1536
    weights = tmp_path / f"random_{kind}.pth"
    write_random_weights(str(weights), kind, d_model, n_layers=3, seed=4)
    fasta, out = _write_fasta(tmp_path / "s.fasta"), tmp_path / "results"
    common = dict(out=out, progress=False, n_sequences=2)
    lens = _tables("logit_lens", str(weights), fasta, **common)["logit_lens"]
    assert list(lens["layer"]) == [0, 1, 2, 3] and lens["kl"].iloc[-1] == pytest.approx(0, abs=1e-6)
    assert lens["top1_agreement"].iloc[-1] == 1 and lens["kl"].iloc[0] > 0
    aa = _tables("logit_lens", str(weights), fasta, vocab="amino_acids", **common)["logit_lens"]
    assert aa["kl"].iloc[-1] == pytest.approx(0, abs=1e-6)
    skip = _tables("layer_skipping", str(weights), fasta, **common)
    assert len(skip["skip_effect"]) == 3 and len(skip["skip_output"]) == 3
    parts = _tables("contributions", str(weights), fasta, **common)["contributions"]
    assert sorted(set(parts["part"])) == ["attention", "block", "mlp"] and set(parts["layer"]) == {0, 1, 2}
    run = json.loads((out / weights.name / "run.json").read_text())
    assert run["model"]["family"] == ("ESM3" if kind == "esm3" else "ESM C") and run["model"]["n_layers"] == 3


@esm_env
def test_weights_file_loads_into_the_package_model_it_came_from(tmp_path):
    torch.manual_seed(3)
    model = es.build("esm3", 1536, 2)
    folder = tmp_path / "esm3-download"
    (folder / "data" / "weights").mkdir(parents=True)
    torch.save(model.state_dict(), folder / "data" / "weights" / "esm3_sm_open_v1.pth")
    for path in (folder, folder / "data" / "weights" / "esm3_sm_open_v1.pth"):
        lm = load_model(str(path))
        assert lm.info.name == "esm3_open" and lm.info.licence == es.RELEASES["esm3_open"].licence
        assert lm.info.checksum.startswith("sha256:") and lm.n_layers == 2
        batch = _batch(lm)
        with torch.no_grad():
            own = model(sequence_tokens=batch.input_ids, sequence_id=batch.attention_mask.bool()).sequence_logits
            torch.testing.assert_close(lm(batch), own[..., :33], rtol=0, atol=0)
    assert str(lm.network.model.tokenizers.residue_annotations.csv_path).startswith(str(folder.resolve()))


@esm_env
def test_registered_names_load_through_the_package_loaders(monkeypatch, tmp_path):
    """esmc_300m and esm3_open go through esm.pretrained.ESMC_300M_202412 and ESM3_sm_open_v0, called as
    the package calls them (flash attention off); the checksum is the downloaded file's. (The loaders
    themselves build the architectures of test_architecture_is_what_the_package_loader_builds.)"""
    import esm.pretrained
    import huggingface_hub

    folder = tmp_path / "snapshot"
    (folder / "data" / "weights").mkdir(parents=True)
    (folder / "data" / "weights" / "esmc_300m_2024_12_v0.pth").write_bytes(b"weights")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: str(folder))
    calls = []
    for key, loader, kind in (("esmc_300m", "ESMC_300M_202412", "esmc"), ("esm3_open", "ESM3_sm_open_v0", "esm3")):
        model = es.build(kind, 64 if kind == "esmc" else 1536, 1)
        monkeypatch.setattr(esm.pretrained, loader,
                            lambda *args, model=model, **kwargs: calls.append((args, kwargs)) or model)
        lm = es.load_esmc(key) if key == "esmc_300m" else es.load_esmc("esm3-open")
        release = es.RELEASES[key]
        assert lm.network.model is model and lm.info.name == key and lm.info.family == release.family
        assert lm.info.source == f"{release.repo} via {es.ESM_RELEASE}" and lm.info.licence == release.licence
    assert calls == [(("cpu",), {"use_flash_attn": False}), (("cpu",), {})]
    assert es.load_esmc("esmc_300m").info.checksum == "sha256:" + __import__("hashlib").sha256(b"weights").hexdigest()


def _no_network(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@esm_env
def test_hub_names_without_network_are_one_sentence_errors(monkeypatch, tmp_path):
    import plmdepth.models.evolutionaryscale

    _no_network(monkeypatch, tmp_path)
    for name in ("esmc_300m", "esmc_600m", "esm3_open", "esm3_sm_open_v1"):
        start = time.perf_counter()
        with pytest.raises(ModelLoadError) as err:
            es.load_esmc(name)
        assert time.perf_counter() - start < 5
        message = str(err.value)
        assert _one_sentence(message) and "hf download EvolutionaryScale/" in message and "data/weights/" in message
    # the hub looks reachable, and the package's own loader fails
    monkeypatch.setattr(plmdepth.models.evolutionaryscale, "hub_reachable", lambda: True)
    with pytest.raises(ModelLoadError) as err:
        es.load_esmc("esmc_300m")
    assert _one_sentence(str(err.value)) and "EvolutionaryScale's loader for 'esmc_300m' failed" in str(err.value)


@esm_env
def test_bad_names_and_files_are_one_sentence_errors(tmp_path):
    cases = [("esmc_6b", "unknown EvolutionaryScale model"), (str(tmp_path / "missing.pth"), "no ESM C / ESM3 weights")]
    (tmp_path / "junk.pth").write_text("not a state dict")
    cases.append((str(tmp_path / "junk.pth"), "could not read"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pth")
    cases.append((str(tmp_path / "other.pth"), "is not an ESM C or ESM3 state dict"))
    state = es.build("esmc", 64, 1, n_heads=4).state_dict()
    state["transformer.blocks.0.ffn.1.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "broken.pth")
    cases.append((str(tmp_path / "broken.pth"), "does not load into the ESMC"))
    (tmp_path / "empty").mkdir()
    cases.append((str(tmp_path / "empty"), "holds no ESM C or ESM3 weights"))
    for name, says in cases:
        with pytest.raises(ModelLoadError) as err:
            es.load_esmc(name)
        assert says in str(err.value) and _one_sentence(str(err.value)), str(err.value)


@esm_env
def test_wrap_refuses_flash_attention_and_other_models():
    model = es.build("esmc", 64, 1, n_heads=4)
    model._use_flash_attn = True
    with pytest.raises(ValueError, match="use_flash_attn=False"):
        es.wrap(model, "x", "random init")
    with pytest.raises(TypeError, match="expected an esm.models.esmc.ESMC"):
        es.wrap(torch.nn.Linear(2, 2), "x", "random init")
    lm = es.wrap(es.build("esmc", 64, 1, n_heads=4), "x", "random init")
    batch = _batch(lm)
    with pytest.raises(ValueError, match="attention_mask must be 0 exactly there"):
        lm.network(batch.input_ids, torch.ones_like(batch.attention_mask))


# ------------------------------------------- ESM C through transformers against the package
def write_package_tables(weights: str, fasta: str, out: str) -> None:
    """Inside .venv-esm: random ESM C weights (the package's constructor, norms and biases moved off
    their initial values) saved to `weights`, and the measurements of `measurements_of` computed on
    them through EvolutionaryScale's package, written as CSVs into `out`."""
    torch.manual_seed(5)
    model = es.build("esmc", 128, 3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    torch.save(model.state_dict(), weights)
    for name, table in measurements_of(es.load_esmc(weights), fasta).items():
        table.to_csv(Path(out) / f"{name}.csv", index=False)


def measurements_of(lm, fasta: str) -> dict:
    """The logit lens, layer skipping, contributions and part skipping of `lm` on `fasta`'s records."""
    from plmdepth.fasta import read_fasta
    from plmdepth.plan import make_plan
    from plmdepth.probes.contributions import ContributionsConfig, contributions
    from plmdepth.probes.layer_skipping import SkipConfig, layer_skipping
    from plmdepth.probes.logit_lens import LogitLensConfig, logit_lens
    from plmdepth.probes.part_skipping import part_skipping

    records = read_fasta(fasta)
    plan = make_plan(records, "masked", seed=0, mask_fraction=0.3)
    effect, output = layer_skipping(lm, records, plan, SkipConfig(batch_size=2), progress=False)
    return {"logit_lens": logit_lens(lm, records, plan, LogitLensConfig(batch_size=2, n_bootstrap=20), progress=False),
            "skip_effect": effect, "skip_output": output,
            "contributions": contributions(lm, records, plan, ContributionsConfig(batch_size=2), progress=False),
            "part_skipping": part_skipping(lm, records, plan, progress=False)[0]}


@pytest.mark.slow
@main_env
def test_esmc_through_transformers_equals_the_package_on_the_same_weights(tmp_path, monkeypatch):
    """The same random ESM C weights, measured through EvolutionaryScale's package (in .venv-esm) and
    converted to transformers' EsmcForMaskedLM here (a .pth file, and a registered name read from an
    offline hub cache): every table equal (float32 tolerance, relative to each column's scale)."""
    import huggingface_hub.constants as hf_constants

    _require_esm_env()
    weights, fasta, package = tmp_path / "tiny_esmc.pth", _write_fasta(tmp_path / "s.fasta"), tmp_path / "package"
    package.mkdir()
    subprocess.run([str(ESM_PYTHON), "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "from test_evolutionaryscale import write_package_tables; write_package_tables(*sys.argv[2:])",
                    str(ROOT / "tests"), str(weights), str(fasta), str(package)], cwd=ROOT, check=True)
    spec = resolve(str(weights))
    assert (spec.loader, spec.environment) == ("esmc", "main") and not second_env.needed(spec)
    lm = load_model(spec)
    assert type(lm.network).__name__ == "EsmcForMaskedLM" and lm.info.family == "ESM C" and lm.n_layers == 3
    # the registered name, from a hub cache holding EvolutionaryScale's repository layout
    from tiny_hf import hub_cache

    release = es.RELEASES["esmc_300m"]
    repository = tmp_path / "repository"
    (repository / "data" / "weights").mkdir(parents=True)
    (repository / "data" / "weights" / release.weights_file).write_bytes(weights.read_bytes())
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hub_cache(tmp_path / "cache", release.repo, repository)))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    named = load_model("esmc_300m")
    assert named.info.licence == release.licence and named.info.checksum == lm.info.checksum
    for model in (lm, named):
        for name, table in measurements_of(model, str(fasta)).items():
            reference = pd.read_csv(package / f"{name}.csv")
            assert list(table.columns) == list(reference.columns) and len(table) == len(reference), name
            for column in table.select_dtypes("number").columns:
                a, b = table[column].to_numpy(float), reference[column].to_numpy(float)
                scale = max(1.0, float(pd.Series(abs(b)).max()))
                assert float(abs(a - b).max()) <= 1e-5 * scale, (name, column, float(abs(a - b).max()))
