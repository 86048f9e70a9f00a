"""How every variant of an assay is scored at every layer: ProteinGym's zero-shot protocol,
read through the logit lens.

The scores follow ProteinGym's published scoring scripts (OATML-Markslab/ProteinGym), with the
model's final output replaced by the lens at layer l (at the last layer they are the same):

- masked and diffusion models, `proteingym/baselines/esm/compute_fitness.py`:
  * `masked_marginal` (`--scoring-strategy masked-marginals`, ProteinGym's choice for ESM-1v
    and ESM-2): for each mutated position p, one pass of the wild type with p masked;
    score = Σ over the mutations of log p_l(mut | x₋ₚ) − log p_l(wt | x₋ₚ);
  * `wt_marginal` (`wt-marginals`): the same sum from unmasked passes of the wild type;
  * `pseudo_likelihood` (`pseudo-ppl`): Σ_i log p_l(x_i | x₋ᵢ) of the mutated sequence, one
    masked pass per residue, minus the same sum for the wild type.
- autoregressive models, `proteingym/baselines/unirep/unirep_inference.py` (UniRep) and
  `proteingym/baselines/progen2/compute_fitness.py` (ProGen2):
  * `log_likelihood_ratio`: log P_l(mutant) − log P_l(wild type), summed over residues (the
    start/stop tokens are not targets). ProteinGym reports the mean per residue; every
    substitution variant has the wild type's length, so the ranking is the same.

Sequences longer than the model's context are scored in windows, by ProteinGym's rules:
- masked scores: each position in the window that `optimal_window` centres on it
  (ProteinGym's `get_optimal_window`, `proteingym/utils/scoring_utils.py`);
- log-likelihoods: consecutive, non-overlapping chunks of the context (ProGen2's
  `calc_fitness`), each scored as a sequence of its own; chunk log-likelihoods add up.
Windows are cut from the residues, `lm.max_residues` wide, and each gets the model's own start
and end tokens (ProteinGym cuts the token array, so an inner window there has neither).

Shared work, every layer from the same passes:
- masked marginals: one pass per distinct mutated position, used by every variant there;
- log-likelihood ratios: a variant and the wild type agree up to the variant's first mutated
  residue, so that prefix is computed once, from the wild type, and each variant runs from
  there only — resuming the recurrent state (UniRep, layers with `recurrent = True` and a
  `scan(h, mask, initial)` method) or the key/value cache (transformers models that take
  `cache`, `past_key_values` before transformers 5). Models with neither (a byte-pair
  vocabulary, a model of its own) run every variant whole (`log_likelihoods`), which is also
  the reference the tests compare to.
"""

from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from plmdepth.model import ProteinLM
from plmdepth.probes.logit_lens import LogitLens, layer_log_probs
from plmdepth.tokens import Batch

SCORINGS = ("masked_marginal", "wt_marginal", "pseudo_likelihood", "log_likelihood_ratio")
MASKED_SCORINGS = ("masked_marginal", "wt_marginal", "pseudo_likelihood")


# ------------------------------------------------------------------------- windows
def optimal_window(position: int, length: int, window: int) -> tuple[int, int]:
    """[start, end) of the `window`-wide stretch of a `length`-long sequence that scores
    `position`: ProteinGym's `get_optimal_window` (the whole sequence if it fits, else the
    window centred on the position, pushed inside at either end)."""
    half = window // 2
    if length <= window:
        return 0, length
    if position < half:
        return 0, window
    if position >= length - half:
        return length - window, length
    return max(0, position - half), min(length, position + half)


def chunks(length: int, window: int) -> list[tuple[int, int]]:
    """[start, end) of the consecutive `window`-wide chunks that cover a sequence (ProGen2's
    rule for log-likelihoods: one chunk if it fits)."""
    return [(0, length)] if length <= window else [(a, min(a + window, length)) for a in range(0, length, window)]


def _n_read(lm: ProteinLM) -> int:
    return lm.n_layers + 1 - lm.first_lens_layer


# ------------------------------------------------------------------- masked passes
def _masked_passes(lm: ProteinLM, lens: LogitLens, jobs: list[tuple[str, int | None, list[int]]],
                   batch_size: int, progress: bool, desc: str) -> list[torch.Tensor]:
    """Per job (sequence, masked residue or None, residues to read): log p_l at those residues,
    [n_read, n_positions, n_classes], each residue scored in its own window (`optimal_window`
    of the masked residue, or of the first residue read when nothing is masked)."""
    out: list[torch.Tensor] = [None] * len(jobs)
    order = list(range(len(jobs)))
    for first in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        rows = order[first:first + batch_size]
        pieces, masked, reads = [], [], []
        for j in rows:
            sequence, p, read = jobs[j]
            start, end = optimal_window(read[0] if p is None else p, len(sequence), lm.max_residues)
            if any(not start <= q < end for q in read):
                raise ValueError("residues read together must share a window")
            pieces.append(sequence[start:end])
            masked.append([] if p is None else [p - start])
            reads.append([q - start for q in read])
        batch = lm.tokenize([str(j) for j in rows], pieces, masked=masked if any(masked) else None)
        residue_index = batch.residue_index.cpu()  # the positions to read are found on the host
        select = torch.zeros_like(residue_index, dtype=torch.bool)
        for b, read in enumerate(reads):
            select[b] = torch.isin(residue_index[b], torch.tensor(read))
        per_layer = layer_log_probs(lm, lens, batch, select.to(batch.input_ids.device), torch.float64)
        stacked = torch.stack(per_layer).cpu()  # [n_read, n_selected, n_classes], rows in (b, token) order
        for j, part in zip(rows, stacked.split(select.sum(1).tolist(), dim=1)):
            out[j] = part
    return out


def letter_classes(lm: ProteinLM, lens: LogitLens, letters) -> dict[str, int]:
    """Index of each residue letter among the lens's output classes."""
    letters = sorted(set(letters))
    ids = torch.tensor([lm.alphabet.residue_id(a) for a in letters], device=lens.token_ids.device)
    return dict(zip(letters, lens.class_of(ids).tolist()))


def masked_marginals(lm: ProteinLM, lens: LogitLens, wild_type: str, positions: list[int], masked: bool = True,
                     batch_size: int = 16, progress: bool = False, desc: str = "") -> torch.Tensor:
    """log p_l at each of `positions` (sorted) of the wild type, [n_read, n_positions, n_classes]:
    with that position masked (masked marginals) or from unmasked passes (wt marginals, one
    pass per distinct window, i.e. one pass when the sequence fits)."""
    positions = sorted(positions)
    if masked:
        jobs = [(wild_type, p, [p]) for p in positions]
    else:
        groups: dict[tuple[int, int], list[int]] = {}
        for p in positions:
            groups.setdefault(optimal_window(p, len(wild_type), lm.max_residues), []).append(p)
        for read in groups.values():
            read.sort()
        jobs = [(wild_type, None, read) for read in groups.values()]
    results = _masked_passes(lm, lens, jobs, batch_size, progress, desc)
    table = {}
    for (_, _, read), lp in zip(jobs, results):
        for k, p in enumerate(read):
            table[p] = lp[:, k]
    return torch.stack([table[p] for p in positions], dim=1)


def pseudo_log_likelihoods(lm: ProteinLM, lens: LogitLens, sequences: list[str], batch_size: int = 16,
                           progress: bool = False, desc: str = "") -> np.ndarray:
    """Σ_i log p_l(x_i | x₋ᵢ) of every sequence at every layer, [n_read, n_sequences]."""
    jobs = [(s, i, [i]) for s in sequences for i in range(len(s))]
    results = _masked_passes(lm, lens, jobs, batch_size, progress, desc)
    out = np.zeros((_n_read(lm), len(sequences)))
    classes = letter_classes(lm, lens, "".join(sequences))
    k = 0
    for n, s in enumerate(sequences):
        for i in range(len(s)):
            out[:, n] += results[k][:, 0, classes[s[i]]].numpy()
            k += 1
    return out


# -------------------------------------------------------------- log-likelihoods
def log_likelihoods(lm: ProteinLM, lens: LogitLens, sequences: list[str], batch_size: int = 16,
                    progress: bool = False, desc: str = "") -> np.ndarray:
    """log P_l of every sequence at every layer, [n_read, n_sequences]: each sequence (each
    chunk of a long one) run whole; the plain way, shared by nothing."""
    pieces = [(n, s[a:b]) for n, s in enumerate(sequences) for a, b in chunks(len(s), lm.max_residues)]
    by_length: dict[int, list[tuple[int, str]]] = {}
    for piece in pieces:  # batches of equal lengths: no padding
        by_length.setdefault(len(piece[1]), []).append(piece)
    parts = [group[i:i + batch_size] for _, group in sorted(by_length.items())
             for i in range(0, len(group), batch_size)]
    total = np.zeros((_n_read(lm), len(sequences)))
    for part in tqdm(parts, desc=desc, disable=not progress, leave=False):
        batch = lm.tokenize([str(n) for n, _ in part], [s for _, s in part])
        select = batch.target_index >= 0
        owner = torch.tensor([n for n, _ in part])[:, None].expand(select.shape)[select.cpu()].numpy()
        target = lens.class_of(batch.target_ids[select])[:, None]
        read = torch.stack([lp.gather(-1, target).squeeze(-1) for lp in layer_log_probs(lm, lens, batch, select,
                                                                                          torch.float64)])
        for r, values in enumerate(read.cpu().numpy()):  # one copy from the device per batch
            np.add.at(total[r], owner, values)
    return total


def prefix_backend(lm: ProteinLM) -> str | None:
    """How a variant can resume from the wild type's prefix: "recurrent", "kv_cache" or None."""
    if lm.objective != "autoregressive" or not lm.alphabet.one_residue_per_token or lm.inputs_for is not None:
        return None  # byte pairs do not map one token to one residue; extra inputs are not cached
    if all(getattr(layer, "recurrent", False) for layer in lm.layers):
        return "recurrent"
    if _cache_argument(lm) is not None:
        return "kv_cache"
    return None


def _cache_argument(lm: ProteinLM) -> str | None:
    """The name under which the network's forward takes a key/value cache (transformers 5: `cache`)."""
    parameters = inspect.signature(lm.network.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def log_likelihood_ratios(lm: ProteinLM, lens: LogitLens, wild_type: str, mutations: list[list[tuple[int, str, str]]],
                          batch_size: int = 16, prefix_cache: bool = True, progress: bool = False,
                          desc: str = "") -> np.ndarray:
    """log P_l(variant) − log P_l(wild type) for every variant and readable layer, [n_read, n_variants]."""
    backend = prefix_backend(lm) if prefix_cache else None
    variants = []
    for muts in mutations:
        seq = list(wild_type)
        for p, _, m in muts:
            seq[p] = m
        variants.append("".join(seq))
    if backend is None:
        ll = log_likelihoods(lm, lens, [wild_type] + variants, batch_size, progress, desc)
        return ll[:, 1:] - ll[:, :1]
    out = np.zeros((_n_read(lm), len(variants)))
    for a, b in chunks(len(wild_type), lm.max_residues):  # chunks without a mutation cancel out
        inside = [(v, min(p for p, _, _ in muts if a <= p < b) - a) for v, muts in enumerate(mutations)
                  if any(a <= p < b for p, _, _ in muts)]
        if inside:
            ids = [v for v, _ in inside]
            out[:, ids] += _resumed_ratios(lm, lens, backend, wild_type[a:b], [variants[v][a:b] for v in ids],
                                           [f for _, f in inside], batch_size, progress, desc)
    return out


def _shifted(batch: Batch, starts: list[int], pad_id: int) -> Batch:
    """Each row of `batch` from its own token `starts[b]` on, left-aligned and right-padded."""
    width = max(batch.input_ids.shape[1] - s for s in starts)

    def cut(t: torch.Tensor, fill: int) -> torch.Tensor:
        out = t.new_full((t.shape[0], width), fill)
        for b, s in enumerate(starts):
            out[b, :t.shape[1] - s] = t[b, s:]
        return out

    return replace(batch, input_ids=cut(batch.input_ids, pad_id), attention_mask=cut(batch.attention_mask, 0),
                   true_ids=cut(batch.true_ids, pad_id), residue_index=cut(batch.residue_index, -1),
                   target_index=cut(batch.target_index, -1), target_ids=cut(batch.target_ids, -1),
                   layer_context={})


@contextmanager
def _layer_states(lm: ProteinLM):
    """Record h_0 (the input of block 0) and h_l (each block's output) of the next forward."""
    states: dict[int, torch.Tensor] = {}

    def record_input(module, args, kwargs):
        states[0] = args[0] if args else kwargs["hidden_states"]

    handles = [lm.layers[0].register_forward_pre_hook(record_input, with_kwargs=True)]
    for layer, block in enumerate(lm.layers):
        handles.append(block.register_forward_hook(
            lambda m, args, out, layer=layer: states.__setitem__(layer + 1, out[0] if isinstance(out, tuple) else out)))
    try:
        yield states
    finally:
        for handle in handles:
            handle.remove()


def _target_log_probs(lm: ProteinLM, lens: LogitLens, states: dict[int, torch.Tensor], batch: Batch) -> torch.Tensor:
    """[n_read, B, T] log p_l of each token's next-residue target (0 where there is none)."""
    select = batch.target_index >= 0
    target = lens.class_of(batch.target_ids[select])[:, None]
    index = select.reshape(-1).nonzero().squeeze(1)  # found once, not per layer
    read = []
    for layer in range(lm.first_lens_layer, lm.n_layers + 1):
        h = states[layer]
        lp = torch.log_softmax(lens(h.reshape(-1, *h.shape[2:]).index_select(0, index), layer).double(), -1)
        read.append(lp.gather(-1, target).squeeze(-1))
    out = torch.zeros(_n_read(lm), *select.shape, dtype=torch.float64)
    out[:, select.cpu()] = torch.stack(read).cpu()  # one copy from the device per batch
    return out


@torch.no_grad()
def _resumed_ratios(lm: ProteinLM, lens: LogitLens, backend: str, wild_type: str, variants: list[str],
                    first: list[int], batch_size: int, progress: bool, desc: str) -> np.ndarray:
    """log-likelihood ratios of `variants` (first mutated residue `first[v]`) against a wild
    type that fits the context, each variant run from its first mutated residue on."""
    n_pre = len(lm.alphabet.prefix)
    pad_id = lm.alphabet.id(lm.alphabet.pad)
    wt_batch = lm.tokenize(["wild type"], [wild_type])
    if backend == "recurrent":
        h, cache = lm.embed(wt_batch), []
        states = {0: h}
        for layer, block in enumerate(lm.layers):
            h, c = block.scan(h, wt_batch.attention_mask)
            cache.append((h[0], c[0]))
            states[layer + 1] = h
    else:
        kwargs, argument = {**lm.forward_kwargs, "use_cache": True}, _cache_argument(lm)
        with _layer_states(lm) as states:
            kv = getattr(lm.network(input_ids=wt_batch.input_ids, attention_mask=wt_batch.attention_mask, **kwargs),
                         argument)
    wt_lp = _target_log_probs(lm, lens, states, wt_batch)[:, 0]  # [n_read, T]
    wt_tail = torch.flip(torch.cumsum(torch.flip(wt_lp, [1]), 1), [1])  # Σ_{t ≥ s}
    # Token s is the first whose output a variant changes: the one that predicts its first mutated residue.
    starts = [max(n_pre + f - 1, 0) for f in first]
    order = sorted(range(len(variants)), key=lambda v: starts[v])
    if backend == "kv_cache":  # rows of one batch share the cached prefix length
        groups = [[v for v in order if starts[v] == s] for s in sorted(set(starts))]
        batches = [g[i:i + batch_size] for g in groups for i in range(0, len(g), batch_size)]
    else:
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    out = np.zeros((_n_read(lm), len(variants)))
    for rows in tqdm(batches, desc=desc, disable=not progress, leave=False):
        full = lm.tokenize([str(v) for v in rows], [variants[v] for v in rows])
        row_starts = [starts[v] for v in rows]
        suffix = _shifted(full, row_starts, pad_id)
        if backend == "recurrent":
            h = lm.embed(suffix)
            states = {0: h}
            for layer, block in enumerate(lm.layers):
                hs, cs = cache[layer]  # the wild type's states after each token, [T, d]
                initial = tuple(torch.stack([x[s - 1] if s else torch.zeros_like(x[0]) for s in row_starts])
                                for x in (hs, cs))
                h = block.scan(h, suffix.attention_mask, initial=initial)[0]
                states[layer + 1] = h
        else:
            s = row_starts[0]
            past = None
            if s:
                past = copy.deepcopy(kv)
                past.crop(s - past.get_seq_length())  # a negative count removes that many from the end
                past.batch_repeat_interleave(len(rows))
            mask = torch.cat([full.attention_mask[:, :s], suffix.attention_mask], dim=1)
            with _layer_states(lm) as states:
                lm.network(input_ids=suffix.input_ids, attention_mask=mask, **{argument: past}, **kwargs)
        tail = _target_log_probs(lm, lens, states, suffix).sum(-1)  # [n_read, B]
        for b, v in enumerate(rows):
            out[:, v] = (tail[:, b] - wt_tail[:, row_starts[b]]).numpy()
    return out
