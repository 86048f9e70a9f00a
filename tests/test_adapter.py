"""The generic transformers adapter on a tiny random checkpoint of every architecture it covers.

Each checkpoint is saved with `save_pretrained` next to its own tokenizer and loaded the way a
user's folder is (`load_model(folder)`). Against the model's own forward pass:

- the adapter's blocks reproduce its hidden states (`output_hidden_states=True`);
- the readout of the last block equals its logits;
- the token ids equal its tokenizer's own;
- each sublayer's update, zeroed by the adapter (`block_without`), equals a copy of the model
  whose output projection of that sublayer has zero weights (an independent way to remove it).
"""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

import tiny_hf
from reference import output_projection
from plmdepth.models import ModelLoadError, load_model, resolve
from plmdepth.models.registry import HUB_PLMS
from plmdepth.tokens import TokenizedAlphabet

SEQS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "EVQLVESGGGLVQPGGSLRLSCAAS", "GSHMLEDPVDAF"]
TOL = 2e-5  # float32, relative to the largest value compared


@pytest.fixture(scope="module", params=tiny_hf.ARCHITECTURES)
def folder_lm(request, tmp_path_factory):
    folder = tiny_hf.write(request.param, tmp_path_factory.mktemp(request.param))
    return request.param, folder, load_model(str(folder))


def _close(mine: torch.Tensor, own: torch.Tensor, real: torch.Tensor) -> float:
    err = float((mine - own)[real].abs().max() / own[real].abs().max().clamp_min(1.0))
    assert err <= TOL, err
    return err


@torch.no_grad()
def test_blocks_reproduce_hidden_states_and_logits(folder_lm):
    model_type, folder, lm = folder_lm
    # ESM-2 folders keep their own loader (DPLM objectives), itself a case of the adapter
    assert resolve(str(folder)).loader == ("esm2" if model_type == "esm" else "transformers")
    batch = lm.tokenize([f"s{i}" for i in range(len(SEQS))], SEQS)
    own = lm.network(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True,
                     **lm.forward_kwargs)
    real = batch.attention_mask.bool()
    states = [h for _, h in lm.hidden_states(batch)]
    assert len(states) == len(own.hidden_states) == lm.n_layers + 1
    for layer in range(lm.n_layers):
        _close(states[layer], own.hidden_states[layer], real)
    last = own.hidden_states[-1]  # transformers reports the last one before or after the final norm
    normed = lm.final_norm(states[-1]) if lm.final_norm is not None else states[-1]
    best = min(float((states[-1] - last)[real].abs().max()), float((normed - last)[real].abs().max()))
    assert best <= TOL * float(last[real].abs().max().clamp_min(1.0))
    _close(lm.readout(states[-1]), own.logits, real)


def test_token_ids_are_the_tokenizers_own(folder_lm):
    from transformers import AutoTokenizer

    model_type, folder, lm = folder_lm
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = lm.tokenize(["a"], [SEQS[0]])
    mine = batch.true_ids[0][batch.attention_mask[0].bool()].tolist()
    text = " ".join(SEQS[0]) if model_type == "bert" else SEQS[0]  # ProtBert-style: residues separated by spaces
    own = tokenizer(text)["input_ids"]
    if lm.alphabet.prefix and own[:1] != [tokenizer.convert_tokens_to_ids(lm.alphabet.prefix[0])]:
        own = [tokenizer.convert_tokens_to_ids(lm.alphabet.prefix[0])] + own  # bos added for a causal model
    assert mine == own
    # every residue is held by exactly one token, in order
    held = batch.residue_index[0][batch.residue_index[0] >= 0].tolist()
    assert held == sorted(held) and held[0] == 0
    if lm.alphabet.one_residue_per_token:
        assert held == list(range(len(SEQS[0])))


@pytest.mark.parametrize("part", ["attention", "mlp"])
@torch.no_grad()
def test_a_zeroed_sublayer_equals_a_model_without_its_output_projection(folder_lm, part):
    model_type, folder, lm = folder_lm
    batch = lm.tokenize([f"s{i}" for i in range(len(SEQS))], SEQS)
    real = batch.attention_mask.bool()
    s = 1
    h = [h for _, h in lm.hidden_states(batch)]
    mine = lm.block_without(s, h[s], batch, part)
    assert float((mine - h[s + 1])[real].abs().max()) > 1e-4  # the sublayer does something
    reference = copy.deepcopy(lm.network)
    path = next(name for name, m in lm.network.named_modules() if m is lm.layers[s])
    module = reference.get_submodule(path).get_submodule(lm.sublayers[part])
    projection = output_projection(module, lambda: reference(input_ids=batch.input_ids,
                                                              attention_mask=batch.attention_mask,
                                                              **lm.forward_kwargs))
    for p in projection.parameters():
        p.zero_()
    own = reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True,
                    **lm.forward_kwargs)
    _close(mine, own.hidden_states[s + 1], real)


@torch.no_grad()
def test_block_parts_add_up(folder_lm):
    model_type, folder, lm = folder_lm
    batch = lm.tokenize(["a", "b"], SEQS[:2])
    h = lm.embed(batch)
    parts = lm.block_parts(0, h, batch)
    real = batch.attention_mask.bool()
    if lm.sublayers["kind"] == "pre-LN":
        _close(parts["mlp_base"], h + parts["attention"], real)
        _close(parts["out"], parts["mlp_base"] + parts["mlp"], real)
    elif lm.sublayers["kind"] == "parallel":
        _close(parts["out"], h + parts["attention"] + parts["mlp"], real)
    else:  # post-LN: each update is added before a norm
        assert parts["attention"].shape == parts["mlp"].shape == h.shape


def test_the_tokenizer_kind_is_what_the_vocabulary_needs(folder_lm):
    model_type, folder, lm = folder_lm
    cut = model_type in ("llama", "mistral", "qwen2", "gpt_neox")  # trained byte-pair vocabularies
    assert isinstance(lm.alphabet, TokenizedAlphabet) == cut
    assert lm.alphabet.one_residue_per_token == (not cut)
    assert set("ACDEFGHIKLMNPQRSTVWY") <= set(lm.alphabet.residues)


def test_a_vocabulary_without_the_amino_acids_is_refused(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"ACDEFGHIK"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", mask_token="[MASK]", unk_token="[UNK]")
    BertForMaskedLM(BertConfig(vocab_size=len(vocab), **tiny_hf.SIZE)).save_pretrained(tmp_path)
    fast.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"cannot express the amino acids L, M, N, P, Q, R, S, T, V, W, Y"):
        load_model(str(tmp_path))


def test_remote_code_is_refused_unless_asked(tmp_path):
    import json

    tiny_hf.write("bert", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForMaskedLM": "modeling_custom.CustomForMaskedLM"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="--trust-remote-code"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("model_type", tiny_hf.ARCHITECTURES)
def test_the_command_line_runs_the_logit_lens_on_a_folder(model_type, tmp_path, fasta_file, capsys):
    from plmdepth.cli import main

    folder = tiny_hf.write(model_type, tmp_path / model_type)
    status = main(["run", "logit-lens", "--model", str(folder), "--fasta", str(fasta_file), "--out",
                   str(tmp_path / "results"), "--n-sequences", "3"])
    assert status == 0, capsys.readouterr().err
    table = pd.read_csv(tmp_path / "results" / model_type / "logit_lens.csv")
    assert table["layer"].tolist() == list(range(4)) and abs(table["kl"].iloc[-1]) < 1e-6
    assert table["kl"].iloc[0] > 1e-4


@pytest.mark.parametrize("model_type", ["bert", "llama", "esmc"])
def test_a_hub_id_loads_from_the_offline_cache(model_type, tmp_path, monkeypatch):
    folder = tiny_hf.write(model_type, tmp_path / "saved")
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_hf.hub_cache(tmp_path / "cache", f"plmdepth-test/tiny-{model_type}", folder)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    spec = resolve(f"plmdepth-test/tiny-{model_type}")
    assert (spec.loader, spec.slug) == ("transformers", f"plmdepth-test__tiny-{model_type}")
    lm = load_model(spec)
    assert lm.info.source == f"plmdepth-test/tiny-{model_type}@{'0' * 40}"
    local = load_model(str(folder))
    assert lm.info.checksum == local.info.checksum
    batch = lm.tokenize(["a"], [SEQS[0]])
    with torch.no_grad():
        assert torch.equal(lm(batch), local(batch))
    with pytest.raises(ModelLoadError, match="not in the Hugging Face cache"):
        resolve("plmdepth-test/not-there")


def test_remote_code_runs_with_the_flag(tmp_path, monkeypatch, caplog):
    """--trust-remote-code lets a model whose repository ships its architecture's code load (the
    code runs: here a subclass of BertForMaskedLM), and a warning names the code."""
    import json

    folder = tiny_hf.write("bert", tmp_path)
    (folder / "modeling_custom.py").write_text(
        "from transformers import BertForMaskedLM, BertConfig\n\n"
        "class CustomConfig(BertConfig):\n    model_type = 'custom-bert'\n\n"
        "class CustomForMaskedLM(BertForMaskedLM):\n    config_class = CustomConfig\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "modeling_custom.CustomConfig",
                          "AutoModelForMaskedLM": "modeling_custom.CustomForMaskedLM"}
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("PLMDEPTH_TRUST_REMOTE_CODE", "1")
    with caplog.at_level("WARNING"):
        lm = load_model(str(folder))
    assert type(lm.network).__name__ == "CustomForMaskedLM"
    assert "running the Python code shipped with" in caplog.text and "modeling_custom.CustomForMaskedLM" in caplog.text


# each registry row of a hub PLM, and the tiny architecture of its layout (tests/tiny_hf.py)
ROW_LAYOUTS = {"ProtBert": "bert", "IgBert": "bert", "AntiBERTa2": "roformer", "ZymCTRL": "gpt2", "ProLLaMA": "llama", "ESM-1b": "esm", "ESM-1v": "esm"}


@pytest.mark.parametrize("name", [row[0] for row in HUB_PLMS])
def test_each_hub_plm_row_loads_a_checkpoint_of_its_layout_from_the_cache(name, tmp_path, monkeypatch):
    """A random checkpoint of the row's layout, placed in an offline hub cache under the row's hub id,
    loads by the registry name through the generic adapter, with the row's family and licence."""
    import huggingface_hub.constants as hf_constants

    from plmdepth.models import REGISTRY

    entry = REGISTRY[name]
    folder = tiny_hf.write(ROW_LAYOUTS[entry.family], tmp_path / "saved")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tiny_hf.hub_cache(tmp_path / "cache", entry.source, folder)))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm = load_model(name)
    assert (lm.info.name, lm.info.family, lm.info.licence, lm.objective) == (name, entry.family, entry.licence,
                                                                            entry.objective)
    assert lm.info.source.startswith(entry.source + "@")
    batch = lm.tokenize(["a"], [SEQS[0]])
    with torch.no_grad():
        torch.testing.assert_close(lm.readout(list(lm.hidden_states(batch))[-1][1]), lm(batch), rtol=1e-5, atol=1e-5)


def test_a_forward_that_does_more_than_norm_and_head_is_refused(tmp_path):
    """Gemma-2 soft-caps its logits after the head: the readout of its last block would not be its
    output distribution, so it is refused in one sentence rather than measured wrongly."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    tokenizer = tiny_hf.trained_bpe("sentencepiece")
    config = Gemma2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, final_logit_softcapping=0.5,
                          pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    Gemma2ForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"its forward does more after the last block than a final norm and a "
                                             r"head") as err:
        load_model(str(tmp_path))
    assert "\n" not in str(err.value)


def test_a_model_without_a_language_model_head_class_is_refused(tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    tiny_hf.write("bert", tmp_path)  # its tokenizer
    for f in ("config.json", "model.safetensors"):
        (tmp_path / f).unlink()
    T5ForConditionalGeneration(T5Config(vocab_size=30, d_model=32, d_ff=64, num_layers=2, num_heads=4,
                                        d_kv=8)).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"\(t5\) has no MaskedLM class in transformers"):
        load_model(str(tmp_path))
