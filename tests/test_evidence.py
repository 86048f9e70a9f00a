"""The strength of the evidence: intervals over sequences, untrained twins, three-valued verdicts."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_bert, tiny_esm
from plmdepth.analysis import bootstrap
from plmdepth.analysis.claims import BEYOND, NOT_BEYOND, ClaimParameters, claims, with_twins
from plmdepth.models import resolve, twin
from plmdepth.models.untrained import parse_twin, untrained_twin
from test_verdicts import write_run

DEEP = dict(family="Fam", blocks=6, skip=[1.0, 0.9, 0.3, 0.8, 0.2, 0.1], output=[0.5, 0.4, 0.3, 0.05, 0.04],
            kl=[4.0, 3.0, 2.0, 0.8, 0.3, 0.1, 0.0])


def _row(table, claim, model):
    return table[(table["claim"] == claim) & (table["model"] == model)].iloc[0]


def test_side_of_an_interval():
    assert bootstrap.side(0.2, 0.8, 1.0, below=True) == "agrees"
    assert bootstrap.side(1.1, 1.5, 1.0, below=True) == "disagrees"
    assert bootstrap.side(0.8, 1.2, 1.0, below=True) == "inconclusive"
    assert bootstrap.side(1.0, 2.0, 1.0, below=False, inclusive=True) == "agrees"
    assert bootstrap.side(0.0, 0.0, 1.0, below=False, inclusive=True) == "disagrees"
    assert bootstrap.side(np.nan, np.nan, 1.0, below=True) == "inconclusive"


def test_an_interval_spanning_the_threshold_is_inconclusive(tmp_path):
    # late blocks (3, 4) as large as early ones (0, 1): ratio 1 up to noise, sequences differing by 50%
    write_run(tmp_path, "flat", **{**DEEP, "skip": [1.0, 1.0, 0.3, 0.98, 1.0, 0.1]}, spread=0.5)
    write_run(tmp_path, "clear", **DEEP, spread=0.05)
    table = claims(sorted(tmp_path.iterdir()))
    flat, clear = _row(table, "a", "flat"), _row(table, "a", "clear")
    assert flat["value"] < 1 and flat["low"] < 1 < flat["high"] and flat["verdict"] == "inconclusive"
    assert clear["high"] < 1 and clear["verdict"] == "agrees"


def _hand_ratios(per_sequence: pd.DataFrame, counts: np.ndarray, ids: list) -> np.ndarray:
    """Claim (a)'s ratio for each row of resample counts, pooled by hand: weight each sequence's sums,
    group by (skipped, affected), e(s) = mean over affected, later half / earlier half."""
    ratios = []
    for row in counts:
        weight = per_sequence["sequence"].map(dict(zip(ids, row)))
        pooled = (per_sequence.assign(w=weight * per_sequence["effect_sum"], n=weight * per_sequence["n_units"])
                  .groupby(["skipped", "affected"])[["w", "n"]].sum())
        e = (pooled["w"] / pooled["n"]).groupby("skipped").mean().to_numpy()
        half = len(e) // 2  # the middle block left out when the count is odd
        ratios.append(e[-half:].mean() / e[:half].mean())
    return np.array(ratios)


def test_interval_equals_a_hand_written_bootstrap_of_the_sequences(tmp_path):
    folder = write_run(tmp_path, "m", **DEEP, spread=0.3)
    params = ClaimParameters(n_resamples=200, seed=4)
    row = _row(claims([folder], params), "a", "m")
    per_sequence = pd.read_csv(folder / "skip_effect_per_sequence.csv")
    ids, w = bootstrap.weights(per_sequence["sequence"].unique(), 200, seed=4)
    assert (w[0] == 1).all() and (w[1:].sum(1) == len(ids)).all()  # the point, then draws of n sequences
    ratios = _hand_ratios(per_sequence, w, ids)
    assert row["value"] == pytest.approx(ratios[0]) and row["value"] == pytest.approx(0.5 / 0.95)
    assert (row["low"], row["high"]) == pytest.approx(tuple(np.percentile(ratios[1:], [2.5, 97.5])), rel=1e-9)
    assert row["low"] < row["value"] < row["high"]


def test_runs_on_the_same_sequences_are_resampled_together(tmp_path):
    """Claim (c) is a paired bootstrap: its replicates are the differences of the two models' replicates
    drawn with the same resamples; runs on other sequences get other draws."""
    write_run(tmp_path, "deep", **DEEP, spread=0.3, seed=7)
    write_run(tmp_path, "shallow", family="Fam", blocks=5, skip=[1.0, 0.9, 0.7, 0.6, 0.1],
              output=[0.5, 0.4, 0.3, 0.2], kl=[3.0, 2.0, 1.0, 0.5, 0.2, 0.0], spread=0.3, seed=8)
    params = ClaimParameters(n_resamples=300)
    row = _row(claims(sorted(tmp_path.iterdir()), params), "c", "deep (6) vs shallow (5)")
    deep, shallow = (pd.read_csv(tmp_path / m / "skip_effect_per_sequence.csv") for m in ("deep", "shallow"))
    ids, w = bootstrap.weights(deep["sequence"].unique(), 300)
    diff = _hand_ratios(deep, w, ids) - _hand_ratios(shallow, w, ids)
    assert row["value"] == pytest.approx(diff[0])
    assert (row["low"], row["high"]) == pytest.approx(tuple(np.percentile(diff[1:], [2.5, 97.5])), rel=1e-9)
    assert (bootstrap.weights(["a", "b", "c"])[1] == bootstrap.weights(["c", "a", "b"])[1]).all()
    assert not (bootstrap.weights(["a", "b", "c"])[1] == bootstrap.weights(["a", "b", "d"])[1]).all()


# ------------------------------------------------------------------ untrained twins

def test_twin_argument_and_results_folder():
    assert parse_twin("antiberty@random2") == ("antiberty", 2) and parse_twin("antiberty") == ("antiberty", None)
    spec = resolve("iglm-s@random1")
    assert spec.slug == "iglm-s@random1" and spec.init_seed == 1 and spec.objective == "autoregressive"
    assert twin(resolve("iglm-s"), 1) == spec
    with pytest.raises(Exception, match="already an untrained twin"):
        twin(spec, 2)


def _trained(build):
    """A tiny model whose every weight moved away from its initialisation (as training moves them)."""
    lm = build(seed=0)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(5)
        for p in lm.network.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    return lm


@pytest.mark.parametrize("build", [tiny_esm, tiny_bert])
def test_a_twin_changes_every_weight_and_is_seeded(build):
    trained = _trained(build)
    before = {k: v.clone() for k, v in trained.network.named_parameters()}
    a, b, a_again = (untrained_twin(_trained(build), s) for s in (1, 2, 1))
    for name, p in a.network.named_parameters():
        assert not torch.equal(p, before[name]), name
        assert (p != before[name]).float().mean() > 0.9, name  # nearly every element (a padding row may stay)
    assert a.info.checksum == a_again.info.checksum != b.info.checksum != trained.info.checksum
    assert a.info.twin_of == trained.info.name and a.info.init_seed == 1 and "untrained" in a.info.name


def test_init_weights_on_a_loaded_model_is_not_a_twin():
    """The premise of building twins from the config: in transformers 5 `apply(_init_weights)` on a
    loaded model leaves initialised weights as they are (if this starts failing, the premise changed)."""
    lm = tiny_bert(seed=0)
    before = {k: v.clone() for k, v in lm.network.state_dict().items()}
    torch.manual_seed(1)
    lm.network.apply(lm.network._init_weights)
    unchanged = sum(torch.equal(v, before[k]) for k, v in lm.network.state_dict().items())
    assert unchanged > 0.5 * len(before)


def test_a_network_whose_initialiser_leaves_weights_is_refused():
    lm = _trained(tiny_esm)
    lm.initialise = lambda network: None  # an initialiser that does nothing
    lm.network.__class__ = type("NotHF", (torch.nn.Module,), {"forward": lm.network.forward})
    with pytest.raises(ValueError, match="left trained weights in place"):
        untrained_twin(lm, 1)


# ------------------------------------------------------------------ threshold sensitivity

def test_threshold_sweep_names_the_verdicts_that_flip(tmp_path):
    from plmdepth.analysis.sensitivity import stability, sweep
    from plmdepth.publish.verdicts import sensitivity_markdown

    # (b): KL at 3/4 depth (layer 4.5 of 6) / KL at layer 0: 0.15 / 4 for "low" (holds down to x0.5 = 0.125),
    # 0.8 / 4 = 0.2 for "edge" (agrees at the default 0.25, disagrees at x0.5 and x0.75)
    write_run(tmp_path, "low", **{**DEEP, "kl": [4.0, 3.0, 2.0, 0.8, 0.2, 0.1, 0.0]})
    write_run(tmp_path, "edge", **{**DEEP, "kl": [4.0, 3.0, 2.0, 1.5, 1.0, 0.6, 0.0]})
    table = sweep(sorted(tmp_path.iterdir()))
    b = table[table["claim"] == "b"].pivot(index="model", columns="factor", values="verdict")
    share = np.interp(0.75, np.arange(7) / 6, [4.0, 3.0, 2.0, 1.5, 1.0, 0.6, 0.0]) / 4
    assert share == pytest.approx(0.2)
    assert list(b.loc["edge"]) == ["disagrees", "disagrees", "agrees", "agrees", "agrees"]  # 0.125 0.1875 0.25 ...
    assert (b.loc["low"] == "agrees").all()
    stable = stability(table).set_index(["claim", "model"])
    assert stable.loc[("b", "low"), "holds"] and not stable.loc[("b", "edge"), "holds"]
    assert stable.loc[("b", "edge"), "flips"] == "disagrees at ×0.5; disagrees at ×0.75"
    text = sensitivity_markdown(table)
    assert "(b) edge (agrees): disagrees at ×0.5; disagrees at ×0.75" in text and "(b) low (agrees)" in text
