"""Per-layer variant-effect prediction (SPEC M5, paper Fig. 5).

Every variant of a deep-mutational scan is scored from the logit lens of every layer l,
and the scores are compared with the measured fitness (`DMS_score`) by Spearman's ρ:

- `masked_marginal` (masked models): for each mutated position p, one pass of the wild
  type with p masked; score = Σ_mutations log p_l(mut | p) − log p_l(wt | p). All variants
  at a position share that pass, and every layer comes from the same pass.
- `wt_marginal` (masked models, cheaper): one unmasked pass of the wild type.
- `log_likelihood_ratio` (autoregressive models): log P_l(mutant) − log P_l(wild type),
  with next-residue log-probabilities read by the lens at layer l; one pass per variant
  (batched), every layer from the same pass.

Multi-mutants sum over their mutations. Data come in ProteinGym's DMS substitution format
(`read_assays`): a reference table (`DMS_id`, `target_seq`, optionally `DMS_filename`) and
one CSV per assay (`mutant` such as `A23V:G40S`, 1-based; `mutated_sequence`; `DMS_score`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from plmdepth.model import ProteinLM
from plmdepth.probes.logit_lens import LogitLens, layer_log_probs
from plmdepth.probes.streaming import stream

SCORINGS = ("masked_marginal", "wt_marginal", "log_likelihood_ratio")


class AssayError(ValueError):
    """A DMS file or reference table that cannot be used, with a message that says why."""


@dataclass
class Assay:
    """One deep-mutational scan: the wild type and its scored variants."""

    id: str
    wild_type: str
    variants: pd.DataFrame  # mutant, mutated_sequence, DMS_score
    mutations: list[list[tuple[int, str, str]]]  # per variant: (0-based position, wt, mut)

    @property
    def sequence(self) -> str:
        """The wild type: what `stream` orders assays by, as it orders records."""
        return self.wild_type


@dataclass
class VariantEffectsConfig:
    """Parameters of a variant-effect run (written to run.json verbatim)."""

    scoring: str = "auto"  # auto: masked_marginal for masked/diffusion, log_likelihood_ratio otherwise
    vocab: str = "full"
    batch_size: int = 16
    n_bootstrap: int = 200
    seed: int = 0


def parse_mutant(mutant: str, wild_type: str, assay: str = "") -> list[tuple[int, str, str]]:
    """`A23V:G40S` -> [(22, 'A', 'V'), (39, 'G', 'S')], checked against the wild type."""
    out = []
    for part in str(mutant).split(":"):
        wt, pos, mut = part[:1], part[1:-1], part[-1:]
        if not (wt.isalpha() and pos.isdigit() and mut.isalpha()):
            raise AssayError(f"assay {assay}: mutant '{mutant}' is not of the form A23V[:G40S]")
        p = int(pos) - 1
        if not 0 <= p < len(wild_type) or wild_type[p] != wt:
            found = wild_type[p] if 0 <= p < len(wild_type) else "nothing"
            raise AssayError(f"assay {assay}: mutant '{mutant}' says position {pos} is {wt}, "
                             f"but the wild type has {found} there")
        out.append((p, wt, mut))
    return out


def read_assays(reference: str | Path, folder: str | Path | None = None, assays: list[str] | None = None,
                max_variants: int | None = None, seed: int = 0) -> list[Assay]:
    """Assays from a ProteinGym-style reference table and its per-assay CSVs.

    `folder` defaults to the reference table's folder. `max_variants` keeps a seeded random
    subset of each larger assay (in file order). Every `mutated_sequence` is checked against
    its `mutant` applied to the wild type.
    """
    reference = Path(reference)
    if not reference.is_file():
        raise AssayError(f"reference table {reference} does not exist")
    table = pd.read_csv(reference)
    for column in ("DMS_id", "target_seq"):
        if column not in table:
            raise AssayError(f"{reference} has no column '{column}'")
    folder = Path(folder) if folder is not None else reference.parent
    if assays:
        unknown = sorted(set(assays) - set(table["DMS_id"]))
        if unknown:
            raise AssayError(f"{reference} has no assay {', '.join(unknown)}")
        table = table[table["DMS_id"].isin(assays)]
    out = []
    for row in table.itertuples():
        name = getattr(row, "DMS_filename", None) or f"{row.DMS_id}.csv"
        frame = pd.read_csv(folder / name)
        for column in ("mutant", "mutated_sequence", "DMS_score"):
            if column not in frame:
                raise AssayError(f"{folder / name} has no column '{column}'")
        frame = frame.dropna(subset=["DMS_score"]).reset_index(drop=True)
        if max_variants is not None and len(frame) > max_variants:
            keep = np.sort(np.random.default_rng(seed).choice(len(frame), max_variants, replace=False))
            frame = frame.iloc[keep].reset_index(drop=True)
        wild_type = str(row.target_seq)
        mutations = [parse_mutant(m, wild_type, row.DMS_id) for m in frame["mutant"]]
        for i, (muts, seq) in enumerate(zip(mutations, frame["mutated_sequence"])):
            applied = list(wild_type)
            for p, _, mut in muts:
                applied[p] = mut
            if "".join(applied) != seq:
                raise AssayError(f"assay {row.DMS_id}, row {i + 2}: mutated_sequence does not equal "
                                 f"mutant '{frame['mutant'][i]}' applied to the wild type")
        out.append(Assay(row.DMS_id, wild_type, frame[["mutant", "mutated_sequence", "DMS_score"]], mutations))
    return out


def assay_checksum(assay: Assay) -> str:
    """sha256 of an assay's wild type and the variants used (after any subsampling)."""
    import hashlib

    text = assay.wild_type + "\n" + assay.variants.to_csv(index=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def resolve_scoring(lm: ProteinLM, scoring: str) -> str:
    if scoring == "auto":
        return "log_likelihood_ratio" if lm.objective == "autoregressive" else "masked_marginal"
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be 'auto' or one of {SCORINGS}, not {scoring!r}")
    if (scoring == "log_likelihood_ratio") != (lm.objective == "autoregressive"):
        raise ValueError(f"scoring {scoring} does not apply to a {lm.objective} model")
    return scoring


def _class(lens: LogitLens, letters: list[str], lm: ProteinLM) -> torch.Tensor:
    ids = torch.tensor([lm.alphabet.index[a] for a in letters], device=lm.device)
    return lens.class_of(ids)


@torch.no_grad()
def layer_scores(lm: ProteinLM, assay: Assay, config: VariantEffectsConfig, progress: bool = False) -> np.ndarray:
    """Scores (n_layers_read, n_variants) of every variant at every readable layer."""
    scoring = resolve_scoring(lm, config.scoring)
    if lm.inputs_for is not None:
        raise AssayError(f"{lm.info.name} needs an input besides the sequence (a structure) and assays give "
                         "sequences only; score variant effects with a sequence model.")
    lens = LogitLens(lm, config.vocab).to(lm.device)
    n_read = lm.n_layers + 1 - lm.first_lens_layer
    wt = assay.wild_type
    longest = max([len(wt)] + [len(s) for s in assay.variants["mutated_sequence"]])
    if longest > lm.max_residues:
        raise AssayError(f"assay {assay.id}: sequences of {longest} residues are longer than {lm.info.name}'s "
                         f"context of {lm.max_residues}; scoring does not crop them, so use a model with a longer "
                         "context or an assay file restricted to the mutated region.")
    unknown = sorted(set(wt + "".join(assay.variants["mutated_sequence"])) - set(lm.alphabet.residues))
    if unknown:
        raise AssayError(f"assay {assay.id}: letters {', '.join(unknown)} are not in {lm.info.name}'s alphabet.")
    if scoring in ("masked_marginal", "wt_marginal"):
        positions = sorted({p for muts in assay.mutations for p, _, _ in muts})
        index = {p: i for i, p in enumerate(positions)}
        table = torch.zeros(n_read, len(positions), len(lens.token_ids), dtype=torch.float64)
        if scoring == "wt_marginal":
            batch = lm.tokenize([assay.id], [wt])
            select = torch.isin(batch.residue_index, torch.tensor(positions, device=lm.device))
            for r, lp in enumerate(layer_log_probs(lm, lens, batch, select, torch.float64)):
                table[r] = lp.cpu()
        else:  # one masked copy of the wild type per mutated position, batched
            chunks = [positions[i:i + config.batch_size] for i in range(0, len(positions), config.batch_size)]
            for chunk in tqdm(chunks, desc=f"{assay.id} {lm.info.name}", disable=not progress):
                batch = lm.tokenize([f"{assay.id}:{p}" for p in chunk], [wt] * len(chunk), masked=[[p] for p in chunk])
                select = batch.residue_index == torch.tensor(chunk, device=lm.device)[:, None]
                rows = [index[p] for p in chunk]
                for r, lp in enumerate(layer_log_probs(lm, lens, batch, select, torch.float64)):
                    table[r, rows] = lp.cpu()
        scores = np.zeros((n_read, len(assay.mutations)))
        for v, muts in enumerate(assay.mutations):
            for p, w, m in muts:
                cw, cm = _class(lens, [w, m], lm).tolist()
                scores[:, v] += (table[:, index[p], cm] - table[:, index[p], cw]).numpy()
        return scores
    # autoregressive: log-likelihood of every sequence at every layer
    sequences = [wt] + list(assay.variants["mutated_sequence"])
    loglik = np.zeros((n_read, len(sequences)))
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    chunks = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    for chunk in tqdm(chunks, desc=f"{assay.id} {lm.info.name}", disable=not progress):
        batch = lm.tokenize([str(i) for i in chunk], [sequences[i] for i in chunk])
        select = batch.target_index >= 0
        owner = torch.tensor(chunk, device=lm.device)[:, None].expand_as(select)[select].cpu().numpy()
        target = lens.class_of(batch.target_ids[select])
        for r, lp in enumerate(layer_log_probs(lm, lens, batch, select, torch.float64)):
            picked = lp.gather(-1, target[:, None]).squeeze(-1).cpu().numpy()
            np.add.at(loglik[r], owner, picked)
    return loglik[:, 1:] - loglik[:, :1]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ with average ranks for ties (NaN if either side is constant)."""
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _interval(boot: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of bootstrap replicates (NaN when none is finite)."""
    finite = boot[np.isfinite(boot)]
    return tuple(np.percentile(finite, [2.5, 97.5])) if len(finite) else (np.nan, np.nan)


class VariantEffectsAccumulator:
    """Per assay: the scores of every variant at every readable layer. Spearman ρ and its
    bootstrap are computed in `result`, over the assays in their given order, so a run that
    resumed after some assays draws the same bootstrap samples as one that did not."""

    outputs = ("variant_effects",)

    def __init__(self, lm: ProteinLM, assays: list[Assay], config: VariantEffectsConfig, progress: bool = False):
        resolve_scoring(lm, config.scoring)  # refuse a wrong scoring before any work
        self.lm, self.assays, self.config, self.progress = lm, assays, config, progress
        self.scores: dict[int, np.ndarray] = {}

    def add(self, rows: list[int]) -> None:
        for i in rows:
            self.scores[i] = layer_scores(self.lm, self.assays[i], self.config, progress=self.progress)

    def state_dict(self) -> dict:
        return {i: v.copy() for i, v in self.scores.items()}

    def load_state_dict(self, state: dict) -> None:
        self.scores = {int(i): np.array(v) for i, v in state.items()}

    def result(self) -> pd.DataFrame:
        lm, config = self.lm, self.config
        scoring = resolve_scoring(lm, config.scoring)
        rng = np.random.default_rng(config.seed)
        rows, boots = [], {}
        layers = list(range(lm.first_lens_layer, lm.n_layers + 1))
        for i, assay in enumerate(self.assays):
            scores = self.scores[i]
            fitness = assay.variants["DMS_score"].to_numpy()
            samples = [rng.integers(0, len(fitness), len(fitness)) for _ in range(config.n_bootstrap)]
            for r, layer in enumerate(layers):
                boot = np.array([spearman(scores[r, s], fitness[s]) for s in samples])
                boots[(assay.id, layer)] = boot
                rho = spearman(scores[r], fitness)
                low, high = _interval(boot)
                rows.append({"assay": assay.id, "layer": layer, "relative_depth": layer / lm.n_layers,
                             "spearman": rho, "spearman_low": low, "spearman_high": high,
                             "n_variants": len(fitness), "scoring": scoring})
        frame = pd.DataFrame(rows)
        for layer in layers:
            part = frame[frame["layer"] == layer]
            boot = np.mean([boots[(a, layer)] for a in part["assay"]], axis=0) if config.n_bootstrap else np.array([])
            low, high = _interval(boot)
            rows.append({"assay": "mean", "layer": layer, "relative_depth": layer / lm.n_layers,
                         "spearman": part["spearman"].mean(), "spearman_low": low, "spearman_high": high,
                         "n_variants": int(part["n_variants"].sum()), "scoring": scoring})
        return pd.DataFrame(rows)


def variant_effects(lm: ProteinLM, assays: list[Assay], config: VariantEffectsConfig | None = None,
                    progress: bool = True, checkpoint=None, key=None) -> pd.DataFrame:
    """Measurement M5: per assay and layer, Spearman ρ with bootstrap 95% intervals; plus the mean.
    Resumable after every assay from `checkpoint` (see `streaming.stream`)."""
    acc = VariantEffectsAccumulator(lm, assays, config or VariantEffectsConfig(), progress)
    stream(acc, assays, 1, f"variant effects {lm.info.name}", progress, checkpoint, key)
    return acc.result()
