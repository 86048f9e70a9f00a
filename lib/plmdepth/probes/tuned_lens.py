"""The tuned lens (Belrose et al. 2023, "Eliciting latent predictions from transformers with
the tuned lens"), measured beside the logit lens on the same held-out sequences.

`TunedLens` has the logit lens's contract, `lens(h, layer) -> logits`, with one learned
affine translator per readable layer l = first_lens_layer..L-1:

    lens(h, l) = readout(h + A_l h + b_l),      lens(h, L) = readout(h)  (the model's own output)

A_l and b_l start at zero (a residual `nn.Linear` with zero init), so an untrained tuned lens
*is* the logit lens. `vocab="amino_acids"` restricts the logits to the 20 canonical amino acids.

`train_tuned_lens` fits the translators, the model frozen, on a seeded share of the sequences
(`train_fraction`), at the logit lens's evaluated positions (masked residues / every
next-residue prediction), by minimising the tuned-lens paper's loss, the final distribution
being the target:

    loss = sum_l  mean_positions  KL(p_L || p_l^tuned),   p = softmax(lens(h, layer)).

`tuned_lens` (the measurement) trains, then reads the held-out sequences through both lenses
and returns the logit lens's table with a `lens` column ("logit", "tuned"); there `kl` is the
logit lens's KL(p_l || p_L) (the direction of `logit_lens.py`, so the two tables compare) and
`kl_reverse` KL(p_L || p_l) (the direction the translators are trained on, and the one the
tuned-lens evaluation code reports), with `top1_agreement`, `top1_accuracy`, `n_positions` and
bootstrap 95% intervals over sequences; `per_sequence=True` adds the per-sequence sums of both
lenses (`tuned_lens_per_sequence.csv`, as `logit_lens_per_sequence.csv` with a `lens` column).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from plmdepth.fasta import Record
from plmdepth.model import ProteinLM, state_dict_checksum
from plmdepth.plan import MaskingPlan
from plmdepth.probes import baselines
from plmdepth.probes.logit_lens import LogitLens, LogitLensAccumulator, LogitLensConfig, evaluated_positions
from plmdepth.probes.streaming import _save, length_sorted_batches, stream

CACHE_BYTES = 2**30  # hidden states kept between epochs (beyond this, batches are recomputed)
TRANSLATORS_FILE = "tuned_lens_translators.pt"  # written next to the checkpoint, in the results folder


class TunedLens(LogitLens):
    """`lens(h, layer) -> logits = readout(h + A_l h + b_l)`; `translators[str(l)]` holds A_l, b_l."""

    def __init__(self, lm: ProteinLM, vocab: str = "full", d_model: int | None = None):
        super().__init__(lm, vocab)
        d = d_model or lm.info.d_model
        self.translators = nn.ModuleDict({str(l): nn.utils.skip_init(nn.Linear, d, d, device=lm.device)
                                          for l in range(lm.first_lens_layer, lm.n_layers)})  # no RNG drawn
        for translator in self.translators.values():
            nn.init.zeros_(translator.weight)
            nn.init.zeros_(translator.bias)

    def forward(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        if str(layer) in self.translators:  # in float32 whatever the model's dtype; exact identity at init
            h32 = h.float()
            h = (h32 + self.translators[str(layer)](h32)).to(h.dtype)
        return super().forward(h, layer)


@dataclass
class TunedLensConfig:
    """Parameters of a tuned-lens run (written to run.json verbatim)."""

    vocab: str = "full"
    train_fraction: float = 0.5
    epochs: int = 50
    lr: float = 1e-3
    batch_size: int = 16
    n_bootstrap: int = 1000
    seed: int = 0


def split_records(records: list[Record], train_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (sorted) of the training and held-out records: a permutation drawn with `seed`,
    its first round(train_fraction * n) records (at least 1, at most n - 1) for training."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be between 0 and 1 (exclusive), not {train_fraction}")
    if len(records) < 2:
        raise ValueError("the tuned lens needs at least 2 sequences: some to train on, the others held out")
    order = np.random.default_rng(seed).permutation(len(records))
    k = min(max(1, round(train_fraction * len(records))), len(records) - 1)
    return sorted(int(i) for i in order[:k]), sorted(int(i) for i in order[k:])


@contextmanager
def _frozen(lm: ProteinLM):
    """No gradients for the model's parameters (restored afterwards); they are never changed."""
    flags = [(p, p.requires_grad) for p in lm.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@torch.no_grad()
def _features(lm, lens, records, plan, rows):
    """h_l at the evaluated positions for l = first..L-1, and log p_L there (the target)."""
    recs = [records[i] for i in rows]
    plans = [plan.for_id(r.id) for r in recs]
    masked = [p.masked for p in plans] if lm.objective != "autoregressive" else None
    batch = lm.tokenize([r.id for r in recs], [r.sequence for r in recs], masked=masked)
    sel = evaluated_positions(lm, batch, plans)
    hs = [h[sel] for layer, h in lm.hidden_states(batch) if layer >= lm.first_lens_layer]
    return hs[:-1], torch.log_softmax(lens(hs[-1], lm.n_layers).float(), dim=-1)


def train_tuned_lens(lm: ProteinLM, records: list[Record], plan: MaskingPlan,
                     config: TunedLensConfig | None = None) -> tuple[TunedLens, dict]:
    """Fit the translators on the training split of `records` (Adam, `epochs` passes over
    length-sorted batches in a seeded order each epoch); the model is frozen throughout.

    Returns the lens and a log: `train_ids`, `held_out_ids` (the split) and `epochs`, a table
    of the mean training loss per epoch (KL(p_L || p_l), mean over layers, position-weighted).
    Hidden states are computed once per batch under `torch.no_grad()` and kept while they fit
    in `CACHE_BYTES`. Deterministic for a given seed on CPU.
    """
    config = config or TunedLensConfig()
    train, held_out = split_records(records, config.train_fraction, config.seed)
    train_records = [records[i] for i in train]
    batches = length_sorted_batches(train_records, config.batch_size)
    readout, cache, cached_bytes = LogitLens(lm, config.vocab), {}, 0

    def features(b: int):
        nonlocal cached_bytes
        if b not in cache:
            hs, target = _features(lm, readout, train_records, plan, batches[b])
            size = sum(t.numel() * t.element_size() for t in [*hs, target])
            if cached_bytes + size > CACHE_BYTES:
                return hs, target
            cache[b], cached_bytes = (hs, target), cached_bytes + size
        return cache[b]

    hs0 = features(0)[0]
    lens = TunedLens(lm, config.vocab, d_model=hs0[0].shape[-1] if hs0 else None)
    optimizer = torch.optim.Adam(lens.translators.parameters(), lr=config.lr)
    rng, log = np.random.default_rng(config.seed), []
    with _frozen(lm):
        for epoch in range(config.epochs):
            total, n_total = 0.0, 0
            for b in rng.permutation(len(batches)):
                hs, target = features(b)
                if len(target) == 0 or not hs:
                    continue
                optimizer.zero_grad()
                p_final = target.exp()
                for layer, h in enumerate(hs, start=lm.first_lens_layer):  # one graph at a time: less memory
                    logp = torch.log_softmax(lens(h, layer).float(), dim=-1)
                    loss = (p_final * (target - logp)).sum(-1).mean()  # KL(p_L || p_l)
                    loss.backward()
                    total += float(loss.detach()) / len(hs) * len(target)
                optimizer.step()
                n_total += len(target)
            log.append({"epoch": epoch + 1, "kl": total / max(n_total, 1), "n_positions": n_total})
    return lens, {"train_ids": [records[i].id for i in train], "held_out_ids": [records[i].id for i in held_out],
                  "epochs": pd.DataFrame(log, columns=["epoch", "kl", "n_positions"])}


def save_translators(lens: TunedLens, path: str | Path) -> None:
    """Write the translators as plain tensors and values (read back with `weights_only=True`)."""
    _save(path, {"vocab": lens.vocab, "model_checksum": lens.lm.info.checksum,
                 "translators": {k: v.detach().cpu() for k, v in lens.translators.state_dict().items()}})


def load_translators(lm: ProteinLM, path: str | Path) -> TunedLens:
    """A `TunedLens` on `lm` with the translators saved at `path` by `save_translators`."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("model_checksum") != lm.info.checksum:
        raise ValueError(f"the translators in {path} were trained on another model; train them on this one")
    state = saved["translators"]
    lens = TunedLens(lm, saved["vocab"], d_model=next(iter(state.values())).shape[-1] if state else None)
    lens.translators.load_state_dict(state)
    return lens


class _BothLenses:
    """The logit-lens accumulator run twice on each batch: through the logit and the tuned lens."""

    def __init__(self, lm, records, plan, lens: TunedLens, config: LogitLensConfig):
        self.parts = {"logit": LogitLensAccumulator(lm, records, plan, config),
                      "tuned": LogitLensAccumulator(lm, records, plan, config)}
        self.parts["tuned"].lens = lens

    def add(self, rows: list[int]) -> None:
        for part in self.parts.values():
            part.add(rows)

    def state_dict(self) -> dict:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, part in self.parts.items():
            part.load_state_dict(state[name])

    def result(self) -> pd.DataFrame:
        return self._both(lambda part: part.result())

    def per_sequence(self) -> pd.DataFrame:
        return self._both(lambda part: part.per_sequence())

    def _both(self, table) -> pd.DataFrame:
        frame = pd.concat([table(part).assign(lens=name) for name, part in self.parts.items()], ignore_index=True)
        return frame[["lens", *[c for c in frame.columns if c != "lens"]]]


def tuned_lens(lm: ProteinLM, records: list[Record], plan: MaskingPlan, config: TunedLensConfig | None = None,
               progress: bool = True, checkpoint=None, key=None, per_sequence: bool = False) -> tuple[pd.DataFrame, ...]:
    """Measurement: train on the training split, read the held-out split through both lenses.

    Returns (`tuned_lens`: the logit lens's table per lens and layer, `tuned_lens_split`: id
    and split of every record, `tuned_lens_training`: the loss per epoch, `tuned_lens_baselines`:
    the trivial predictors' top-1 accuracy on the same positions, `baselines.py`). Training is not
    resumable; the evaluation is (its checkpoint key includes the translators' checksum).
    Given a `checkpoint`, the translators are saved beside it as `TRANSLATORS_FILE`.
    """
    config = config or TunedLensConfig()
    lens, log = train_tuned_lens(lm, records, plan, config)
    train, held = split_records(records, config.train_fraction, config.seed)  # the split trained on
    held_out = [records[i] for i in held]
    if checkpoint is not None:
        save_translators(lens, Path(checkpoint).with_name(TRANSLATORS_FILE))
    eval_config = LogitLensConfig(config.vocab, config.batch_size, config.n_bootstrap, config.seed)
    acc = _BothLenses(lm, held_out, plan, lens, eval_config)
    eval_key = {"run": key, "translators": state_dict_checksum(lens.translators)}
    stream(acc, held_out, config.batch_size, f"tuned lens {lm.info.name}", progress, checkpoint, eval_key)
    split = pd.DataFrame({"id": [r.id for r in records],
                          "split": ["train" if i in set(train) else "held_out" for i in range(len(records))]})
    table = (baselines.trivial_baselines([records[i] for i in train], held_out, baselines.model_positions(lm, plan),
                                         config.n_bootstrap, config.seed)
             if baselines.applies(lm) else baselines.no_baselines())
    return (acc.result(), split, log["epochs"], table, *((acc.per_sequence(),) if per_sequence else ()))
