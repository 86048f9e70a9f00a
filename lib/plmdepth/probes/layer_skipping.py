"""Layer skipping (SPEC M2, M3; paper Figs. 1-2): what changes when block s is skipped.

Skipping block s means h'_{s+1} := h_s at every *intervened* position, the normal block
output elsewhere, and the rest of the network recomputed normally. Positions:

- mode "future" (default), masked/diffusion models: intervened = every residue outside the
  plan's held-out set F ⊂ M; measured = F. Autoregressive models: one intervention per
  split point t of the plan, intervened = residues < t, measured = residues >= t.
- mode "current": intervened = measured = every residue position.
- mode "local": as "current", but nothing after block s is recomputed: the skipped update is
  subtracted from the last residual stream, h'_L := h_L − u_s (the update's *direct* effect on
  the output, Csordás et al.'s local effect). Later blocks are then unchanged by construction,
  so M2 has no rows; defined for pre-LN and parallel blocks, whose stream carries each update
  additively to the output (a post-LN block re-normalises it).

`part` says what is skipped: the whole block ("block", u_s = h_{s+1} − h_s), or only its
attention or only its MLP ("attention", "mlp": that sublayer's update set to zero, the rest of
the block run as it is: `ProteinLM.block_without`; in "local" mode u_s is that update,
`ProteinLM.block_parts`).

Each intervention (a sequence, or a sequence and split point) is a *unit*. Per unit, for
every later block j > s (M2) ``r(s, j) = max_{p in F} ‖Δ_j − Δ'_j‖ / max(‖Δ_j‖, eps)``
and on the output (M3) ``max_{p in F} ‖softmax(z_p) − softmax(z'_p)‖_2`` and the mean
KL(p ‖ p') over F. Units are aggregated by max (the paper's choice) and by mean; the sums and counts per
sequence are kept too (`per_sequence=True`), for intervals by resampling sequences.

Fast by design: one clean pass caches the residual stream h_0..h_L; the run that skips s
starts from the cached h_s / h_{s+1} instead of recomputing the prefix, and all skip
variants that have reached block j go through it in one batched call (at most `max_rows`
rows per call: skip variants are chunked, and units are grouped when one batch has more). Aggregation is online, so memory does not grow with the number of
sequences. The plain reference (one full forward per skipped block) lives in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from plmdepth.fasta import Record
from plmdepth.probes.logit_lens import LogitLens
from plmdepth.model import ProteinLM, widened
from plmdepth.plan import MaskingPlan
from plmdepth.probes.streaming import stream
from plmdepth.tokens import Batch

EPS = 1e-6
MODES = ("future", "current", "local")
PARTS = ("block", "attention", "mlp")


@dataclass
class SkipConfig:
    """Parameters of a layer-skipping run (written to run.json verbatim)."""

    mode: str = "future"
    vocab: str = "full"
    batch_size: int = 8
    max_rows: int = 64
    seed: int = 0
    null: bool = False  # skip nothing (h'_{s+1} := h_{s+1}): every effect is numerical noise (probes.noise_floor)
    part: str = "block"  # "block", or only its "attention" or only its "mlp"


def check_config(lm: ProteinLM, config: SkipConfig) -> None:
    """One sentence when `config` cannot run on `lm`."""
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {config.mode!r}")
    if config.part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {config.part!r}")
    if config.part != "block" and not {"attention", "mlp"} <= set(lm.sublayers):
        raise ValueError(f"{lm.info.name}: its blocks' sublayers are not known, so its attention or MLP alone "
                         "cannot be skipped (part='block' can).")
    if config.mode == "local" and lm.sublayers.get("kind", lm.info.norm) not in ("pre-LN", "parallel"):
        raise ValueError(f"{lm.info.name}: a local (direct) effect needs blocks that add their updates to the "
                         f"stream unnormalised (pre-LN or parallel); its blocks are {lm.info.norm}.")


def intervention_units(lm: ProteinLM, batch: Batch, plans, mode: str):
    """(row, intervened, measured) for every unit of a batch; bool masks over tokens, on the
    batch's device. They are built on the host (one copy each way per batch, where deciding
    which units have positions to measure on the device would wait for it once per unit)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    device = batch.input_ids.device
    mode = "current" if mode == "local" else mode  # the same positions: all intervened, all measured
    residue_index = batch.residue_index.cpu()
    residue = residue_index >= 0
    rows, intervened, measured = [], [], []
    for b, plan in enumerate(plans):
        idx = residue_index[b]
        if mode == "current":
            units = [(residue[b], residue[b])]
        elif lm.objective == "autoregressive":
            units = [(residue[b] & (idx < t), residue[b] & (idx >= t)) for t in plan.splits]
        else:
            future = torch.isin(idx, torch.tensor(plan.future, dtype=torch.long)) & residue[b]
            units = [(residue[b] & ~future, future)]
        for inter, meas in units:
            if meas.any():
                rows.append(b)
                intervened.append(inter)
                measured.append(meas)
    if not rows:
        return None
    return torch.tensor(rows, device=device), torch.stack(intervened).to(device), torch.stack(measured).to(device)


def select_rows(batch: Batch, rows: torch.Tensor, ids: list[str] | None = None) -> Batch:
    """A view of `batch` whose blocks see rows `rows` (block arguments re-indexed). `ids`, the
    rows' sequence ids when the caller knows them, spares reading `rows` back from the device."""
    B = batch.input_ids.shape[0]

    def pick(value):
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == B and B > 1:
            return value.index_select(0, rows)
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == 1 and B == 1:
            return value.expand(len(rows), *value.shape[1:])
        if isinstance(value, tuple):
            return tuple(pick(v) for v in value)
        return value

    tensors = [getattr(batch, name).index_select(0, rows) for name in
               ("input_ids", "attention_mask", "true_ids", "residue_index", "target_index", "target_ids")]
    view = Batch(ids if ids is not None else [batch.ids[i] for i in rows.tolist()], *tensors)
    def context(c: dict) -> dict:
        return {"args": tuple(pick(a) for a in c["args"]), "kwargs": {k: pick(v) for k, v in c["kwargs"].items()}}

    view.layer_context = context(batch.layer_context)
    if "layers" in batch.layer_context:  # blocks that receive arguments of their own (ProteinLM.per_layer_arguments)
        view.layer_context["layers"] = [context(c) for c in batch.layer_context["layers"]]
    return view


class _Aggregate:
    """Online max / sum / count over units, per key; and the sum and count per sequence (what a
    bootstrap over sequences needs: a resample's mean is the sum of its sums over the sum of its
    counts)."""

    def __init__(self, shape, n_sequences: int = 0):
        self.max = np.full(shape, -np.inf)
        self.sum = np.zeros(shape)
        self.count = np.zeros(shape)
        self.seq_sum = np.zeros((n_sequences, *np.atleast_1d(shape)))
        self.seq_count = np.zeros((n_sequences, *np.atleast_1d(shape)))

    def add(self, index, values: np.ndarray, owners: np.ndarray | None = None):
        self.max[index] = max(self.max[index], float(values.max()))
        self.sum[index] += float(values.sum())
        self.count[index] += len(values)
        if owners is not None:
            where = (owners, *np.atleast_1d(index))
            np.add.at(self.seq_sum, where, values)
            np.add.at(self.seq_count, where, 1)

    def mean(self):
        return self.sum / np.maximum(self.count, 1)

    fields = ("max", "sum", "count", "seq_sum", "seq_count")


def _masked_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values.masked_fill(~mask, -torch.inf).amax(-1)


@torch.no_grad()
def skip_batch(lm: ProteinLM, batch: Batch, units, lens: LogitLens, config: SkipConfig, effect, prob_l2, kl,
               owners: np.ndarray | None = None):
    """Accumulate M2/M3 for one batch of sequences into the aggregates (and per sequence, given
    `owners`: the sequence index of each unit).

    The clean pass runs once per batch; its units are then processed in groups of at most
    `max_rows`, so that no block call sees more than `max_rows` rows.
    """
    clean = [h for _, h in lm.hidden_states(batch)]  # h_0 .. h_L, cached once
    rows, intervened, measured = units
    step = max(1, config.max_rows)
    for g in range(0, len(rows), step):
        group = (rows[g:g + step], intervened[g:g + step], measured[g:g + step])
        group_owners = None if owners is None else owners[g:g + step]
        if config.mode == "local":
            _local_units(lm, batch, clean, group, lens, config, prob_l2, kl, group_owners)
        else:
            _skip_units(lm, batch, clean, group, lens, config, effect, prob_l2, kl, group_owners)


def _output_effects(p_clean: torch.Tensor, logp: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
    """(2, n, U): per variant and unit, max ‖p − p'‖_2 and mean KL(p ‖ p') over the measured positions."""
    l2 = (logp.exp() - p_clean.exp()[None]).norm(dim=-1)
    kl_pos = (p_clean.exp()[None] * (p_clean[None] - logp)).sum(-1)
    return torch.stack([_masked_max(l2, measured[None]), (kl_pos * measured[None]).sum(-1) / measured.sum(-1)[None]])


def _local_units(lm: ProteinLM, batch: Batch, clean, units, lens: LogitLens, config: SkipConfig, prob_l2, kl,
                 owners=None):
    """Mode "local": the output with block s's update (or its part's) taken out of h_L directly."""
    rows, intervened, measured = units
    L = lm.n_layers
    unit_batch = select_rows(batch, rows)
    H = [h.index_select(0, rows) for h in clean]
    p_clean = torch.log_softmax(lens(H[L], L).double(), -1)
    inter = intervened[..., None]
    skips, outputs = list(range(lm.first_lens_layer, L)), []
    for s in skips:
        if config.null:
            update = torch.zeros_like(widened(H[L]))
        elif config.part == "block":
            update = widened(H[s + 1]) - widened(H[s])
        else:
            update = widened(lm.block_parts(s, H[s], unit_batch)[config.part])
        stream = (widened(H[L]) - torch.where(inter, update, torch.zeros_like(update))).to(H[L].dtype)
        logp = torch.log_softmax(lens(stream, L).double(), -1)[None]
        outputs.append(_output_effects(p_clean, logp, measured))
    for s, (l2_unit, kl_unit) in zip(skips, _to_host(outputs)):
        prob_l2.add(s, l2_unit[0], owners)
        kl.add(s, kl_unit[0], owners)


def _skip_units(lm: ProteinLM, batch: Batch, clean, units, lens: LogitLens, config: SkipConfig, effect, prob_l2,
                kl, owners=None):
    """Every skip variant for a group of units, starting from the cached clean streams.

    Per-unit numbers stay on the device until the group is done and are read back at once
    (one device sync per group, not one per block). Updates are taken in float32 at least
    (`widened`: a no-op for a float32 or float64 model): in bfloat16, Δ_j − Δ'_j would otherwise be the
    difference of two rounded differences. Output distributions are compared in float64.
    """
    rows, intervened, measured = units
    L, U = lm.n_layers, len(rows)
    unit_batch = select_rows(batch, rows)
    H = [h.index_select(0, rows) for h in clean]  # per unit
    first = lm.first_lens_layer  # before it, blocks change the stream's width: not skippable
    p_clean = torch.log_softmax(lens(H[L], L).double(), -1)
    inter = intervened[..., None]
    per_chunk = max(1, config.max_rows // U)
    effects, outputs = [], []  # ((s, j) keys, (n, U) tensor); (skips, (l2, kl) (n, U) tensors)
    for chunk_start in range(first, L, per_chunk):
        skips = list(range(chunk_start, min(L, chunk_start + per_chunk)))
        stream, active = None, []
        for j in range(skips[0] + 1, L + 1):
            if j - 1 in skips:
                if config.null:
                    start = H[j]
                elif config.part == "block":
                    start = torch.where(inter, H[j - 1], H[j])
                else:  # block j-1 run with one sublayer's update set to zero, at the intervened positions
                    start = torch.where(inter, lm.block_without(j - 1, H[j - 1], unit_batch, config.part), H[j])
                stream = start if stream is None else torch.cat([stream, start])
                active.append(j - 1)
            if j == L:
                break
            n = len(active)
            view = select_rows(unit_batch, torch.arange(U, device=rows.device).repeat(n), ids=unit_batch.ids * n)
            out = lm.block(j, stream, view)
            d_prime = (widened(out) - widened(stream)).view(n, U, *stream.shape[1:])
            clean_update = widened(H[j + 1]) - widened(H[j])  # Δ_j, recomputed here rather than cached for every j
            ratio = ((clean_update[None] - d_prime).norm(dim=-1).double()
                     / clean_update.norm(dim=-1).double().clamp_min(EPS)[None])
            effects.append(([(s, j) for s in active], _masked_max(ratio, measured[None])))  # (n, U)
            stream = out
        n = len(active)
        logp = torch.log_softmax(lens(stream, L).double(), -1).view(n, U, *p_clean.shape[1:])
        outputs.append((list(active), _output_effects(p_clean, logp, measured)))
    for keys, values in zip((k for k, _ in effects), _to_host([v for _, v in effects])):
        for key, value in zip(keys, values):
            effect.add(key, value, owners)
    for skips, (l2_unit, kl_unit) in zip((k for k, _ in outputs), _to_host([v for _, v in outputs])):
        for v, s in enumerate(skips):
            prob_l2.add(s, l2_unit[v], owners)
            kl.add(s, kl_unit[v], owners)


def _to_host(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """Float64 tensors of any shapes as numpy arrays, copied from the device in one transfer."""
    if not tensors:
        return []
    flat = torch.cat([t.reshape(-1) for t in tensors]).cpu().numpy()
    return [part.reshape(t.shape) for part, t in zip(np.split(flat, np.cumsum([t.numel() for t in tensors])[:-1]),
                                                      tensors)]


class SkipAccumulator:
    """Online max / mean over units of M2 (per skipped, affected) and M3 (per skipped)."""

    outputs = ("skip_effect", "skip_output")

    def __init__(self, lm: ProteinLM, records: list[Record], plan: MaskingPlan, config: SkipConfig):
        check_config(lm, config)
        self.lm, self.records, self.plan, self.config = lm, records, plan, config
        self.lens = LogitLens(lm, config.vocab).to(lm.device)
        L, n = lm.n_layers, len(records)
        self.effect, self.prob_l2, self.kl = _Aggregate((L, L + 1), n), _Aggregate(L, n), _Aggregate(L, n)
        self.n_units = 0

    def add(self, rows: list[int]) -> None:
        lm = self.lm
        recs = [self.records[i] for i in rows]
        plans = [self.plan.for_id(r.id) for r in recs]
        masked = [p.masked for p in plans] if lm.objective != "autoregressive" else None
        batch = lm.tokenize([r.id for r in recs], [r.sequence for r in recs], masked=masked)
        units = intervention_units(lm, batch, plans, self.config.mode)
        if units is not None:
            self.n_units += len(units[0])
            owners = np.asarray(rows)[units[0].cpu().numpy()]  # each unit's sequence index
            skip_batch(lm, batch, units, self.lens, self.config, self.effect, self.prob_l2, self.kl, owners)

    def state_dict(self) -> dict:
        return {"n_units": self.n_units,
                **{f"{name}.{field}": getattr(getattr(self, name), field).copy()
                   for name in ("effect", "prob_l2", "kl") for field in _Aggregate.fields}}

    def load_state_dict(self, state: dict) -> None:
        self.n_units = state["n_units"]
        for name in ("effect", "prob_l2", "kl"):
            for field in _Aggregate.fields:
                setattr(getattr(self, name), field, np.array(state[f"{name}.{field}"]))

    def _pairs(self) -> list[tuple[int, int]]:
        """(skipped, affected) keys of M2; none in "local" mode, where later blocks are not recomputed.
        Blocks that change the stream's width (before `first_lens_layer`) cannot be skipped."""
        L, start = self.lm.n_layers, self.lm.first_lens_layer
        return [] if self.config.mode == "local" else [(s, j) for s in range(start, L) for j in range(s + 1, L)]

    def result(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if self.n_units == 0:
            raise ValueError("no sequence has positions to measure (empty future sets / no split points)")
        L, effect, prob_l2, kl = self.lm.n_layers, self.effect, self.prob_l2, self.kl
        start = self.lm.first_lens_layer  # blocks that change the stream's width cannot be skipped
        pairs = self._pairs()
        effect_mean = effect.mean()
        effect_table = pd.DataFrame({
            "skipped": [s for s, _ in pairs], "affected": [j for _, j in pairs],
            "effect_max": [effect.max[s, j] for s, j in pairs],
            "effect_mean": [effect_mean[s, j] for s, j in pairs],
        })
        effect_table["relative_skipped"] = effect_table["skipped"] / L
        effect_table["relative_affected"] = effect_table["affected"] / L
        output_table = pd.DataFrame({
            "skipped": np.arange(L), "prob_l2_max": prob_l2.max, "prob_l2_mean": prob_l2.mean(),
            "kl_mean": kl.mean(), "kl_max": kl.max,
        }).iloc[start:].reset_index(drop=True)
        output_table["relative_depth"] = output_table["skipped"] / L
        for table in (effect_table, output_table):
            table["n_units"] = self.n_units
            table["mode"] = self.config.mode
            if self.config.part != "block":
                table["part"] = self.config.part
        return effect_table, output_table

    def per_sequence(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Per sequence with units: M2's `effect_sum` per (skipped, affected) and M3's `prob_l2_sum`,
        `kl_sum` per skipped block, each with its `n_units` (the tables' means, sequence by sequence)."""
        L, start, effect = self.lm.n_layers, self.lm.first_lens_layer, self.effect
        keep = np.flatnonzero(self.prob_l2.seq_count.max(axis=1) > 0)
        ids = [self.records[i].id for i in keep]
        pairs = self._pairs()
        effect_table = pd.DataFrame({
            "sequence": np.repeat(ids, len(pairs)),
            "skipped": np.tile([s for s, _ in pairs], len(keep)), "affected": np.tile([j for _, j in pairs], len(keep)),
            "effect_sum": effect.seq_sum[keep][:, [s for s, _ in pairs], [j for _, j in pairs]].reshape(-1),
            "n_units": effect.seq_count[keep][:, [s for s, _ in pairs], [j for _, j in pairs]].reshape(-1).astype(int)})
        skipped = np.arange(start, L)
        output_table = pd.DataFrame({
            "sequence": np.repeat(ids, len(skipped)), "skipped": np.tile(skipped, len(keep)),
            "prob_l2_sum": self.prob_l2.seq_sum[keep][:, skipped].reshape(-1),
            "kl_sum": self.kl.seq_sum[keep][:, skipped].reshape(-1),
            "n_units": self.prob_l2.seq_count[keep][:, skipped].reshape(-1).astype(int)})
        return effect_table, output_table


def layer_skipping(lm: ProteinLM, records: list[Record], plan: MaskingPlan, config: SkipConfig | None = None,
                   progress: bool = True, checkpoint=None, key=None, per_sequence: bool = False) -> tuple[pd.DataFrame, ...]:
    """Measurements M2 and M3: (`skip_effect.csv` table, `skip_output.csv` table), and with
    `per_sequence` their per-sequence sums (`skip_effect_per_sequence.csv`, `skip_output_per_sequence.csv`)."""
    acc = SkipAccumulator(lm, records, plan, config or SkipConfig())
    stream(acc, records, acc.config.batch_size, f"layer skipping {lm.info.name}", progress, checkpoint, key)
    return (*acc.result(), *acc.per_sequence()) if per_sequence else acc.result()


def zero_by_construction(skip_output: pd.DataFrame) -> pd.Series:
    """Rows of a `skip_output` table (one or several models) whose effect is zero by construction:
    in "future" mode, skipping a model's last block reaches no held-out position (no later block
    carries the change), whatever the model does."""
    if not {"skipped", "mode"} <= set(skip_output.columns):
        return pd.Series(False, index=skip_output.index)
    by = skip_output["model"] if "model" in skip_output else pd.Series(0, index=skip_output.index)
    last = skip_output.groupby(by, sort=False)["skipped"].transform("max")
    return (skip_output["mode"] == "future") & (skip_output["skipped"] == last)
