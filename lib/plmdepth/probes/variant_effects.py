"""Per-layer variant-effect prediction (SPEC M5, paper Fig. 5), by ProteinGym's protocol.

Every variant of a deep-mutational scan is scored from the logit lens of every layer l
(`variant_scoring`: masked marginals, wt marginals or pseudo-likelihoods for masked and
diffusion models, log-likelihood ratios for autoregressive ones, in context windows for long
sequences) and the scores are compared with the measured fitness (`DMS_score`, higher =
fitter) by Spearman's ρ, per assay and per mutation depth (singles, doubles, ...).

The "mean" row averages as ProteinGym does: first the assays of each protein (`UniProt_ID`),
then the proteins (ProteinGym then averages over function classes, which a handful of assays
does not have).

Uncertainty, per assay and layer (and for the mean): a bootstrap 95% interval over variants
(`spearman_low`, `spearman_high`; `n_bootstrap` resamples drawn from `seed`) and a permutation
null: ρ of the scores against the assay's fitness shuffled among its variants, `n_permutations`
times (the same shuffles at every layer of an assay, drawn from a stream of their own, so the
bootstrap draws do not depend on them). `spearman_null_low` and `spearman_null_high` are its 2.5
and 97.5 percentiles; `p_permutation` = (1 + #{|ρ_perm| >= |ρ|}) / (1 + n_permutations) is the
two-sided p-value. The mean's replicate k is the weighted mean of the assays' replicates k.
Every replicate is kept in `variant_effects_replicates.csv` (`assay`, `layer`, `relative_depth`,
`kind` = "bootstrap" or "permutation", `replicate`, `spearman`): replicate k of one assay is one
resample at every layer, so a statistic over layers can be recomputed per replicate.

Data come in ProteinGym's DMS substitution format (`read_assays`): a reference table
(`DMS_id`, `target_seq`, optionally `DMS_filename` and `UniProt_ID`) and one CSV per assay
(`mutant` such as `A23V:G40S`, 1-based on `target_seq`; `mutated_sequence`; `DMS_score`).
`plmdepth.mutants` reads and applies the `mutant` notation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from plmdepth.model import ProteinLM
from plmdepth.mutants import AssayError, mutated_sequence, parse_mutant
from plmdepth.probes.logit_lens import LogitLens
from plmdepth.probes.streaming import stream
from plmdepth.probes.variant_scoring import (MASKED_SCORINGS, SCORINGS, letter_classes, log_likelihood_ratios,
                                             masked_marginals, pseudo_log_likelihoods)


@dataclass
class Assay:
    """One deep-mutational scan: the wild type and its scored variants."""

    id: str
    wild_type: str
    variants: pd.DataFrame  # mutant, mutated_sequence, DMS_score
    mutations: list[list[tuple[int, str, str]]]  # per variant: (0-based position, wt, mut)
    protein: str = ""  # UniProt_ID: assays of one protein are averaged first (ProteinGym)

    def __post_init__(self):
        self.protein = self.protein or self.id

    @property
    def depths(self) -> np.ndarray:
        """Number of substitutions of each variant."""
        return np.array([len(m) for m in self.mutations])

    @property
    def sequence(self) -> str:
        """The wild type: what `stream` orders assays by, as it orders records."""
        return self.wild_type


@dataclass
class VariantEffectsConfig:
    """Parameters of a variant-effect run (written to run.json verbatim)."""

    scoring: str = "auto"  # auto: masked_marginal for masked/diffusion, log_likelihood_ratio otherwise
    vocab: str = "full"
    batch_size: int = 32
    prefix_cache: bool = True  # autoregressive: run each variant from its first mutated residue on
    n_bootstrap: int = 200
    n_permutations: int = 200  # permutation null of Spearman's rho (0: none)
    seed: int = 0


def read_assays(reference: str | Path, folder: str | Path | None = None, assays: list[str] | None = None,
                max_variants: int | None = None, seed: int = 0) -> list[Assay]:
    """Assays from a ProteinGym-style reference table and its per-assay CSVs.

    `folder` defaults to the reference table's folder. `max_variants` keeps a seeded random
    subset of each larger assay (in file order). Every `mutated_sequence` is checked against
    its `mutant` applied to the wild type.
    """
    if max_variants is not None and max_variants < 2:
        raise AssayError(f"--max-variants must be at least 2 (a Spearman correlation needs two variants), "
                         f"not {max_variants}.")
    reference = Path(reference)
    if not reference.is_file():
        raise AssayError(f"reference table {reference} does not exist")
    table = _read_table(reference, "the reference table")
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
        frame = _read_table(folder / name, f"the variants of assay {row.DMS_id}")
        for column in ("mutant", "mutated_sequence", "DMS_score"):
            if column not in frame:
                raise AssayError(f"{folder / name} has no column '{column}'")
        scores = pd.to_numeric(frame["DMS_score"], errors="coerce")
        bad = scores.isna() | ~np.isfinite(scores.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raw = frame["DMS_score"][i]
            what = "is missing" if pd.isna(raw) else f"'{raw}' is not a finite number"
            raise AssayError(f"{folder / name}, row {i + 2}: DMS_score {what} ({int(bad.sum())} rows without a "
                             "finite score); give every variant a numeric score or remove the row.")
        frame["DMS_score"] = scores.astype(float)
        if frame.empty:
            raise AssayError(f"{folder / name} holds no variants; a Spearman correlation needs at least two.")
        if max_variants is not None and len(frame) > max_variants:
            keep = np.sort(np.random.default_rng(seed).choice(len(frame), max_variants, replace=False))
            frame = frame.iloc[keep].reset_index(drop=True)
        wild_type = str(row.target_seq)
        mutations = [parse_mutant(m, wild_type, row.DMS_id) for m in frame["mutant"]]
        for i, (muts, seq) in enumerate(zip(mutations, frame["mutated_sequence"])):
            if mutated_sequence(wild_type, muts) != seq:
                raise AssayError(f"assay {row.DMS_id}, row {i + 2}: mutated_sequence does not equal "
                                 f"mutant '{frame['mutant'][i]}' applied to the wild type")
        protein = str(getattr(row, "UniProt_ID", "") or "")
        protein = "" if protein == "nan" else protein
        out.append(Assay(row.DMS_id, wild_type, frame[["mutant", "mutated_sequence", "DMS_score"]], mutations,
                         protein))
    return out


def _read_table(path: Path, what: str) -> pd.DataFrame:
    """A CSV file, or one sentence naming it when it is missing or not a readable CSV."""
    if not path.is_file():
        raise AssayError(f"{path} ({what}) does not exist.")
    try:
        return pd.read_csv(path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise AssayError(f"{path} ({what}) is not a readable CSV file ({type(err).__name__}); "
                         "give a comma-separated UTF-8 table with a header line.") from None


def assay_checksum(assay: Assay) -> str:
    """sha256 of an assay's wild type and the variants used (after any subsampling)."""
    import hashlib

    text = assay.wild_type + "\n" + assay.variants.to_csv(index=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def resolve_scoring(lm: ProteinLM, scoring: str) -> str:
    """The scoring of `lm`'s variants ("auto" chosen by its objective); one sentence for a model that
    needs a structure (assays give sequences only) or a scoring that does not apply to it."""
    if lm.inputs_for is not None:
        raise AssayError(f"{lm.info.name} needs an input besides the sequence (a structure) and assays give "
                         "sequences only; score variant effects with a sequence model.")
    if scoring == "auto":
        return "log_likelihood_ratio" if lm.objective == "autoregressive" else "masked_marginal"
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be 'auto' or one of {SCORINGS}, not {scoring!r}")
    if (scoring not in MASKED_SCORINGS) != (lm.objective == "autoregressive"):
        article = "an" if lm.objective[0] in "aeiou" else "a"
        raise ValueError(f"scoring {scoring} does not apply to {article} {lm.objective} model")
    return scoring


@torch.no_grad()
def layer_scores(lm: ProteinLM, assay: Assay, config: VariantEffectsConfig, progress: bool = False) -> np.ndarray:
    """Scores (n_layers_read, n_variants) of every variant at every readable layer."""
    scoring = resolve_scoring(lm, config.scoring)
    lens = LogitLens(lm, config.vocab).to(lm.device)
    wt = assay.wild_type
    unknown = sorted(set(wt + "".join(assay.variants["mutated_sequence"])) - set(lm.alphabet.residues))
    if unknown:
        raise AssayError(f"assay {assay.id}: letters {', '.join(unknown)} are not in {lm.info.name}'s alphabet.")
    desc = f"{assay.id} {lm.info.name}"
    if scoring == "log_likelihood_ratio":
        return log_likelihood_ratios(lm, lens, wt, assay.mutations, config.batch_size, config.prefix_cache,
                                     progress, desc)
    if scoring == "pseudo_likelihood":
        pll = pseudo_log_likelihoods(lm, lens, [wt] + list(assay.variants["mutated_sequence"]), config.batch_size,
                                     progress, desc)
        return pll[:, 1:] - pll[:, :1]
    positions = sorted({p for muts in assay.mutations for p, _, _ in muts})
    index = {p: i for i, p in enumerate(positions)}
    table = masked_marginals(lm, lens, wt, positions, scoring == "masked_marginal", config.batch_size, progress, desc)
    classes = letter_classes(lm, lens, (a for muts in assay.mutations for _, w, m in muts for a in (w, m)))
    scores = np.zeros((table.shape[0], len(assay.mutations)))
    for v, muts in enumerate(assay.mutations):
        for p, w, m in muts:
            scores[:, v] += (table[:, index[p], classes[m]] - table[:, index[p], classes[w]]).numpy()
    return scores


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


def _unit_ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks of each row, centred and scaled to norm 1 (NaN for a constant row)."""
    ranks = pd.DataFrame(np.atleast_2d(x).T).rank().to_numpy().T
    ranks = ranks - ranks.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ranks / np.linalg.norm(ranks, axis=1, keepdims=True)


def permutation_null(scores: np.ndarray, fitness: np.ndarray, permutations: np.ndarray) -> np.ndarray:
    """Spearman's ρ of `scores` (layers, variants) against `fitness[p]` for every permutation p
    (rows of `permutations`): (layers, permutations)."""
    return _unit_ranks(scores) @ _unit_ranks(fitness)[0][permutations].T


def _null_columns(null: np.ndarray, rho: float) -> dict:
    """The 95% range of the null replicates and the two-sided permutation p-value of `rho` (with the
    +1 correction; a replicate within 1e-12 of |rho| counts as extreme); NaN without replicates."""
    low, high = _interval(null)
    p = ((1 + np.sum(np.abs(null) >= abs(rho) - 1e-12)) / (1 + len(null))
         if len(null) and np.isfinite(rho) else np.nan)
    return {"spearman_null_low": low, "spearman_null_high": high, "p_permutation": float(p)}


class VariantEffectsAccumulator:
    """Per assay: the scores of every variant at every readable layer. Spearman ρ and its
    bootstrap are computed in `result`, over the assays in their given order, so a run that
    resumed after some assays draws the same bootstrap samples as one that did not."""

    outputs = ("variant_effects", "variant_effects_by_depth", "variant_effects_replicates")

    def __init__(self, lm: ProteinLM, assays: list[Assay], config: VariantEffectsConfig, progress: bool = False):
        resolve_scoring(lm, config.scoring)  # refuse a wrong scoring or model before any work
        self.lm, self.assays, self.config, self.progress = lm, assays, config, progress
        self.scores: dict[int, np.ndarray] = {}

    def add(self, rows: list[int]) -> None:
        for i in rows:
            self.scores[i] = layer_scores(self.lm, self.assays[i], self.config, progress=self.progress)

    def state_dict(self) -> dict:
        return {i: v.copy() for i, v in self.scores.items()}

    def load_state_dict(self, state: dict) -> None:
        self.scores = {int(i): np.array(v) for i, v in state.items()}

    def result(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(per assay and layer, plus ProteinGym's mean; per assay, mutation depth and layer; every
        bootstrap and permutation replicate of ρ, per assay and layer and for the mean)."""
        lm, config = self.lm, self.config
        scoring = resolve_scoring(lm, config.scoring)
        rng = np.random.default_rng(config.seed)
        permuting = np.random.default_rng([config.seed, 1])  # a stream of its own: the bootstrap draws stay
        rows, replicates, depth_rows = [], {}, []
        layers = list(range(lm.first_lens_layer, lm.n_layers + 1))
        for i, assay in enumerate(self.assays):
            scores = self.scores[i]
            fitness = assay.variants["DMS_score"].to_numpy()
            samples = [rng.integers(0, len(fitness), len(fitness)) for _ in range(config.n_bootstrap)]
            permutations = np.array([permuting.permutation(len(fitness)) for _ in range(config.n_permutations)],
                                    dtype=int).reshape(config.n_permutations, len(fitness))
            nulls = permutation_null(scores, fitness, permutations)
            depths = assay.depths
            for r, layer in enumerate(layers):
                boot = np.array([spearman(scores[r, s], fitness[s]) for s in samples])
                replicates[(assay.id, layer)] = {"bootstrap": boot, "permutation": nulls[r]}
                low, high = _interval(boot)
                rho = spearman(scores[r], fitness)
                rows.append({"assay": assay.id, "layer": layer, "relative_depth": layer / lm.n_layers,
                             "spearman": rho, "spearman_low": low, "spearman_high": high,
                             **_null_columns(nulls[r], rho), "n_variants": len(fitness), "scoring": scoring})
                if len(set(depths)) > 1:
                    for depth in sorted(set(depths)):
                        keep = depths == depth
                        depth_rows.append({"assay": assay.id, "mutation_depth": int(depth), "layer": layer,
                                           "relative_depth": layer / lm.n_layers,
                                           "spearman": spearman(scores[r, keep], fitness[keep]),
                                           "n_variants": int(keep.sum()), "scoring": scoring})
        frame = pd.DataFrame(rows)
        proteins = {a.id: a.protein for a in self.assays}
        for layer in layers:
            part = frame[frame["layer"] == layer]
            weights = _protein_weights([proteins[a] for a in part["assay"]])
            mean = {kind: np.sum([w * replicates[(a, layer)][kind] for a, w in zip(part["assay"], weights)], axis=0)
                    for kind in ("bootstrap", "permutation")}
            replicates[("mean", layer)] = mean
            low, high = _interval(mean["bootstrap"])
            rho = float(np.sum(weights * part["spearman"].to_numpy()))
            rows.append({"assay": "mean", "layer": layer, "relative_depth": layer / lm.n_layers,
                         "spearman": rho, "spearman_low": low, "spearman_high": high,
                         **_null_columns(mean["permutation"], rho), "n_variants": int(part["n_variants"].sum()),
                         "scoring": scoring})
        by_depth = pd.DataFrame(depth_rows, columns=["assay", "mutation_depth", "layer", "relative_depth", "spearman",
                                                     "n_variants", "scoring"])
        return pd.DataFrame(rows), by_depth, _replicate_table(replicates, lm.n_layers)


def _replicate_table(replicates: dict, n_layers: int) -> pd.DataFrame:
    """One row per replicate: {(assay, layer): {kind: values}} as a long table."""
    parts = [pd.DataFrame({"assay": assay, "layer": layer, "relative_depth": layer / n_layers, "kind": kind,
                           "replicate": np.arange(len(values)), "spearman": values})
             for (assay, layer), kinds in replicates.items() for kind, values in kinds.items() if len(values)]
    columns = ["assay", "layer", "relative_depth", "kind", "replicate", "spearman"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def _protein_weights(proteins: list[str]) -> np.ndarray:
    """Weight of each assay in ProteinGym's mean: 1 / (n_proteins * assays of its protein)."""
    counts = pd.Series(proteins).value_counts()
    return np.array([1.0 / (len(counts) * counts[p]) for p in proteins])


def variant_effects(lm: ProteinLM, assays: list[Assay], config: VariantEffectsConfig | None = None,
                    progress: bool = True, checkpoint=None,
                    key=None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Measurement M5: per assay and layer, Spearman ρ with bootstrap 95% intervals and its
    permutation null, plus ProteinGym's mean (`variant_effects.csv`); per mutation depth where an
    assay has several (`variant_effects_by_depth.csv`); every bootstrap and permutation replicate
    (`variant_effects_replicates.csv`).
    Resumable after every assay from `checkpoint` (see `streaming.stream`)."""
    acc = VariantEffectsAccumulator(lm, assays, config or VariantEffectsConfig(), progress)
    stream(acc, assays, 1, f"variant effects {lm.info.name}", progress, checkpoint, key)
    return acc.result()
