"""ESM C (300M, 600M) and ESM3-open through EvolutionaryScale's `esm` package, as `ProteinLM`s.

EvolutionaryScale's package (PyPI `esm`, pinned in requirements-esm.txt) and fair-esm (PyPI
`fair-esm`, in the main environment) both install the import name `esm`, so they cannot share
an environment. These models run in a second one, `.venv-esm` (`make esm-env`); from the main
environment, `runner.run` and `runner.run_variant_effects` run them there
(`.venv-esm/bin/python -m plmdepth run ...`) and read the results folder back. In the main
environment every function here that needs the package raises `ModelLoadError` saying so.

Anatomy (esm/models/esmc.py, esm/models/esm3.py, esm/layers/{transformer_stack,blocks}.py):

- `embed`: the model's own forward stopped at the entrance of `model.transformer.blocks[0]`
  (`ProteinLM.embed`'s pre-hook). ESM C: h_0 = `model.embed(tokens)`. ESM3: h_0 = the sum of
  the embeddings of all its input tracks (`model.encoder`), sequence plus the structure,
  secondary-structure, SASA, function and residue-annotation tracks and pLDDT.
- blocks: `model.transformer.blocks` (`UnifiedTransformerBlock`), called with the arguments
  the model's own forward passes: ``(h, sequence_id, affine, affine_mask, chain_id)``.
- readout: `model.transformer.norm` (LayerNorm without bias), then the sequence head
  (`model.sequence_head`, ESM3 `model.output_heads.sequence_head`: Linear, GELU, LayerNorm,
  Linear to 64 outputs). The head has 64 outputs for a 33-token vocabulary: outputs 33-63
  belong to no token, and the package's own samplers never pick them (they keep only valid
  token ids). The wrapper reads the 33 vocabulary outputs, in the readout and in the model's
  own logits alike (`SequenceTrackLM`), so "full vocabulary" means the 33 tokens here as for
  every other model.
- sublayers (pre-LN, ``mid = "ffn"``): a block computes
  ``x = h + attn(h) / s`` (ESM3 block 0 also adds ``geom_attn(x) / s``), then
  ``out = x + ffn(x) / s``, where `ffn` starts with its own LayerNorm and s is the residual
  scaling factor sqrt(n_layers / 36) (ESM C 300M: sqrt(30/36); 600M: 1; ESM3-open:
  sqrt(48/36)). The input of `ffn` is therefore h + a with a the scaled attention update,
  so `block_parts` gives a = attn(h)/s and m = ffn(h + a)/s, the updates actually added to
  the stream (h_{l+1} = h + a + m exactly). ESM3's block 0 counts its geometric attention in
  the attention update; without coordinates it adds exactly zero (`mask_and_zero_frameless`
  zeroes its output where no frame is defined, and its out_proj has no bias).

ESM3 is used through its sequence track only: the forward gets `sequence_tokens` and
`sequence_id` and leaves every other track at the package's defaults (structure tokens
<mask> with <bos>/<eos>/<pad> at the special positions, no coordinates, secondary structure,
SASA, function and residue annotations <pad>, average pLDDT 1, per-residue pLDDT 0). Only the
sequence logits are read.

Padding: both models take the padding from `sequence_id`; the adapter passes
``input_ids != <pad>`` (what ESM C's forward uses when none is given; ESM3's own default is no
mask at all, which lets real tokens attend to padding, so a padded batch would change each
sequence's result). Flash attention is never used (the models are built with
``use_flash_attn=False``): it unpads the stream into one packed row, which the blocks'
measurements cannot read.

Tokens: EvolutionaryScale's sequence vocabulary (`esm.utils.constants.esm3.SEQUENCE_VOCAB`,
33 tokens, the same order as ESM-2's with the chain-break token "|" at 31), framed
``<cls> residues <eos>``, with <mask> for masked positions.

Loading (`load_esmc`): a registered name (``esmc_300m``, ``esmc_600m``, ``esm3_open``, or the
package's own names ``esm3-open``/``esm3_sm_open_v1``) goes through the package's own loaders
(`esm.pretrained.ESMC_300M_202412`, `ESMC_600M_202412`, `ESM3_sm_open_v0`), which fetch the
weights from the Hugging Face hub; a path to a ``.pth`` state dict (the file those loaders
read, e.g. ``esmc_300m_2024_12_v0.pth``) or to a folder that holds one under
``data/weights/`` is loaded into a model built with the package's own constructors (`ESMC`,
`ESM3`), with the architecture read from the state dict's shapes.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from plmdepth import weights
from plmdepth.model import ModelInfo, ProteinLM
from plmdepth.model import n_params, state_dict_checksum
from plmdepth.models.hub import ModelLoadError, hub_reachable
from plmdepth.tokens import Alphabet

ESM_RELEASE = "esm==3.2.1.post1"  # requirements-esm.txt
MAKE_ENV = "make esm-env"
MAX_RESIDUES = 2046  # the package sets none (rotary, no position table); EvolutionaryScale's ESM C API takes 2048
HEAD_WIDTH = 64  # every released ESM C / ESM3 has 64-wide attention heads (960/15, 1152/18, 1536/24)
# pre-LN: `ffn`'s input is h + a; the attention update is `attn`'s output (over s), the MLP update `ffn`'s
SUBLAYERS = {"kind": "pre-LN", "mid": "ffn", "attention": "attn", "mlp": "ffn"}


@dataclass(frozen=True)
class Release:
    """A released model: the package's loader and names, and its architecture (esm/pretrained.py)."""

    key: str  # plmdepth's registry name
    family: str
    loader: str  # function in esm.pretrained
    repo: str  # Hugging Face repository the package downloads
    weights_file: str  # under data/weights/ in that repository
    d_model: int
    n_heads: int
    n_layers: int
    modality: str
    licence: str
    size: str


RELEASES = {
    r.key: r for r in (
        Release("esmc_300m", "ESM C", "ESMC_300M_202412", "EvolutionaryScale/esmc-300m-2024-12",
                "esmc_300m_2024_12_v0.pth", 960, 15, 30, "sequence", "Cambrian Open License", "300M"),
        Release("esmc_600m", "ESM C", "ESMC_600M_202412", "EvolutionaryScale/esmc-600m-2024-12",
                "esmc_600m_2024_12_v0.pth", 1152, 18, 36, "sequence", "Cambrian Non-Commercial License", "600M"),
        Release("esm3_open", "ESM3", "ESM3_sm_open_v0", "EvolutionaryScale/esm3-sm-open-v1",
                "esm3_sm_open_v1.pth", 1536, 24, 48, "sequence+structure",
                "EvolutionaryScale Cambrian Non-Commercial License", "1.4B"),
    )
}
# the package's own names (esm.utils.constants.models) for ESM3-open; its ESM C names are the keys above
ALIASES = {"esm3-open": "esm3_open", "esm3_sm_open_v1": "esm3_open", "esm3-sm-open-v1": "esm3_open",
           "esm3-open-2024-03": "esm3_open"}
ESM3_V_HEADS = 256


# ----------------------------------------------------------------- which `esm` is this
def package_status() -> str:
    """What the import name `esm` is here: "evolutionaryscale", "fair-esm", "other" or "missing".

    Read from the files of the package (nothing is imported): EvolutionaryScale's has
    esm/models/esmc.py, fair-esm's esm/model/esm2.py.
    """
    spec = importlib.util.find_spec("esm")
    if spec is None:
        return "missing"
    folders = [Path(p) for p in (spec.submodule_search_locations or [])]
    if any((f / "models" / "esmc.py").is_file() for f in folders):
        return "evolutionaryscale"
    if any((f / "model" / "esm2.py").is_file() for f in folders):
        return "fair-esm"
    return "other"


def require_package() -> None:
    """Raise `ModelLoadError` unless `esm` here is EvolutionaryScale's package."""
    status = package_status()
    if status == "evolutionaryscale":
        return
    here = {"fair-esm": "is fair-esm (the two packages share the import name `esm`)",
            "other": "is another package", "missing": "is not installed"}[status]
    raise ModelLoadError(
        f"ESM C and ESM3 need EvolutionaryScale's `esm` package ({ESM_RELEASE}), but `esm` in this environment "
        f"{here}; create the second environment with `{MAKE_ENV}` and run them there "
        "(`.venv-esm/bin/python -m plmdepth run ...`, which plmdepth's runner does for you).")


# ------------------------------------------------------------------------- tokens
def sequence_alphabet() -> Alphabet:
    """EvolutionaryScale's sequence vocabulary, framed <cls> ... <eos>, with <mask>."""
    require_package()
    from esm.utils.constants.esm3 import SEQUENCE_VOCAB

    return Alphabet(tuple(SEQUENCE_VOCAB), pad="<pad>", mask="<mask>", unk="<unk>", prefix=("<cls>",),
                    suffix=("<eos>",))


# ------------------------------------------------------------------------ adapter
@dataclass
class SequenceTrackOutput:
    """What `SequenceTrackLM.forward` returns: the vocabulary's sequence logits [B, T, 33] and the
    package's own output (its `sequence_logits` have all 64 head outputs)."""

    logits: torch.Tensor
    output: object  # ESMCOutput or ESMOutput, as the package's forward returned it


class VocabularyOutputs(nn.Module):
    """The first `n_tokens` outputs of a head (the ones that belong to tokens)."""

    def __init__(self, n_tokens: int):
        super().__init__()
        self.n_tokens = n_tokens

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[..., : self.n_tokens]


class SequenceTrackLM(nn.Module):
    """An `ESMC` or `ESM3` with ``forward(input_ids, attention_mask) -> .logits`` (its sequence logits
    over the 33 vocabulary tokens).

    Calls the model's own forward with ``sequence_tokens=input_ids`` and
    ``sequence_id = input_ids != <pad>``; ESM3's other tracks stay at the package's defaults.
    """

    def __init__(self, model: nn.Module, n_tokens: int = 33):
        from esm.utils.constants.esm3 import SEQUENCE_PAD_TOKEN

        super().__init__()
        self.model = model
        self.vocabulary = VocabularyOutputs(n_tokens)
        self.pad_id = SEQUENCE_PAD_TOKEN

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SequenceTrackOutput:
        sequence_id = input_ids != self.pad_id
        if attention_mask is not None and not torch.equal(attention_mask.bool(), sequence_id):
            raise ValueError("ESM C and ESM3 take padding from the <pad> tokens; attention_mask must be 0 exactly there")
        output = self.model(sequence_tokens=input_ids, sequence_id=sequence_id)
        return SequenceTrackOutput(logits=self.vocabulary(output.sequence_logits), output=output)


def sequence_head(model: nn.Module) -> nn.Module:
    """The sequence head: `model.sequence_head` (ESM C) or `model.output_heads.sequence_head` (ESM3)."""
    return model.output_heads.sequence_head if hasattr(model, "output_heads") else model.sequence_head


def wrap(model: nn.Module, name: str, source: str, family: str | None = None, licence: str = "unknown",
         checksum: str | None = None) -> ProteinLM:
    """An `esm.models.esmc.ESMC` or `esm.models.esm3.ESM3` as a `ProteinLM` (pre-LN; see the module doc)."""
    require_package()
    from esm.models.esm3 import ESM3
    from esm.models.esmc import ESMC

    if not isinstance(model, (ESMC, ESM3)):
        raise TypeError(f"expected an esm.models.esmc.ESMC or esm.models.esm3.ESM3, not {type(model).__name__}")
    if getattr(model, "_use_flash_attn", False):
        raise ValueError("build the model with use_flash_attn=False: flash attention packs the stream into one row")
    is_esm3 = isinstance(model, ESM3)
    blocks = model.transformer.blocks
    d_model = blocks[0].ffn[0].normalized_shape[0]
    info = ModelInfo(name=name, source=source, family=family or ("ESM3" if is_esm3 else "ESM C"), objective="masked",
                     modality="sequence+structure" if is_esm3 else "sequence", n_layers=len(blocks), d_model=d_model,
                     n_params=n_params(model), licence=licence, checksum=checksum or state_dict_checksum(model),
                     norm="pre-LN")
    alphabet = sequence_alphabet()
    adapter = SequenceTrackLM(model.eval(), len(alphabet.tokens))
    head = nn.Sequential(sequence_head(model), adapter.vocabulary)
    return ProteinLM(adapter, blocks, model.transformer.norm, head, alphabet, info, max_residues=MAX_RESIDUES,
                     sublayers=SUBLAYERS)


# ------------------------------------------------------------------- constructors
def esm3_tokenizers(root: Path | None = None):
    """ESM3-open's tokenizer collection (`get_esm3_model_tokenizers`) without touching the hub.

    The package's own function reads the residue-annotation vocabulary from the hub repository
    at construction; here that file is read lazily from `root` (the downloaded repository, if
    known), and only when residue annotations are tokenized, which plmdepth never does.
    """
    from esm.tokenization import (EsmSequenceTokenizer, InterProQuantizedTokenizer, ResidueAnnotationsTokenizer,
                                  SASADiscretizingTokenizer, SecondaryStructureTokenizer, StructureTokenizer,
                                  TokenizerCollection)
    from esm.utils.constants.esm3 import RESID_CSV

    return TokenizerCollection(sequence=EsmSequenceTokenizer(), structure=StructureTokenizer(),
                               secondary_structure=SecondaryStructureTokenizer(kind="ss8"),
                               sasa=SASADiscretizingTokenizer(), function=InterProQuantizedTokenizer(),
                               residue_annotations=ResidueAnnotationsTokenizer(
                                   csv_path=str(Path(root or "EvolutionaryScale/esm3-sm-open-v1") / RESID_CSV)))


def build(kind: str, d_model: int, n_layers: int, n_heads: int | None = None, v_heads: int = ESM3_V_HEADS,
          root: Path | None = None) -> nn.Module:
    """A randomly initialised `ESMC` (kind "esmc") or `ESM3` ("esm3") from the package's constructors,
    with the arguments `esm.pretrained` uses (and flash attention off)."""
    require_package()
    import esm.pretrained as pretrained
    from esm.models.esm3 import ESM3
    from esm.models.esmc import ESMC
    from esm.tokenization import get_esmc_model_tokenizers

    n_heads = n_heads or d_model // HEAD_WIDTH
    if kind == "esmc":
        return ESMC(d_model=d_model, n_heads=n_heads, n_layers=n_layers, tokenizer=get_esmc_model_tokenizers(),
                    use_flash_attn=False).eval()
    if kind == "esm3":
        return ESM3(d_model=d_model, n_heads=n_heads, v_heads=v_heads, n_layers=n_layers,
                    structure_encoder_fn=pretrained.ESM3_structure_encoder_v0,
                    structure_decoder_fn=pretrained.ESM3_structure_decoder_v0,
                    function_decoder_fn=pretrained.ESM3_function_decoder_v0, tokenizers=esm3_tokenizers(root)).eval()
    raise ValueError(f"kind must be 'esmc' or 'esm3', not {kind!r}")


def build_release(key: str, n_layers: int | None = None) -> nn.Module:
    """A randomly initialised model of a release's architecture (`n_layers` shrinks the depth only:
    the blocks keep the full-depth residual scaling factor)."""
    r = RELEASES[key]
    model = build("esm3" if r.family == "ESM3" else "esmc", r.d_model, n_layers or r.n_layers, r.n_heads)
    for block in model.transformer.blocks:
        block.scaling_factor = math.sqrt(r.n_layers / 36)
    return model


def architecture_of(state: dict) -> dict:
    """kind, d_model, n_layers (and v_heads for ESM3) read from a state dict's keys and shapes."""
    if "embed.weight" in state:
        kind, embed = "esmc", state["embed.weight"]
    elif "encoder.sequence_embed.weight" in state:
        kind, embed = "esm3", state["encoder.sequence_embed.weight"]
    else:
        raise KeyError("neither 'embed.weight' (ESM C) nor 'encoder.sequence_embed.weight' (ESM3)")
    blocks = {int(k.split(".")[2]) for k in state if k.startswith("transformer.blocks.")}
    arch = {"kind": kind, "d_model": int(embed.shape[1]), "n_layers": max(blocks) + 1 if blocks else 0}
    if kind == "esm3":
        arch["v_heads"] = int(state["transformer.blocks.0.geom_attn.distance_scale_per_head"].shape[0])
    return arch


# ------------------------------------------------------------------------ loading
def _gist(err: Exception) -> str:
    """An exception's message as one clause: its lines joined, its first sentence, at most 200 characters."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
    text = re.split(r"(?<=\.)\s+(?=[A-Z])", text)[0].rstrip(".")
    return text if len(text) <= 200 else text[:197] + "..."


def _weights_in_folder(folder: Path) -> Path:
    for r in RELEASES.values():
        path = folder / "data" / "weights" / r.weights_file
        if path.is_file():
            return path
    raise ModelLoadError(f"folder {folder} holds no ESM C or ESM3 weights under data/weights/ "
                         f"({', '.join(r.weights_file for r in RELEASES.values())}); pass the .pth file itself.")


def _load_file(path: Path, name: str | None) -> ProteinLM:
    if path.is_dir():
        path = _weights_in_folder(path)
    if not path.is_file():
        raise ModelLoadError(f"no ESM C / ESM3 weights file at {path}; pass a .pth state dict such as "
                             "esmc_300m_2024_12_v0.pth from EvolutionaryScale/esmc-300m-2024-12.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise ModelLoadError(f"could not read {path} as a state dict ({type(err).__name__}: "
                             f"{_gist(err)}).") from None
    try:
        arch = architecture_of(state)
    except (KeyError, AttributeError, TypeError, IndexError) as err:
        raise ModelLoadError(f"{path} is not an ESM C or ESM3 state dict ({_gist(err)}); pass a .pth file "
                             "that EvolutionaryScale's loaders read, such as esmc_300m_2024_12_v0.pth.") from None
    # a file in a downloaded repository (<root>/data/weights/x.pth) has the ESM3 tokenizer files at <root>
    root = path.resolve().parents[2] if path.resolve().parent.name == "weights" else None
    model = build(arch["kind"], arch["d_model"], arch["n_layers"], v_heads=arch.get("v_heads", ESM3_V_HEADS),
                  root=root)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelLoadError(f"{path} does not load into the {arch['kind'].upper()} its shapes imply "
                             f"({_gist(err)}).") from None
    release = next((r for r in RELEASES.values() if r.weights_file == path.name), None)
    return wrap(model, name or (release.key if release else path.stem), str(path),
                licence=release.licence if release else "unknown", checksum="sha256:" + weights.sha256_of(path))


def _load_release(release: Release, name: str | None) -> ProteinLM:
    import esm.pretrained as pretrained
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(release.repo, local_files_only=True)
        cached = True
    except Exception:  # noqa: BLE001 - not cached (the hub client raises several error types)
        cached = False
    what_to_do = (f"download it where the hub is reachable (`hf download {release.repo} --local-dir <folder>`) "
                  f"and pass <folder>/data/weights/{release.weights_file} (or <folder>)")
    if not cached and not hub_reachable():
        raise ModelLoadError(f"'{release.key}' needs the Hugging Face repository {release.repo}, which is not in the "
                             f"local cache and cannot be reached from here; {what_to_do}.")
    loader = getattr(pretrained, release.loader)
    try:
        model = loader("cpu", use_flash_attn=False) if release.family == "ESM C" else loader("cpu")
    except Exception as err:  # noqa: BLE001 - the hub client and torch.load raise many types
        raise ModelLoadError(f"EvolutionaryScale's loader for '{release.key}' failed ({_gist(err)}); "
                             f"{what_to_do}.") from None
    try:
        file = Path(snapshot_download(release.repo, local_files_only=True)) / "data" / "weights" / release.weights_file
        checksum = "sha256:" + weights.sha256_of(file)
    except Exception:  # noqa: BLE001 - weights read from elsewhere (INFRA_PROVIDER): checksum the tensors
        checksum = None
    return wrap(model, name or release.key, f"{release.repo} via {ESM_RELEASE}", family=release.family,
                licence=release.licence, checksum=checksum)


def load_esmc(name_or_path: str, name: str | None = None) -> ProteinLM:
    """ESM C 300M/600M or ESM3-open as a `ProteinLM` in eval mode: a registered name (through the
    package's own loaders, which need the hub or its cache) or a local .pth file / downloaded folder."""
    require_package()
    text = str(name_or_path)
    key = ALIASES.get(text, text)
    if key in RELEASES:
        return _load_release(RELEASES[key], name)
    path = Path(text)
    if path.exists() or text.endswith(".pth"):
        return _load_file(path, name)
    raise ModelLoadError(f"unknown EvolutionaryScale model '{text}'; use {', '.join(RELEASES)} (or esm3-open, "
                         "esm3_sm_open_v1), or the path of a .pth weights file.")
