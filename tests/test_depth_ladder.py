"""Claim (c) across a depth ladder (analysis/depth_ladder.py): slopes per doubling of depth, paired
bootstrap intervals, the twins' slopes, and the sentence the chapter glues."""

import numpy as np
import pandas as pd
import pytest

from plmdepth.analysis import bootstrap
from plmdepth.analysis.claims import ClaimParameters
from plmdepth.analysis.depth_ladder import ladder_numbers, ladder_trends, slope
from plmdepth.publish.chapter_text import ladder_sentence, perplexity_sentence
from test_evidence import _hand_ratios
from test_verdicts import write_run


def _profile(blocks: int, late: float) -> list[float]:
    """A skip profile e(s) of `blocks` values: 1 in the earlier half, `late` in the later half, 0 last."""
    half = blocks // 2
    return [1.0] * half + [late] * (blocks - half - 1) + [0.0]


def _ladder(root, lates: dict, twin_of=None, seed=None, spread=0.2):
    folders = []
    for blocks, late in lates.items():
        name = f"rung-L{blocks}" if twin_of is None else f"rung-L{blocks} (untrained, seed {seed})"
        kl = list(np.linspace(4.0, 0.0, blocks + 1) ** (1 + late))
        folders.append(write_run(root, name, "Ladder", blocks, skip=_profile(blocks, late), output=[0.5] * (blocks - 1),
                                 kl=kl, spread=spread, twin_of=twin_of and f"rung-L{blocks}", init_seed=seed))
    return folders


def test_slope_is_least_squares_against_log2_blocks():
    values = np.array([[3.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    assert slope([2, 4, 8], values) == pytest.approx([-1.0, 0.0])
    assert slope([4, 8, 16], np.array([[0.0, 1.0, 3.0]])) == pytest.approx(np.polyfit([2, 3, 4], [0.0, 1.0, 3.0], 1)[0])


def test_the_ratio_slope_and_its_interval_equal_a_hand_written_paired_bootstrap(tmp_path):
    lates = {4: 0.8, 8: 0.6, 12: 0.5, 16: 0.3}
    folders = _ladder(tmp_path, lates)
    params = ClaimParameters(n_resamples=300, seed=3)
    numbers, replicates = ladder_numbers(folders, params)
    trends = ladder_trends(replicates)
    row = trends[(trends["group"] == "trained") & (trends["number"] == "late/early skip effect")].iloc[0]

    per_sequence = {b: pd.read_csv(tmp_path / f"rung-L{b}" / "skip_effect_per_sequence.csv") for b in lates}
    ids, w = bootstrap.weights(per_sequence[4]["sequence"].unique(), 300, seed=3)  # the same sequences in every rung
    hand = np.stack([_hand_ratios(per_sequence[b], w, ids) for b in lates], axis=1)
    x = np.log2(list(lates))
    slopes = np.array([np.polyfit(x, r, 1)[0] for r in hand])
    assert row["slope"] == pytest.approx(slopes[0]) and row["slope"] < 0
    assert (row["low"], row["high"]) == pytest.approx(tuple(np.percentile(slopes[1:], [2.5, 97.5])), rel=1e-9)
    assert row["verdict"] == "agrees" and row["rungs"] == "4, 8, 12, 16"
    ratios = numbers[(numbers["number"] == "late/early skip effect")].set_index("blocks")["value"]
    assert ratios.to_dict() == pytest.approx({4: 0.8, 8: 0.6, 12: 0.5, 16: 0.3})


def test_a_rising_ratio_disagrees_and_a_flat_noisy_one_is_inconclusive(tmp_path):
    rising = ladder_trends(ladder_numbers(_ladder(tmp_path / "up", {4: 0.3, 8: 0.5, 16: 0.9}),
                                          ClaimParameters(n_resamples=200))[1])
    flat = ladder_trends(ladder_numbers(_ladder(tmp_path / "flat", {4: 0.5, 8: 0.5, 16: 0.5}, spread=0.6),
                                        ClaimParameters(n_resamples=200))[1])
    verdict = lambda t: t.loc[t["verdict"] != "", "verdict"].iloc[0]  # noqa: E731
    assert verdict(rising) == "disagrees" and verdict(flat) == "inconclusive"


def test_a_two_block_rung_has_a_kl_share_but_no_ratio_and_twins_get_their_own_slopes(tmp_path):
    trained = _ladder(tmp_path, {2: 0.9, 4: 0.8, 8: 0.6, 16: 0.3})
    twins = _ladder(tmp_path, {2: 1.0, 4: 1.0, 8: 1.0, 16: 1.0}, twin_of=True, seed=0)
    numbers, replicates = ladder_numbers(trained + twins, ClaimParameters(n_resamples=100))
    two = numbers[numbers["blocks"] == 2]
    assert set(two["number"]) == {"KL share at 3/4 depth"}
    trends = ladder_trends(replicates)
    assert set(trends["group"]) == {"trained", "untrained, seed 0"}
    twin_ratio = trends[(trends["group"] == "untrained, seed 0") & (trends["number"] == "late/early skip effect")]
    assert twin_ratio["slope"].iloc[0] == pytest.approx(0.0, abs=1e-9) and twin_ratio["verdict"].iloc[0] == ""
    text = ladder_sentence(trends, numbers)
    row = trends[(trends["group"] == "trained") & (trends["number"] == "late/early skip effect")].iloc[0]
    assert f"{row['slope']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]" in text
    assert "lies outside the range of the twins' slopes (+0.000 to +0.000): training" in text
    assert "seed 0: +0.000" in text and "claim (c) **agrees**" in text and "(4 blocks: 0.80 [" in text


def test_the_perplexity_sentence_says_whether_depth_lowers_it():
    rungs = [{"depth": d, "heldout_perplexity": p} for d, p in ((2, 9.0), (4, 8.0), (8, 7.5))]
    assert "every deeper rung reaches a lower held-out perplexity: 9.00 (2 blocks)" in perplexity_sentence(
        {"rungs": rungs})
    rungs[2]["heldout_perplexity"] = 8.2
    assert "the rung(s) of 8 blocks are no better" in perplexity_sentence({"rungs": rungs})


def test_the_front_page_line_gives_the_ladder_slope_its_interval_and_the_twins(tmp_path):
    from plmdepth.publish.verdicts import ladder_key_line

    trained = _ladder(tmp_path, {4: 0.8, 8: 0.6, 16: 0.3})
    twins = [*_ladder(tmp_path, {4: 1.0, 8: 1.0, 16: 1.0}, twin_of=True, seed=0),
             *_ladder(tmp_path, {4: 0.9, 8: 1.0, 16: 1.1}, twin_of=True, seed=1)]
    params = ClaimParameters(n_resamples=100)
    row = ladder_trends(ladder_numbers(trained, params)[1]).iloc[0]
    line = ladder_key_line(trained + twins, params)
    assert f"changes by {row['slope']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}] per doubling" in line
    assert "(2 seeds)" in line and "claim (c) **agrees**" in line and "(4, 8, 16 blocks)" in line
    assert "Not run in this build" in ladder_key_line([], params)
