"""Residual contributions (SPEC M1): how much each block, and each sublayer, adds.

For every block l, at every residue token of every sequence (no masking):

- block:     ‖Δ_l‖ / ‖h_l‖ with Δ_l = h_{l+1} − h_l, and cos(Δ_l, h_l);
- attention: ‖a_l‖ / ‖h_l‖ and cos(a_l, h_l);
- mlp:       ‖m_l‖ / ‖h_l + a_l‖ and cos(m_l, h_l + a_l).

Norms are L2 over the hidden dimension with eps = 1e-6 in denominators. Post-LN models
(BERT: AntiBERTy) report sublayer updates on the pre-norm sums they enter (see
`ProteinLM.block_parts`); their block ratio compares consecutive (normalised) streams.
Parallel blocks (ProGen2) add both updates to h, so their MLP ratio is ‖m_l‖ / ‖h_l‖.
Results are streamed: per (layer, part) a running sum of ratios and cosines, a running max
and a count; per sequence the same sums and count (`per_sequence=True`:
`contributions_per_sequence.csv`, what an interval over sequences resamples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from plmdepth.fasta import Record
from plmdepth.model import ProteinLM, widened
from plmdepth.plan import MaskingPlan
from plmdepth.probes.streaming import stream

EPS = 1e-6


@dataclass
class ContributionsConfig:
    """Parameters of a residual-contributions run (written to run.json verbatim)."""

    batch_size: int = 16
    seed: int = 0


def ratio_and_cosine(update: torch.Tensor, base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token: ‖update‖ / max(‖base‖, eps) and the cosine similarity of update and base."""
    update, base = update.double(), base.double()
    u, b = update.norm(dim=-1), base.norm(dim=-1)
    return u / b.clamp_min(EPS), (update * base).sum(-1) / (u * b).clamp_min(EPS)


class ContributionsAccumulator:
    """Per (layer, part): running sum of ratios, max ratio, sum of cosines, token count."""

    outputs = ("contributions",)

    def __init__(self, lm: ProteinLM, records: list[Record], plan: MaskingPlan | None, config: ContributionsConfig):
        self.lm, self.records, self.config = lm, records, config
        self.parts = ["block"] + (["attention", "mlp"] if lm.sublayers.get("kind") else [])
        self.stats = np.zeros((lm.n_layers, len(self.parts), 4))  # ratio sum, ratio max, cosine sum, n
        self.per_seq = np.zeros((len(records), lm.n_layers, len(self.parts), 3))  # ratio sum, cosine sum, n

    @torch.no_grad()
    def add(self, rows: list[int]) -> None:
        """Fold one batch in. The per-(layer, part) sums and maxima stay on the device and are
        read back once per batch; the block update is taken in float32 at least (a no-op for a
        float32 model) before the float64 norms, so a bfloat16 run does not round it twice."""
        lm = self.lm
        recs = [self.records[i] for i in rows]
        batch = lm.tokenize([r.id for r in recs], [r.sequence for r in recs])
        keep = (batch.residue_index >= 0).reshape(-1).nonzero().squeeze(1)  # residue tokens, found once
        n_tokens = len(keep)
        owner = keep // batch.residue_index.shape[1]  # each residue token's row in the batch
        per_row = torch.bincount(owner, minlength=len(rows)).cpu().numpy()

        def residues(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1, x.shape[-1]).index_select(0, keep)

        h = lm.embed(batch)
        found = []  # (layer, part, [ratio sum, ratio max, cosine sum])
        for layer in range(lm.n_layers):
            if layer < lm.first_lens_layer:  # the block changes the stream's width: no ratio
                h = lm.block(layer, h, batch)
                continue
            out = lm.block_parts(layer, h, batch)
            pairs = {"block": (widened(out["out"]) - widened(h), h)}
            if "attention" in out:
                pairs["attention"] = (out["attention"], out["attention_base"])
                pairs["mlp"] = (out["mlp"], out["mlp_base"])
            for p, part in enumerate(self.parts):
                ratio, cosine = ratio_and_cosine(residues(pairs[part][0]), residues(pairs[part][1]))
                by_row = torch.zeros(2, len(rows), dtype=ratio.dtype, device=ratio.device)
                by_row[0].index_add_(0, owner, ratio)
                by_row[1].index_add_(0, owner, cosine)
                found.append((layer, p, torch.cat([torch.stack([ratio.sum(), ratio.max(), cosine.sum()]),
                                                   by_row.reshape(-1)])))
            h = out["out"]
        if found:
            values = torch.stack([v for _, _, v in found]).cpu().numpy()
            for (layer, p, _), (ratio_sum, ratio_max, cosine_sum, *by_row) in zip(found, values):
                s = self.stats[layer, p]
                s[0] += float(ratio_sum)
                s[1] = max(s[1], float(ratio_max))
                s[2] += float(cosine_sum)
                s[3] += n_tokens
                ratios, cosines = np.array(by_row).reshape(2, len(rows))
                self.per_seq[rows, layer, p] += np.stack([ratios, cosines, per_row], axis=1)

    def state_dict(self) -> dict:
        return {"stats": self.stats.copy(), "per_seq": self.per_seq.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.stats, self.per_seq = np.array(state["stats"]), np.array(state["per_seq"])

    def per_sequence(self) -> pd.DataFrame:
        """Per sequence, layer and part: `ratio_sum`, `cosine_sum` over its residue tokens and `n_tokens`."""
        layers = range(self.lm.first_lens_layer, self.lm.n_layers)
        rows = [{"sequence": rec.id, "layer": layer, "part": part, "ratio_sum": v[0], "cosine_sum": v[1],
                 "n_tokens": int(v[2])}
                for i, rec in enumerate(self.records) for layer in layers for p, part in enumerate(self.parts)
                for v in (self.per_seq[i, layer, p],) if v[2] > 0]
        return pd.DataFrame(rows, columns=["sequence", "layer", "part", "ratio_sum", "cosine_sum", "n_tokens"])

    def result(self) -> pd.DataFrame:
        rows = [{"layer": layer, "part": part, "ratio_mean": s[0] / s[3], "ratio_max": s[1],
                 "cosine_mean": s[2] / s[3], "n_tokens": int(s[3])}
                for p, part in enumerate(self.parts) for layer, s in enumerate(self.stats[:, p])
                if layer >= self.lm.first_lens_layer]
        frame = pd.DataFrame(rows)
        frame.insert(2, "relative_depth", (frame["layer"] + 1) / self.lm.n_layers)
        frame["norm"] = self.lm.info.norm
        return frame


def contributions(lm: ProteinLM, records: list[Record], plan: MaskingPlan | None = None,
                  config: ContributionsConfig | None = None, progress: bool = True, checkpoint=None,
                  key=None, per_sequence: bool = False):
    """Measurement M1: one row per (part, layer) in the `contributions.csv` format of SPEC §4 (and,
    with `per_sequence`, the per-sequence sums as a second table)."""
    acc = ContributionsAccumulator(lm, records, plan, config or ContributionsConfig())
    stream(acc, records, acc.config.batch_size, f"contributions {lm.info.name}", progress, checkpoint, key)
    return (acc.result(), acc.per_sequence()) if per_sequence else acc.result()
