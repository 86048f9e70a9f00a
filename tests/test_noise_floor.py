"""The noise floor (probes.noise_floor): float64, the null skip and mixed bfloat16 against the run."""

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_esm, tiny_gpt2
from plmdepth.plan import make_plan
from plmdepth.probes.layer_skipping import SkipConfig, layer_skipping
from plmdepth.probes.noise_floor import NoiseFloorConfig, compare, noise_floor
from plmdepth.publish.chapter_text import noise_floor_markdown, noise_floor_sentence


@pytest.mark.parametrize("build", [tiny_esm, tiny_gpt2])
def test_skipping_nothing_changes_nothing_within_rounding(build, records):
    lm = build()
    plan = make_plan(records, lm.objective, seed=0)
    effect, output = layer_skipping(lm, records, plan, SkipConfig(null=True, max_rows=3), progress=False)
    real, _ = layer_skipping(lm, records, plan, SkipConfig(max_rows=3), progress=False)
    assert effect["effect_max"].max() < 1e-5 and output["kl_max"].max() < 1e-6
    assert real["effect_max"].max() > 1e-2  # the real skip is far above it


def test_compare_takes_the_largest_difference_and_the_scale_per_column():
    a = {"t": pd.DataFrame({"layer": [0, 1], "kl": [2.0, -4.0], "acc": [0.5, 0.25]})}
    b = {"t": pd.DataFrame({"layer": [0, 1], "kl": [2.5, -4.0], "acc": [0.5, 0.0]})}
    table = compare(a, b, "x").set_index("column")
    assert list(table.index) == ["kl", "acc"]  # the row coordinates are not compared
    assert table.loc["kl", "max_abs_diff"] == 0.5 and table.loc["kl", "max_abs"] == 4.0
    assert table.loc["kl", "relative"] == 0.125 and table.loc["acc", "max_abs_diff"] == 0.25
    exact = compare(a, b, "null", exact=0.0).set_index("column")
    assert exact.loc["kl", "max_abs_diff"] == 4.0 and exact.loc["kl", "max_abs"] == 4.0


def test_noise_floor_orders_float64_below_bfloat16_and_feeds_the_book(records):
    lm = tiny_esm()
    plan = make_plan(records, lm.objective, seed=0)
    table = noise_floor(lm, records, plan, NoiseFloorConfig(bfloat16_sequences=2, batch_size=2), progress=False)
    assert set(table["comparison"]) == {"float64", "null skip", "bfloat16 (mixed)"}
    assert set(table["table"]) == {"logit_lens", "skip_effect", "skip_output", "contributions"}
    by = table.groupby("comparison")["relative"].max()
    assert 0 < by["float64"] < 1e-4 and 10 * by["float64"] < by["bfloat16 (mixed)"] < 0.5
    assert by["null skip"] < 1e-5
    assert np.all(table.loc[table["comparison"] == "bfloat16 (mixed)", "n_sequences"] == 2)
    assert np.all(table.loc[table["comparison"] == "float64", "n_sequences"] == len(records))
    assert next(lm.parameters()).dtype.is_floating_point and str(next(lm.parameters()).dtype) == "torch.float32"
    page = noise_floor_markdown(table.assign(model="tiny-esm"))
    assert page.splitlines()[0] == "| measurement | float64 | null skip | bfloat16 (mixed) |"
    row = next(line for line in page.splitlines() if line.startswith("| M2 skip effect |"))
    m2 = table[(table["table"] == "skip_effect") & (table["comparison"] == "float64")]["relative"].max()
    assert row.split(" | ")[1] == f"{m2:.1e}"
    assert "first 4 sequences (2 for bfloat16)" in page and "bfloat16 matrix products move a number by up to" in page
    output = layer_skipping(lm, records, plan, progress=False)[1].assign(model="tiny-esm")
    sentence = noise_floor_sentence(table.assign(model="tiny-esm"), output)
    last = output["skipped"] == output["skipped"].max()  # zero by construction in "future" mode
    assert output.loc[last, "prob_l2_mean"].max() == 0
    assert f"is {output.loc[~last, 'prob_l2_mean'].min():.1e}." in sentence and "first 4 sequences" in sentence
