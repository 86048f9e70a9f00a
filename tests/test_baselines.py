"""Trivial baselines: hand-computed accuracies, the fallback beyond the training length, ties, the
bootstrap of logit_lens.summarise, the model's evaluated positions, and the tuned lens's fourth table."""

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import GPT_TOKENS, SEQUENCES, tiny_esm, tiny_gpt2
from plmdepth.fasta import Record
from plmdepth.plan import make_plan
from plmdepth.probes.baselines import model_positions, most_frequent, predictors, trivial_baselines
from plmdepth.probes.logit_lens import summarise
from plmdepth.results import read_tables
from plmdepth.runner import measure
from plmdepth.tokens import Alphabet

TRAIN = [Record("t1", "", "ACA"), Record("t2", "", "ACD"), Record("t3", "", "GCAD")]


def _at(masked: dict):
    return lambda record: masked[record.id]


def _accuracy(table: pd.DataFrame) -> dict:
    return table.set_index("predictor")["top1_accuracy"].to_dict()


def test_hand_computed_accuracies():
    # training residues: A A A A (4), C C C (3), D D (2), G (1)  -> unigram A
    # by position: 0: A A G -> A;  1: C C C -> C;  2: A D A -> A;  3: D (t3 only) -> D;  4 and on: unigram A
    # h1 "CCAD" at 0, 1, 2: C C A; unigram A: 0 0 1 (1 of 3), position A C A: 0 1 1 (2 of 3)
    # h2 "ACDDA" at 0, 1, 3, 4: A C D A; unigram A: 1 0 0 1 (2 of 4), position A C D A(fallback): 1 1 1 1 (4 of 4)
    held = [Record("h1", "", "CCAD"), Record("h2", "", "ACDDA")]
    table = trivial_baselines(TRAIN, held, _at({"h1": [0, 1, 2], "h2": [0, 1, 3, 4]}), n_bootstrap=50)
    assert table["predictor"].tolist() == ["unigram", "position"]
    assert _accuracy(table) == pytest.approx({"unigram": 3 / 7, "position": 6 / 7})
    assert (table["n_positions"] == 7).all() and (table["n_sequences"] == 2).all()
    assert (table["top1_accuracy_low"] <= table["top1_accuracy"]).all()
    assert (table["top1_accuracy"] <= table["top1_accuracy_high"]).all()


def test_beyond_the_longest_training_sequence_the_position_predictor_is_the_unigram():
    # positions 4 and 5 exist in no training sequence: the unigram's A, not the last position's D
    held = [Record("h", "", "CCCCAD")]
    table = trivial_baselines(TRAIN, held, _at({"h": [4, 5]}), n_bootstrap=10)
    assert _accuracy(table) == {"unigram": 0.5, "position": 0.5}
    assert predictors([r.sequence for r in TRAIN]) == ("A", ["A", "C", "A", "D"])


def test_ties_go_to_the_first_letter_alphabetically():
    # "CA", "AC": A and C twice each overall and once each at either position; C is seen first
    assert predictors(["CA", "AC"]) == ("A", ["A", "A"])
    assert most_frequent(Counter("YYWW")) == "W" and most_frequent(Counter("YYYWW")) == "Y"
    table = trivial_baselines([Record("a", "", "CA"), Record("b", "", "AC")],
                              [Record("h", "", "CC"), Record("i", "", "AA")], _at({"h": [0, 1], "i": [0, 1]}),
                              n_bootstrap=10)
    assert _accuracy(table) == {"unigram": 0.5, "position": 0.5}


def test_interval_is_the_bootstrap_of_summarise_over_sequences():
    rng = np.random.default_rng(1)
    held = [Record(f"h{i}", "", "".join(rng.choice(list("ACDG"), size=int(rng.integers(3, 8))))) for i in range(9)]
    masked = {r.id: sorted(rng.choice(len(r.sequence), size=2, replace=False).tolist()) for r in held}
    masked["h0"] = []  # a sequence with no evaluated position is left out, as summarise leaves it out
    table = trivial_baselines(TRAIN, held, _at(masked), n_bootstrap=200, seed=4)
    unigram, by_position = "A", ["A", "C", "A", "D"]
    hits = np.array([[sum(r.sequence[i] == unigram for i in masked[r.id]),
                      sum(r.sequence[i] == (by_position[i] if i < 4 else unigram) for i in masked[r.id])]
                     for r in held], float)
    sums = {"kl": np.zeros((9, 2)), "top1_agreement": np.zeros((9, 2)), "top1_accuracy": hits,
            "n_positions": np.array([len(masked[r.id]) for r in held], float)}
    expected = summarise(sums, n_bootstrap=200, seed=4)
    for column in ("top1_accuracy", "top1_accuracy_low", "top1_accuracy_high", "n_positions", "n_sequences"):
        np.testing.assert_allclose(table[column].to_numpy(float), expected[column].to_numpy(float))
    assert table["n_sequences"].iloc[0] == 8
    assert table["top1_accuracy_low"].iloc[0] < table["top1_accuracy_high"].iloc[0]


def test_positions_are_the_models_evaluated_positions():
    records = list(SEQUENCES)
    esm = tiny_esm()
    plan = make_plan(records, esm.objective, seed=0, mask_fraction=0.3)
    assert [model_positions(esm, plan)(r) for r in records] == [plan.for_id(r.id).masked for r in records]
    gpt = tiny_gpt2()  # framed by [HEAVY] [HUMAN]: the prefix predicts residue 0
    plan = make_plan(records, gpt.objective, seed=0)
    assert [model_positions(gpt, plan)(r) for r in records] == [list(range(len(r.sequence))) for r in records]
    bare = tiny_gpt2()  # no prefix: nothing predicts residue 0
    bare.alphabet = Alphabet(GPT_TOKENS, pad="[PAD]", mask="[MASK]", unk="[UNK]", prefix=(), suffix=("[SEP]",))
    assert [model_positions(bare, plan)(r) for r in records] == [list(range(1, len(r.sequence))) for r in records]
    with pytest.raises(ValueError, match="several residues"):
        model_positions(SimpleNamespace(alphabet=SimpleNamespace(one_residue_per_token=False)), plan)


@pytest.mark.parametrize("make", [tiny_esm, tiny_gpt2], ids=["esm", "gpt2"])
def test_tuned_lens_writes_baselines_on_its_held_out_positions(make, fasta_file, tmp_path):
    lm = make()
    folder = measure("tuned_lens", lm, fasta_file, out=tmp_path, mask_fraction=0.3, epochs=1, batch_size=2,
                     n_bootstrap=20, progress=False)
    tables = read_tables(folder, "tuned_lens")
    assert list(tables) == ["tuned_lens", "tuned_lens_split", "tuned_lens_training", "tuned_lens_baselines",
                           "tuned_lens_per_sequence"]
    baselines, lens, split = tables["tuned_lens_baselines"], tables["tuned_lens"], tables["tuned_lens_split"]
    assert baselines["predictor"].tolist() == ["unigram", "position"] and (baselines["model"] == lm.info.name).all()
    logit = lens[lens["lens"] == "logit"]
    assert (baselines["n_positions"] == logit["n_positions"].iloc[0]).all()
    assert (baselines["n_sequences"] == logit["n_sequences"].iloc[0]).all()
    # the unigram's accuracy, recomputed from the split and the plan the run wrote
    by_id = {r.id: r.sequence for r in SEQUENCES}
    train = [by_id[i] for i in split.loc[split["split"] == "train", "id"]]
    held = [by_id[i] for i in split.loc[split["split"] == "held_out", "id"]]
    plan = make_plan(SEQUENCES, lm.objective, seed=0, mask_fraction=0.3)
    letter = most_frequent(Counter("".join(train)))
    if lm.objective == "autoregressive":  # every residue (the prefix predicts residue 0)
        truths = "".join(held)
    else:
        truths = "".join(s[i] for s, i_d in zip(held, split.loc[split["split"] == "held_out", "id"])
                         for i in plan.for_id(i_d).masked)
    assert len(truths) == logit["n_positions"].iloc[0]
    assert baselines.set_index("predictor").loc["unigram", "top1_accuracy"] == pytest.approx(
        truths.count(letter) / len(truths))


def _lens_frame(blocks: dict) -> pd.DataFrame:
    """A tuned_lens table: per model and lens, top-1 accuracy rising linearly to 0.8 at the last layer."""
    return pd.DataFrame([{"model": m, "lens": lens, "layer": l, "relative_depth": l / n, "top1_accuracy": 0.8 * l / n}
                         for m, n in blocks.items() for lens in ("logit", "tuned") for l in range(n + 1)])


def test_baseline_rules_are_in_the_figures_units():
    from plmdepth.analysis.truncation import baseline_rules

    frame = _lens_frame({"A": 4, "B": 2})
    baselines = pd.DataFrame({"model": ["A", "A", "B", "B", "other"],
                              "predictor": ["unigram", "position", "unigram", "position", "unigram"],
                              "top1_accuracy": [0.2, 0.4, 0.1, 0.6, 0.5]})
    rules = baseline_rules(baselines, frame)
    assert rules["model"].tolist() == ["A", "A", "B", "B"]  # only the figure's models
    # full accuracy 0.8 for both: shares 0.2 / 0.8, 0.4 / 0.8, 0.1 / 0.8, 0.6 / 0.8
    np.testing.assert_allclose(rules["accuracy_kept"], [0.25, 0.5, 0.125, 0.75])
    np.testing.assert_allclose(rules["top1_accuracy"], [0.2, 0.4, 0.1, 0.6])


def test_each_panel_draws_its_own_models_baselines():
    import re

    from plmdepth.analysis.truncation import baseline_rules, with_accuracy_kept
    from plmdepth.publish.figures import lens_curves, to_svg

    frame = with_accuracy_kept(_lens_frame({"A": 4, "B": 2, "C": 3}))
    baselines = pd.DataFrame({"model": ["A", "A", "B", "B"], "predictor": ["unigram", "position"] * 2,
                              "top1_accuracy": [0.2, 0.4, 0.1, 0.6]})  # C: no baseline (e.g. an older run)
    svg = to_svg(lens_curves(frame, "accuracy_kept", baselines=baseline_rules(baselines, frame)))
    labels = re.findall(r'aria-label="([^"]*predictor: [^"]*)"[^>]*>(unigram|position)</text>', svg)
    # one label per model and predictor that has one (all four in every panel would be eight)
    assert sorted(labels) == sorted([("accuracy kept: 0.25; predictor: unigram", "unigram"),
                                     ("accuracy kept: 0.5; predictor: position", "position"),
                                     ("accuracy kept: 0.125; predictor: unigram", "unigram"),
                                     ("accuracy kept: 0.75; predictor: position", "position")])
    assert svg.count('aria-roledescription="rule mark"') == 4
    plain = to_svg(lens_curves(frame, "top1_accuracy"))
    assert ">unigram</text>" not in plain and 'aria-roledescription="rule mark"' not in plain
