"""The logit lens (SPEC M4, paper Figs. 3-4).

`LogitLens` is a small module with one contract, `lens(h, layer) -> logits`: the model's
own readout (final norm + full LM head) applied to the residual stream after `layer`
blocks. At layer L it is the model's own output. With `vocab="amino_acids"` the logits are
restricted to the 20 canonical amino acids (the softmax then renormalises over them).

`logit_lens` streams sequences through the model in batches and, at the evaluated
positions (masked positions for masked/diffusion models, every residue position for
autoregressive ones, where the output at the token before residue i predicts i), measures
for every layer l = 0..L:

- `kl`: KL(p_l || p_L) in nats, p_l = softmax(lens(h_l, l)) (Csordás et al.'s direction),
- `kl_reverse`: KL(p_L || p_l), the other direction (the one the tuned lens is trained on),
- `top1_agreement`: argmax p_l == argmax p_L,
- `top1_accuracy`: argmax p_l == the true residue,

as means over positions, with bootstrap 95% intervals over sequences. Given
`per_sequence=True` it also returns what any other statistic's bootstrap needs: per sequence
and layer, the sums over its evaluated positions and their count (`logit_lens_per_sequence.csv`;
the position-weighted mean of a resample is the sum of its sums over the sum of its counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from plmdepth.fasta import Record
from plmdepth.model import ProteinLM
from plmdepth.plan import MaskingPlan
from plmdepth.probes.streaming import stream

VOCABS = ("full", "amino_acids")
METRICS = ("kl", "top1_agreement", "top1_accuracy", "kl_reverse")


class LogitLens(nn.Module):
    """`lens(h, layer) -> logits`: the model's readout applied at any depth."""

    def __init__(self, lm: ProteinLM, vocab: str = "full"):
        super().__init__()
        if vocab not in VOCABS:
            raise ValueError(f"vocab must be one of {VOCABS}, not {vocab!r}")
        self.lm, self.vocab = lm, vocab
        ids = lm.alphabet.canonical_ids if vocab == "amino_acids" else list(range(len(lm.alphabet.tokens)))
        self.register_buffer("token_ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        self.max_token_id = max(ids)  # known on the host: `class_of` need not read it back from the device

    def forward(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        logits = self.lm.readout(h)
        return logits if self.vocab == "full" else logits.index_select(-1, self.token_ids.to(logits.device))

    def class_of(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Index into this lens's output classes of each token id (-1 if not a class)."""
        lookup = torch.full((self.max_token_id + 1,), -1, dtype=torch.long, device=token_ids.device)
        lookup[self.token_ids.to(token_ids.device)] = torch.arange(len(self.token_ids), device=token_ids.device)
        inside = (token_ids >= 0) & (token_ids < len(lookup))
        return torch.where(inside, lookup[token_ids.clamp(0, len(lookup) - 1)], torch.full_like(token_ids, -1))


@dataclass
class LogitLensConfig:
    """Parameters of a logit-lens run (written to run.json verbatim)."""

    vocab: str = "full"
    batch_size: int = 16
    n_bootstrap: int = 1000
    seed: int = 0


def layer_log_probs(lm: ProteinLM, lens: LogitLens, batch, select: torch.Tensor,
                    dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """log p_l at the `select`ed tokens for every readable layer l (from `lm.first_lens_layer`
    to L), all from one pass through the model.

    The logits are cast to `dtype` (float32 or float64) before the softmax, so a model run in
    bfloat16 gets its log-probabilities, and every KL built on them, in full precision. The
    selected tokens are found once (a boolean index costs a device sync, per layer otherwise).
    """
    index = select.reshape(-1).nonzero().squeeze(1)
    return [torch.log_softmax(lens(h.reshape(-1, *h.shape[2:]).index_select(0, index), layer).to(dtype), dim=-1)
            for layer, h in lm.hidden_states(batch) if layer >= lm.first_lens_layer]


def evaluated_positions(lm: ProteinLM, batch, plans) -> torch.Tensor:
    """Bool (B, T): tokens whose output is evaluated (masked residues / all next-residue predictions)."""
    if lm.objective == "autoregressive":
        return batch.target_index >= 0
    sel = torch.zeros_like(batch.residue_index, dtype=torch.bool)
    for b, plan in enumerate(plans):
        sel[b] = torch.isin(batch.residue_index[b], torch.tensor(plan.masked, dtype=torch.long, device=sel.device))
    return sel & (batch.residue_index >= 0)


class LogitLensAccumulator:
    """Per sequence and layer: sums of KL, agreement and accuracy, and the position count."""

    outputs = ("logit_lens",)

    def __init__(self, lm: ProteinLM, records: list[Record], plan: MaskingPlan, config: LogitLensConfig):
        self.lm, self.records, self.plan, self.config = lm, records, plan, config
        self.lens = LogitLens(lm, config.vocab).to(lm.device)
        n, L = len(records), lm.n_layers
        self.sums = {k: np.zeros((n, L + 1)) for k in METRICS}
        self.sums["n_positions"] = np.zeros(n)

    @torch.no_grad()
    def add(self, rows: list[int]) -> None:
        lm, lens = self.lm, self.lens
        recs = [self.records[i] for i in rows]
        plans = [self.plan.for_id(r.id) for r in recs]
        masked = [p.masked for p in plans] if lm.objective != "autoregressive" else None
        batch = lm.tokenize([r.id for r in recs], [r.sequence for r in recs], masked=masked)
        sel = evaluated_positions(lm, batch, plans)
        owner = torch.tensor(rows, device=sel.device)[:, None].expand_as(sel)[sel].cpu().numpy()
        target = lens.class_of(batch.target_ids[sel])
        first = lm.first_lens_layer
        logp = layer_log_probs(lm, lens, batch, sel)
        final = logp[-1]
        final_top = final.argmax(-1)
        per_layer = {k: [] for k in METRICS}
        for lp in logp:  # on the device; read back once per batch below
            top = lp.argmax(-1)
            per_layer["kl"].append((lp.exp() * (lp - final)).sum(-1))
            per_layer["kl_reverse"].append((final.exp() * (final - lp)).sum(-1))
            per_layer["top1_agreement"].append(top == final_top)
            per_layer["top1_accuracy"].append(top == target)
        for key, values in per_layer.items():
            values = torch.stack(values).double().cpu().numpy()  # [layers read, positions]
            for layer, value in enumerate(values, start=first):
                np.add.at(self.sums[key][:, layer], owner, value)
        np.add.at(self.sums["n_positions"], owner, 1)

    def state_dict(self) -> dict:
        return {k: v.copy() for k, v in self.sums.items()}

    def load_state_dict(self, state: dict) -> None:
        self.sums = {k: np.array(v) for k, v in state.items()}

    def result(self) -> pd.DataFrame:
        frame = summarise(self.sums, self.config.n_bootstrap, self.config.seed)
        return frame[frame["layer"] >= self.lm.first_lens_layer].reset_index(drop=True)

    def per_sequence(self) -> pd.DataFrame:
        """Per sequence (with evaluated positions) and readable layer: `<metric>_sum` over its positions
        and `n_positions`."""
        counts, first = self.sums["n_positions"], self.lm.first_lens_layer
        keep = np.flatnonzero(counts > 0)
        layers = np.arange(first, self.lm.n_layers + 1)
        frame = pd.DataFrame({"sequence": np.repeat([self.records[i].id for i in keep], len(layers)),
                              "layer": np.tile(layers, len(keep))})
        for key in METRICS:
            frame[f"{key}_sum"] = self.sums[key][keep][:, first:].reshape(-1)
        frame["n_positions"] = np.repeat(counts[keep], len(layers)).astype(int)
        return frame


def summarise(sums: dict[str, np.ndarray], n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Position-weighted means per layer, with bootstrap 95% intervals over sequences."""
    counts = sums["n_positions"]
    keep = counts > 0
    counts = counts[keep]
    n_layers = sums["kl"].shape[1]
    frame = pd.DataFrame({"layer": np.arange(n_layers)})
    frame["relative_depth"] = frame["layer"] / (n_layers - 1)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(counts), np.full(len(counts), 1 / len(counts)), size=n_bootstrap) if n_bootstrap else None
    for key in (k for k in METRICS if k in sums):
        values = sums[key][keep]
        frame[key] = values.sum(0) / counts.sum()
        if weights is not None:
            boot = (weights @ values) / (weights @ counts)[:, None]
            frame[f"{key}_low"], frame[f"{key}_high"] = np.percentile(boot, [2.5, 97.5], axis=0)
    frame["n_positions"] = int(counts.sum())
    frame["n_sequences"] = int(keep.sum())
    return frame


def logit_lens(lm: ProteinLM, records: list[Record], plan: MaskingPlan, config: LogitLensConfig | None = None,
               progress: bool = True, checkpoint=None, key=None, per_sequence: bool = False):
    """Measurement M4: one row per layer 0..L in the `logit_lens.csv` format of SPEC §4 (and, with
    `per_sequence`, the per-sequence sums as a second table)."""
    acc = LogitLensAccumulator(lm, records, plan, config or LogitLensConfig())
    stream(acc, records, acc.config.batch_size, f"logit lens {lm.info.name}", progress, checkpoint, key)
    return (acc.result(), acc.per_sequence()) if per_sequence else acc.result()
