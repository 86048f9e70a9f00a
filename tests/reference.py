"""Plain reference implementations, nothing clever: one full forward pass per skipped block.

Used by the exactness tests and by the benchmark. They run the model's own forward pass
with a forward hook on block s that puts the block's input back at intervened positions,
and record every block's input and output with hooks.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from plmdepth.probes.layer_skipping import EPS, intervention_units, layer_skipping


def output_projection(module: torch.nn.Module, run) -> torch.nn.Module:
    """The last linear map that runs inside `module` during `run()` (its output projection), or
    `module` itself when it holds none (ProteinMPNN's message aggregation)."""
    from transformers.pytorch_utils import Conv1D

    order = []
    handles = [m.register_forward_hook(lambda m, a, o: order.append(m)) for m in module.modules()
               if isinstance(m, (torch.nn.Linear, Conv1D))]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return order[-1] if order else module


def _forward_recording(lm, batch, rows, skip=None, intervened=None, part="block"):
    """Own forward of rows `rows` of `batch`; returns (block inputs, block outputs, logits).
    With `skip`, block `skip` is skipped at the intervened positions: its output replaced by its
    input (part "block"), or the output projection of its attention or MLP (`part`) zeroed there."""
    ins, outs, handles = {}, {}, []

    def own():
        return lm.network(input_ids=batch.input_ids[rows], attention_mask=batch.attention_mask[rows],
                          **lm.forward_kwargs)

    if skip is not None and part != "block":
        with torch.no_grad():
            projection = output_projection(lm.layers[skip].get_submodule(lm.sublayers[part]), own)
        keep = (~intervened)[..., None]

        def zero_intervened(m, a, out):
            first = out[0] if isinstance(out, tuple) else out
            mask = keep if first.shape[:2] == keep.shape[:2] else keep.transpose(0, 1)  # fair-esm is time-first
            first = first * mask.to(first.dtype)
            return (first, *out[1:]) if isinstance(out, tuple) else first

        handles.append(projection.register_forward_hook(zero_intervened))
    for layer, block in enumerate(lm.layers):
        def record(module, args, kwargs, output, layer=layer):
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = output[0] if isinstance(output, tuple) else output
            if layer == skip and part == "block":
                h_out = torch.where(intervened[..., None], h_in, h_out)
            ins[layer], outs[layer] = h_in, h_out
            if layer == skip and part == "block":
                return (h_out,) + tuple(output[1:]) if isinstance(output, tuple) else h_out
        handles.append(block.register_forward_hook(record, with_kwargs=True))
    try:
        logits = lm.network(input_ids=batch.input_ids[rows], attention_mask=batch.attention_mask[rows],
                             **lm.forward_kwargs).logits
    finally:
        for handle in handles:
            handle.remove()
    return ins, outs, logits


@torch.no_grad()
def reference_skipping(lm, batch, plans, mode="future", vocab_ids=None, part="block"):
    """Per unit: effect[s, j] for every pair (j <= s too, to check they are 0), l2[s], kl[s].

    Blocks before `lm.first_lens_layer` change the stream's width and are neither skipped nor
    compared (their entries stay 0).
    """
    units = intervention_units(lm, batch, plans, mode)
    rows, intervened, measured = units
    L, U = lm.n_layers, len(rows)
    ins, outs, logits = _forward_recording(lm, batch, rows)
    clean_delta = [outs[j] - ins[j] if j >= lm.first_lens_layer else None for j in range(L)]
    pick = (lambda z: z[..., vocab_ids]) if vocab_ids is not None else (lambda z: z)
    p = torch.softmax(pick(logits).double(), -1)
    effect = np.zeros((U, L, L))
    l2 = np.zeros((U, L))
    kl = np.zeros((U, L))
    for s in range(lm.first_lens_layer, L):  # earlier blocks change the stream's width
        ins_s, outs_s, logits_s = _forward_recording(lm, batch, rows, skip=s, intervened=intervened, part=part)
        for j in range(lm.first_lens_layer, L):
            d_prime = outs_s[j] - ins_s[j]
            num = (clean_delta[j] - d_prime).double().norm(dim=-1)
            den = clean_delta[j].double().norm(dim=-1).clamp_min(EPS)
            r = (num / den).masked_fill(~measured, -torch.inf).amax(-1)
            effect[:, s, j] = r.numpy()
        q = torch.softmax(pick(logits_s).double(), -1)
        l2[:, s] = (p - q).norm(dim=-1).masked_fill(~measured, -torch.inf).amax(-1).numpy()
        kl_pos = (p * (torch.log_softmax(pick(logits).double(), -1)
                       - torch.log_softmax(pick(logits_s).double(), -1))).sum(-1)
        kl[:, s] = ((kl_pos * measured).sum(-1) / measured.sum(-1)).numpy()
    return effect, l2, kl


def reference_local(lm, batch, plans, part="block", vocab_ids=None):
    """Mode "local", plainly: from one own forward pass, record h_L and block s's update (its
    output minus its input; for a part, the stream after its attention minus its input
    (pre-LN: the input of the norm before the MLP) or, parallel, the attention's or MLP's output),
    and read out h_L minus that update at every residue. Per unit: l2[s], kl[s]."""
    units = intervention_units(lm, batch, plans, "local")
    rows, intervened, measured = units
    L, U = lm.n_layers, len(rows)
    seen, handles = {}, []
    for layer, block in enumerate(lm.layers):
        if part == "block":
            continue
        if lm.sublayers["kind"] == "pre-LN":
            mid = block.get_submodule(lm.sublayers["mid"])
            handles.append(mid.register_forward_pre_hook(lambda m, a, layer=layer: seen.__setitem__(layer, a[0])))
        else:
            module = block.get_submodule(lm.sublayers[part])
            handles.append(module.register_forward_hook(
                lambda m, a, o, layer=layer: seen.__setitem__(layer, o[0] if isinstance(o, tuple) else o)))
    try:
        ins, outs, logits = _forward_recording(lm, batch, rows)
    finally:
        for h in handles:
            h.remove()
    h_last = outs[L - 1].double()
    pick = (lambda z: z[..., vocab_ids]) if vocab_ids is not None else (lambda z: z)
    p = torch.softmax(pick(logits).double(), -1)
    l2, kl = np.zeros((U, L)), np.zeros((U, L))
    for s in range(lm.first_lens_layer, L):
        if part == "block":
            update = outs[s].double() - ins[s].double()
        elif lm.sublayers["kind"] == "pre-LN":
            attention = seen[s].double() - ins[s].double()
            update = attention if part == "attention" else outs[s].double() - seen[s].double()
        else:
            update = seen[s].double()  # parallel: the recorded sublayer output is its update
        stream = torch.where(intervened[..., None], h_last - update, h_last).to(outs[L - 1].dtype)
        q_logits = pick(lm.readout(stream)).double()
        q = torch.softmax(q_logits, -1)
        l2[:, s] = (p - q).norm(dim=-1).masked_fill(~measured, -torch.inf).amax(-1).numpy()
        kl_pos = (p * (torch.log_softmax(pick(logits).double(), -1) - torch.log_softmax(q_logits, -1))).sum(-1)
        kl[:, s] = ((kl_pos * measured).sum(-1) / measured.sum(-1)).numpy()
    return l2, kl


def assert_matches_reference(effect_table, output_table, effect, l2, kl, first: int = 0,
                             rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """The fast tables (`layer_skipping`'s) equal the reference arrays, max and mean over units;
    `first` is the model's first readable layer (rows before it are not in the tables)."""
    for row in effect_table.itertuples():
        ref = effect[:, row.skipped, row.affected]
        np.testing.assert_allclose(row.effect_max, ref.max(), rtol=rtol, atol=atol)
        np.testing.assert_allclose(row.effect_mean, ref.mean(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(output_table["prob_l2_max"], l2.max(0)[first:], rtol=rtol, atol=atol)
    np.testing.assert_allclose(output_table["prob_l2_mean"], l2.mean(0)[first:], rtol=rtol, atol=atol)
    np.testing.assert_allclose(output_table["kl_mean"], kl.mean(0)[first:], rtol=rtol, atol=atol)


@contextmanager
def own_forward_inputs(lm, batch):
    """The plain reference runs `network(input_ids=..., attention_mask=..., **forward_kwargs)`:
    hand it the batch's other inputs (ProteinMPNN's structure) that way, then restore."""
    saved = lm.forward_kwargs
    lm.forward_kwargs = {**saved, **batch.model_inputs}
    try:
        yield
    finally:
        lm.forward_kwargs = saved


def check_skipping_against_reference(lm, records, plan, config, vocab_ids=None):
    """Run layer skipping and assert its tables, and its per-sequence sums, equal the plain
    reference; returns the two tables."""
    effect_table, output_table, effect_seq, output_seq = layer_skipping(lm, records, plan, config, progress=False,
                                                                        per_sequence=True)
    plans = [plan.for_id(r.id) for r in records]
    masked = [p.masked for p in plans] if lm.objective != "autoregressive" else None
    batch = lm.tokenize([r.id for r in records], [r.sequence for r in records], masked=masked)
    with own_forward_inputs(lm, batch):
        effect, l2, kl = reference_skipping(lm, batch, plans, config.mode, vocab_ids, part=config.part)
    L, first = lm.n_layers, lm.first_lens_layer
    # blocks before the skipped one are untouched: exactly zero effect (and, in "future" mode,
    # the skipped block itself at the measured positions, which are not intervened on)
    for s in range(first, L):
        assert np.all(effect[:, s, : s + (config.mode == "future")] == 0.0)
    assert_matches_reference(effect_table, output_table, effect, l2, kl, first)
    assert len(effect_table) == (L - first) * (L - first - 1) // 2
    assert effect_table["effect_max"].max() > 1e-3  # the comparison is not between zeros
    # per sequence: the sums over its units (a sequence's units are the rows the reference names it by)
    owner = np.array([records[b].id for b in intervention_units(lm, batch, plans, config.mode)[0].tolist()])
    for rec_id in sorted(set(owner)):
        mine = owner == rec_id
        rows = effect_seq[effect_seq["sequence"] == rec_id]
        assert (rows["n_units"] == mine.sum()).all()
        np.testing.assert_allclose(rows["effect_sum"], effect[mine][:, rows["skipped"], rows["affected"]].sum(0),
                                   rtol=1e-5, atol=1e-5)
        rows = output_seq[output_seq["sequence"] == rec_id]
        np.testing.assert_allclose(rows["prob_l2_sum"], l2[mine][:, rows["skipped"]].sum(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rows["kl_sum"], kl[mine][:, rows["skipped"]].sum(0), rtol=1e-5, atol=1e-5)
    assert set(effect_seq["sequence"]) == set(owner) == set(output_seq["sequence"])
    return effect_table, output_table


def proteingym_optimal_window(mutation_position_relative, seq_len_wo_special, model_window):
    """`get_optimal_window` of ProteinGym's proteingym/utils/scoring_utils.py, as published."""
    half_model_window = model_window // 2
    if seq_len_wo_special <= model_window:
        return [0, seq_len_wo_special]
    elif mutation_position_relative < half_model_window:
        return [0, model_window]
    elif mutation_position_relative >= seq_len_wo_special - half_model_window:
        return [seq_len_wo_special - model_window, seq_len_wo_special]
    else:
        return [max(0, mutation_position_relative - half_model_window),
                min(seq_len_wo_special, mutation_position_relative + half_model_window)]
