"""Part skipping (each block's attention and MLP skipped alone, total and direct effects), its
pooled late-block summary with intervals, the chapter's sentence and figure."""

import numpy as np
import pandas as pd
import pytest

from conftest import SEQUENCES, tiny_bert, tiny_esm
from plmdepth.analysis.sublayers import late_part_effects, larger_part
from plmdepth.plan import make_plan
from plmdepth.probes.layer_skipping import SkipConfig, layer_skipping
from plmdepth.probes.part_skipping import part_skipping, runs
from plmdepth.publish.chapter_text import part_skipping_sentence
from plmdepth.publish.figures import part_skipping_curves, to_svg


@pytest.fixture(scope="module")
def esm_tables():
    lm = tiny_esm(layers=4)
    plan = make_plan(SEQUENCES, "masked", seed=0)
    table, per_sequence = part_skipping(lm, SEQUENCES, plan, progress=False)
    return lm, plan, table, per_sequence


def test_every_part_and_effect_is_the_layer_skipping_run_it_names(esm_tables):
    lm, plan, table, per_sequence = esm_tables
    assert runs(lm) == [(p, e) for p in ("block", "attention", "mlp") for e in ("total", "direct")]
    assert len(table) == 6 * lm.n_layers and set(table["skipped"]) == set(range(lm.n_layers))
    for (part, effect), rows in table.groupby(["part", "effect"]):
        mode = "current" if effect == "total" else "local"
        _, own = layer_skipping(lm, SEQUENCES, plan, SkipConfig(mode=mode, part=part), progress=False)
        np.testing.assert_array_equal(rows["prob_l2_mean"].to_numpy(), own["prob_l2_mean"].to_numpy())
    # the per-sequence sums pool to the table's means
    pooled = per_sequence.groupby(["part", "effect", "skipped"])[["prob_l2_sum", "n_units"]].sum()
    merged = table.set_index(["part", "effect", "skipped"]).join(pooled, rsuffix="_pooled")
    np.testing.assert_allclose(merged["prob_l2_mean"], merged["prob_l2_sum"] / merged["n_units_pooled"], rtol=1e-12)
    direct = table[table["effect"] == "direct"].pivot(index="skipped", columns="part", values="prob_l2_mean")
    assert (direct > 0).all().all()


def test_a_post_ln_model_has_total_effects_only():
    lm = tiny_bert()
    table, _ = part_skipping(lm, SEQUENCES, make_plan(SEQUENCES, "masked", seed=0), progress=False)
    assert set(table["effect"]) == {"total"} and set(table["part"]) == {"block", "attention", "mlp"}


def test_late_effects_carry_intervals_and_the_paired_difference(esm_tables):
    lm, _, table, per_sequence = esm_tables
    late = late_part_effects(per_sequence.assign(model="tiny-esm"))
    assert set(late["part"]) == {"block", "attention", "mlp", "mlp − attention"}
    assert (late["low"] <= late["mean"] + 1e-12).all() and (late["mean"] <= late["high"] + 1e-12).all()
    # the point estimate is the pooled mean over the last half of the blocks (2 and 3 of 4)
    rows = per_sequence[(per_sequence["skipped"] >= 2) & (per_sequence["part"] == "mlp")
                        & (per_sequence["effect"] == "total")]
    mlp = late[(late["part"] == "mlp") & (late["effect"] == "total")].iloc[0]
    assert mlp["mean"] == pytest.approx(rows["prob_l2_sum"].sum() / rows["n_units"].sum())
    diff = late[(late["part"] == "mlp − attention") & (late["effect"] == "total")].iloc[0]
    attention = late[(late["part"] == "attention") & (late["effect"] == "total")].iloc[0]
    assert diff["mean"] == pytest.approx(mlp["mean"] - attention["mean"])
    assert larger_part(pd.Series({"low": 0.1, "high": 0.2})) == "the MLP"
    assert larger_part(pd.Series({"low": -0.2, "high": -0.1})) == "the attention"
    assert larger_part(pd.Series({"low": -0.1, "high": 0.2})) == "neither, resolved"
    sentence = part_skipping_sentence(late)
    assert sentence.startswith("In the last half of the blocks") and "tiny-esm (blocks 2-3 of 4)" in sentence
    assert f"{mlp['mean']:.3f} [{mlp['low']:.3f}, {mlp['high']:.3f}]" in sentence
    assert f"MLP − attention {diff['mean']:.3f} [{diff['low']:.3f}, {diff['high']:.3f}]; larger:" in sentence
    assert part_skipping_sentence(late.iloc[0:0]) == ""


def test_the_figure_draws_each_part_and_effect(esm_tables):
    _, _, table, _ = esm_tables
    svg = to_svg(part_skipping_curves(pd.concat([table.assign(model="a"), table.assign(model="b")])))
    assert "relative depth s / L" in svg and 'stroke-dasharray="5,3"' in svg
    for colour in ("#7f7f7f", "#1f77b4", "#ff7f0e"):
        assert colour in svg


def test_at_the_last_block_total_and_direct_effects_coincide_for_the_block_and_its_mlp(esm_tables):
    """Nothing follows the last block: skipping it, or its MLP (the last update it adds), changes h_L by
    exactly that update whether or not later blocks are "recomputed"; its attention differs (the MLP
    then reads another stream)."""
    lm, _, table, _ = esm_tables
    last = table[table["skipped"] == lm.n_layers - 1].set_index(["part", "effect"])["prob_l2_mean"]
    for part in ("block", "mlp"):
        assert last[(part, "total")] == pytest.approx(last[(part, "direct")], rel=1e-6)
    assert abs(last[("attention", "total")] - last[("attention", "direct")]) > 1e-4
