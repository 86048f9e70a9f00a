"""The book's verdicts on the paper's claims are computed from the results CSVs, never typed."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from plmdepth.analysis.claims import NOT_TESTABLE, ClaimParameters, claims
from plmdepth.analysis.depth_efficiency import depth_efficiency
from plmdepth.analysis.truncation import TruncationParameters
from plmdepth.publish.verdicts import key_results_markdown, summary, verdict_markdown


def _per_sequence(keys: pd.DataFrame, means, n_sequences: int, spread: float, seed: int, column: str,
                  count: str) -> pd.DataFrame:
    """Per-sequence sums whose pooled means are exactly `means` (one unit or position per sequence):
    sequences come in pairs whose values are means x (1 + z) and means x (1 - z), z ~ spread x N(0, 1),
    drawn independently for every key."""
    rng = np.random.default_rng(seed)
    means = np.asarray(means, float)
    z = spread * rng.standard_normal((n_sequences // 2, len(means)))
    values = np.concatenate([means * (1 + z), means * (1 - z)])
    frames = [keys.assign(sequence=f"s{i:03d}", **{column: values[i], count: 1}) for i in range(len(values))]
    return pd.concat(frames, ignore_index=True)


def write_run(root, name, family, blocks, skip, output, kl, spearman=None, spread=0.02, n_sequences=40,
              twin_of=None, init_seed=None, seed=0):
    """A results folder as the runner writes it: run.json, the measurement CSVs and their per-sequence
    sums (`spread`: how much the sequences differ, so how wide the intervals are)."""
    folder = root / name
    folder.mkdir(parents=True)
    recorded = {"layer_skipping": {"outputs": ["skip_effect.csv", "skip_output.csv", "skip_effect_per_sequence.csv",
                                               "skip_output_per_sequence.csv"]},
                "logit_lens": {"outputs": ["logit_lens.csv", "logit_lens_per_sequence.csv"]},
                **({"variant_effects": {"outputs": ["variant_effects.csv", "variant_effects_replicates.csv"]}}
                   if spearman is not None else {})}
    model = {"name": name, "family": family, "n_layers": blocks, "objective": "masked",
             **({"twin_of": twin_of, "init_seed": init_seed} if twin_of else {})}
    (folder / "run.json").write_text(json.dumps({"model": model, "measurements": recorded}))
    pairs = pd.DataFrame([(s, j) for s in range(blocks - 1) for j in range(s + 1, blocks)], columns=["skipped", "affected"])
    effect = pairs.assign(model=name, effect_max=[2 * skip[s] for s in pairs["skipped"]],
                          effect_mean=[skip[s] for s in pairs["skipped"]], mode="future")
    effect.to_csv(folder / "skip_effect.csv", index=False)
    _per_sequence(pairs, effect["effect_mean"], n_sequences, spread, seed, "effect_sum", "n_units").to_csv(
        folder / "skip_effect_per_sequence.csv", index=False)
    out = pd.DataFrame({"model": name, "skipped": range(blocks), "prob_l2_max": 1.0, "prob_l2_mean": output + [0.0],
                        "kl_mean": 0.1, "mode": "future"})
    out.to_csv(folder / "skip_output.csv", index=False)
    _per_sequence(out[["skipped"]], out["prob_l2_mean"], n_sequences, spread, seed + 1, "prob_l2_sum",
                  "n_units").assign(kl_sum=0.1).to_csv(folder / "skip_output_per_sequence.csv", index=False)
    lens = pd.DataFrame({"model": name, "layer": range(blocks + 1), "relative_depth": np.arange(blocks + 1) / blocks,
                         "kl": kl})
    lens.to_csv(folder / "logit_lens.csv", index=False)
    _per_sequence(lens[["layer"]], lens["kl"], n_sequences, spread, seed + 2, "kl_sum", "n_positions").to_csv(
        folder / "logit_lens_per_sequence.csv", index=False)
    if spearman is not None:
        layers = np.arange(1, len(spearman) + 1)
        pd.DataFrame({"model": name, "assay": "mean", "layer": layers, "relative_depth": layers / len(spearman),
                      "spearman": spearman}).to_csv(folder / "variant_effects.csv", index=False)
        rng = np.random.default_rng(seed + 3)
        boot = np.asarray(spearman) + spread * rng.standard_normal((200, len(spearman)))
        pd.DataFrame({"model": name, "assay": "mean", "layer": np.tile(layers, 200),
                      "relative_depth": np.tile(layers / len(spearman), 200), "kind": "bootstrap",
                      "replicate": np.repeat(np.arange(200), len(spearman)), "spearman": boot.reshape(-1)}).to_csv(
            folder / "variant_effects_replicates.csv", index=False)
    return folder


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    write_run(root, "deep", "Fam", 6, skip=[1.0, 0.9, 0.3, 0.8, 0.2, 0.1], output=[0.5, 0.4, 0.3, 0.05, 0.04],
              kl=[4.0, 3.0, 2.0, 0.8, 0.3, 0.1, 0.0], spearman=[0.1, 0.3, 0.4, 0.42])
    write_run(root, "shallow", "Fam", 3, skip=[1.0, 0.8, 0.0], output=[0.5, 0.3], kl=[3.0, 2.0, 1.0, 0.0])
    return root


def test_claims_are_computed_from_the_csvs(results):
    table = claims(sorted(results.iterdir()))
    a = table[table["claim"] == "a"].set_index("model")
    # deep: skippable blocks 0..4 with e = 1.0, 0.9, 0.3, 0.8, 0.2 -> late (0.8, 0.2) / early (1.0, 0.9)
    assert a.loc["deep", "value"] == pytest.approx(0.5 / 0.95) and a.loc["deep", "verdict"] == "agrees"
    assert a.loc["shallow", "value"] == pytest.approx(0.8) and a.loc["shallow", "verdict"] == "agrees"
    b = table[table["claim"] == "b"].set_index("model")
    assert b.loc["deep", "value"] == pytest.approx(np.interp(0.75, np.arange(7) / 6, [4, 3, 2, .8, .3, .1, 0]) / 4)
    c = table[table["claim"] == "c"]
    assert list(c["model"]) == ["deep (6) vs shallow (3)"]
    assert c["value"].iloc[0] == pytest.approx(0.5 / 0.95 - 0.8) and c["verdict"].iloc[0] == "agrees"
    d = table[table["claim"] == "d"].set_index("model")
    assert d.loc["deep", "value"] == 1 and d.loc["deep", "verdict"] == "agrees"  # block 2: 0.3 < 0.5 x (0.9, 0.8)
    assert d.loc["deep", "why"].endswith("(block 2)")
    assert d.loc["shallow", "verdict"] == NOT_TESTABLE
    e = table[table["claim"] == "e"].set_index("model")
    assert e.loc["deep", "value"] == pytest.approx((0.42 - 0.4) / 0.32) and e.loc["deep", "verdict"] == "agrees"
    efficiency = depth_efficiency(sorted(results.iterdir())).set_index("model")
    assert efficiency.loc["deep", "refining from l / L"] == pytest.approx(4 / 6)  # KL 0.3 < 0.5, outputs after 0.05
    assert efficiency.loc["shallow", "refining from l / L"] == 1.0


def test_changing_a_results_csv_changes_the_verdict_sentence(results, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(results, copy)
    before = verdict_markdown(claims(sorted(copy.iterdir())), "a")
    assert "**agrees**" in before and "2 of 2 testable agree" in before
    path = copy / "deep" / "skip_effect_per_sequence.csv"  # what the verdicts resample
    table = pd.read_csv(path)
    table.loc[table["skipped"] >= 3, "effect_sum"] = 5.0  # late blocks now matter more than early ones
    table.to_csv(path, index=False)
    after_table = claims(sorted(copy.iterdir()))
    after = verdict_markdown(after_table, "a")
    assert after != before and "**mixed**" in after and "1 of 2 testable disagree: deep (5.26 [" in after
    key = key_results_markdown(after_table)
    assert "**(a) Later blocks depend less on earlier computations** (Fig. 1): **mixed**" in key
    assert "| deep | 5.26 [" in key and "| shallow | 0.80 [" in key


def test_thresholds_are_parameters(results):
    strict = claims(sorted(results.iterdir()), ClaimParameters(kl_share=0.01))
    assert (strict[strict["claim"] == "b"]["verdict"] == "disagrees").all()
    assert summary(strict).set_index(summary(strict)["claim"].str[1]).loc["b", "verdict"] == "disagrees"


def test_front_page_names_every_chapter_by_its_command_line_name():
    import re

    from plmdepth import paths
    from plmdepth.publish.chapters import CHAPTERS

    text = (paths.book_dir() / "index.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("one of `"))
    assert re.findall(r"`([\w-]+)`", line) == list(CHAPTERS)
    assert "```{include} key_results.md" in text.split("## The question")[0]  # above the fold


def test_write_pages_writes_the_front_page_table_and_the_per_model_table(results, tmp_path):
    from plmdepth.publish.verdicts import write_pages

    book = tmp_path / "book"
    book.mkdir()
    table = write_pages(sorted(results.iterdir()), book)
    key = (book / "key_results.md").read_text()
    assert key_results_markdown(table) in key and "{ref}`methods-claims`" in key
    per_model = (book / "claims.md").read_text().splitlines()
    assert len(per_model) == 2 + len(table) and per_model[2].startswith("| (a) | Fig. 1 | deep |")
    assert "0.53 [" in per_model[2]  # the number with its interval


# ------------------------------------------------------------------ is it the lens or the layers?

def write_tuned(root, name, blocks, logit_accuracy, tuned_accuracy, logit_kl, tuned_kl, seconds=12.0, spread=0.01):
    """A results folder with a `tuned_lens` measurement: per layer 0..L, both lenses' top-1 accuracy and KL,
    and the per-sequence sums of the accuracy (`spread`: how much the sequences differ)."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({
        "model": {"name": name, "family": "Fam", "n_layers": blocks, "objective": "masked"},
        "measurements": {"tuned_lens": {"wall_time_s": seconds,
                                        "outputs": ["tuned_lens.csv", "tuned_lens_per_sequence.csv"]}}}))
    rows = [{"model": name, "lens": lens, "layer": layer, "relative_depth": layer / blocks, "kl": kl[layer],
             "top1_accuracy": accuracy[layer]}
            for lens, accuracy, kl in (("logit", logit_accuracy, logit_kl), ("tuned", tuned_accuracy, tuned_kl))
            for layer in range(blocks + 1)]
    table = pd.DataFrame(rows)
    table.to_csv(folder / "tuned_lens.csv", index=False)
    _per_sequence(table[["lens", "layer"]], table["top1_accuracy"], 40, spread, 0, "top1_accuracy_sum",
                  "n_positions").to_csv(folder / "tuned_lens_per_sequence.csv", index=False)
    return folder


def write_variant_effects(root, name, spearman):
    """A results folder with a `variant_effects` measurement: {assay: [(rho, low, high) for layers 1..L]}."""
    folder = root / name
    folder.mkdir(parents=True)
    blocks = len(next(iter(spearman.values())))
    (folder / "run.json").write_text(json.dumps({
        "model": {"name": name, "family": "UniRep", "n_layers": blocks, "objective": "autoregressive"},
        "measurements": {"variant_effects": {"wall_time_s": 1.0, "outputs": ["variant_effects.csv",
                                                                          "variant_effects_replicates.csv"]}}}))
    rows = [{"model": name, "assay": assay, "layer": k, "relative_depth": k / blocks, "spearman": rho,
             "spearman_low": low, "spearman_high": high}
            for assay, values in spearman.items() for k, (rho, low, high) in enumerate(values, start=1)]
    pd.DataFrame(rows).to_csv(folder / "variant_effects.csv", index=False)
    rng = np.random.default_rng(0)  # replicates: rho + a little noise, the same for every layer of one resample
    noise = 0.002 * rng.standard_normal(200)
    boot = [{"model": name, "assay": assay, "layer": k, "relative_depth": k / blocks, "kind": "bootstrap",
             "replicate": i, "spearman": rho + noise[i]}
            for assay, values in spearman.items() for k, (rho, _, _) in enumerate(values, start=1) for i in range(200)]
    pd.DataFrame(boot).to_csv(folder / "variant_effects_replicates.csv", index=False)
    return folder


@pytest.fixture
def refining(tmp_path):
    """Two models whose cut at 3/4 keeps >= 90% of the accuracy through the tuned lens, and a variant-effect
    model whose cut at 3/4 keeps rho on one assay, loses it on another, and has nothing to keep on a third."""
    root = tmp_path / "results"
    # a: 4 blocks, cut after 3; full accuracy 0.8; tuned 0.76 (95%), logit 0.6 (75%); KL 2.0 -> 0.5 (75% removed)
    write_tuned(root, "a", 4, [0.1, 0.2, 0.4, 0.6, 0.8], [0.3, 0.5, 0.7, 0.76, 0.8],
                [5.0, 4.0, 3.0, 2.0, 0.0], [2.0, 1.5, 1.0, 0.5, 0.0])
    # b: 8 blocks, cut after 6; full 0.5; tuned 0.46 (92%), logit 0.47 (94%); KL 0.4 -> 0.1 (75% removed)
    write_tuned(root, "b", 8, [0.1] * 6 + [0.47, 0.48, 0.5], [0.2] * 6 + [0.46, 0.49, 0.5],
                [3.0] * 6 + [0.4, 0.2, 0.0], [1.0] * 6 + [0.1, 0.05, 0.0])
    write_variant_effects(root, "ve", {
        "KEEP": [(0.1, 0.0, 0.2), (0.2, 0.1, 0.3), (0.38, 0.3, 0.45), (0.4, 0.32, 0.48)],
        "LOSE": [(0.1, 0.0, 0.2), (0.3, 0.2, 0.4), (-0.1, -0.2, 0.0), (0.2, 0.1, 0.3)],
        "NOISE": [(0.1, 0.0, 0.2), (0.2, 0.1, 0.3), (0.1, 0.0, 0.2), (0.02, -0.05, 0.09)],
        "mean": [(0.1, 0.0, 0.2), (0.2, 0.1, 0.3), (0.1, 0.0, 0.2), (0.2, 0.1, 0.3)]})
    write_variant_effects(root, "one-layer", {"KEEP": [(0.3, 0.2, 0.4)]})
    return root


def test_lens_or_layers_survives_with_the_numbers_in_the_text(refining):
    from plmdepth.analysis.truncation import lens_or_layers
    from plmdepth.publish.verdicts import lens_or_layers_key_line, lens_or_layers_markdown

    result = lens_or_layers(sorted(refining.iterdir()))
    accuracy = result.accuracy.set_index("model")
    assert accuracy.loc["a", "three_quarters"] == 3 and accuracy.loc["b", "three_quarters"] == 6
    assert accuracy.loc["a", "kept_tuned_3q"] == pytest.approx(0.95)
    assert accuracy.loc["a", "kept_logit_3q"] == pytest.approx(0.75)
    assert accuracy.loc["a", "kl_removed_3q"] == pytest.approx(0.75)
    assert accuracy.loc["b", "kept_tuned_3q"] == pytest.approx(0.92)
    assert accuracy.loc["a", "seconds"] == 12.0
    assert result.verdict == "survives"
    text = lens_or_layers_markdown(result)
    assert text.startswith("**The reading survives.**")
    assert "keeps at least 90% of the full model's top-1 accuracy (the whole 95% interval) for a (95.0% [" in text
    assert "the same cut keeps a (75.0%), b (94.0%); the learned readout is what lifts a to the threshold; " \
           "b already keeps 90% through the final head" in text
    assert "removes 75% of the logit lens's KL" in text and "a change of basis, not missing information" in text
    assert "refines a prediction the first three quarters have already made" in text
    # variant effects: KEEP 0.38 / 0.4 = 95%; LOSE -0.1 / 0.2 = -50%; NOISE: full model's interval reaches 0
    spearman = result.spearman.set_index(["model", "assay"])
    assert "mean" not in spearman.index.get_level_values("assay")
    assert spearman.loc[("ve", "KEEP"), "kept_3q"] == pytest.approx(0.95)
    assert spearman.loc[("ve", "KEEP"), "rho_half"] == pytest.approx(0.2)
    assert spearman.loc[("ve", "KEEP"), "verdict"] == "keeps"
    assert spearman.loc[("ve", "LOSE"), "kept_3q"] == pytest.approx(-0.5)
    assert spearman.loc[("ve", "LOSE"), "verdict"] == "loses"
    assert spearman.loc[("ve", "NOISE"), "verdict"] == NOT_TESTABLE
    assert spearman.loc[("one-layer", "KEEP"), "verdict"] == NOT_TESTABLE
    assert np.isnan(spearman.loc[("one-layer", "KEEP"), "rho_3q"])
    assert result.spearman_verdict == "keeps for some"
    assert "**Variant effects: the cut keeps its Spearman ρ for some models and assays.**" in text
    assert "for 1 of 2 testable (model, assay) pairs" in text
    assert "ve on `KEEP`: ρ 0.400 full, 0.380 at ¾ (95.0% [" in text
    assert "ve on `LOSE`: ρ 0.200 full, -0.100 at ¾ (-50.0% [" in text
    assert "ve on `NOISE` (the full model's rho 0.020 (95% interval -0.050 to 0.090) is not above 0" in text
    assert "one-layer on `KEEP` (1 layer: the cut at 3/4 keeps every layer)" in text
    line = lens_or_layers_key_line(result)
    assert "{ref}`chapter-lens-or-layers`" in line and "For the top-1 residue, **survives**" in line
    assert "for 2 of 2 models" in line
    assert "the same cut **keeps its Spearman ρ for some**: at least 90% of it for 1 of 2 testable" in line


def test_lens_or_layers_does_not_survive_and_says_why(tmp_path):
    from plmdepth.analysis.truncation import lens_or_layers
    from plmdepth.publish.verdicts import lens_or_layers_key_line, lens_or_layers_markdown

    root = tmp_path / "results"
    # 4 blocks: full 0.8, tuned cut 0.56 (70%), logit cut 0.4 (50%); KL 2.0 -> 1.6 (20% removed)
    write_tuned(root, "c", 4, [0.1, 0.2, 0.3, 0.4, 0.8], [0.1, 0.2, 0.3, 0.56, 0.8],
                [5.0, 4.0, 3.0, 2.0, 0.0], [4.0, 3.5, 3.0, 1.6, 0.0])
    # 2 blocks: the cut at 3/4 keeps both, so it cannot test the reading
    write_tuned(root, "d", 2, [0.1, 0.5, 0.8], [0.1, 0.7, 0.8], [4.0, 1.0, 0.0], [2.0, 0.5, 0.0])
    result = lens_or_layers(sorted(root.iterdir()))
    assert result.verdict == "does not survive"
    assert result.accuracy.set_index("model").loc["d", "verdict"] == NOT_TESTABLE
    text = lens_or_layers_markdown(result)
    assert text.startswith("**The reading does not survive.**")
    assert "keeps less than 90% of the full model's top-1 accuracy (the whole 95% interval) for every model: c (70.0% [" in text
    assert "removes only 20% of the logit lens's KL" in text and "not missing information" not in text
    assert "still brings more than 10% of the full model's top-1 accuracy: it does more than refine" in text
    assert "refines a prediction" not in text
    assert "Not testable: d (2 blocks: the cut at 3/4 keeps every block)." in text
    assert "**Variant effects: not run.**" in text
    line = lens_or_layers_key_line(result)
    assert "**does not survive**" in line and "for 0 of 1 models" in line and "variant effects" not in line


def test_lens_or_layers_mixed_and_thresholds_are_parameters(refining):
    from plmdepth.analysis.truncation import lens_or_layers
    from plmdepth.publish.verdicts import lens_or_layers_markdown

    strict = lens_or_layers(sorted(refining.iterdir()), TruncationParameters(kept_threshold=0.93, basis_share=0.8))
    assert strict.verdict == "survives for some models"
    text = lens_or_layers_markdown(strict)
    assert "keeps at least 93% of the full model's top-1 accuracy (the whole 95% interval) for a (95.0% [" in text
    assert "removes only 75% of the logit lens's KL" in text  # below basis_share 0.8 for both
    assert "refines a prediction already made for a, and still brings more than 7% of the top-1 accuracy for b" \
        in text
    assert "`kept_threshold` = 0.93" in text and "`basis_share` = 0.8" in text
    assert strict.spearman.set_index("assay").loc["KEEP"].query("model == 've'")["verdict"].item() == "keeps"


def test_gain_over_the_best_trivial_baseline_kept_at_three_quarters(refining):
    from plmdepth.analysis.truncation import truncation_accuracy
    from plmdepth.publish.chapter_text import truncation_accuracy_markdown

    def add_baselines(name, unigram, position):
        folder = refining / name
        run = json.loads((folder / "run.json").read_text())
        run["measurements"]["tuned_lens"]["outputs"].append("tuned_lens_baselines.csv")
        (folder / "run.json").write_text(json.dumps(run))
        pd.DataFrame({"model": name, "predictor": ["unigram", "position"], "top1_accuracy": [unigram, position],
                      "n_positions": 10, "n_sequences": 2}).to_csv(folder / "tuned_lens_baselines.csv", index=False)

    old = truncation_accuracy([refining / "a"]).iloc[0]  # made before the baselines were written
    assert old["baseline"] is None and old[["baseline_accuracy", "gap_kept_logit_3q", "gap_kept_tuned_3q"]].isna().all()
    assert "| 75.0% / 95.0% | — | — / — |" in truncation_accuracy_markdown(pd.DataFrame([old]), {})
    # a: full 0.8, tuned cut 0.76, logit cut 0.6; best baseline "position" 0.4:
    #    tuned (0.76 - 0.4) / (0.8 - 0.4) = 0.9, logit (0.6 - 0.4) / 0.4 = 0.5
    add_baselines("a", 0.3, 0.4)
    # b: full 0.5 is no better than its baseline 0.5 (a tie goes to the first listed, "unigram"): no gain to keep
    add_baselines("b", 0.5, 0.5)
    folders = sorted(p for p in refining.iterdir() if p.name in ("a", "b"))
    numbers = truncation_accuracy(folders).set_index("model")
    assert numbers.loc["a", "baseline"] == "position" and numbers.loc["a", "baseline_accuracy"] == 0.4
    assert numbers.loc["a", "gap_kept_tuned_3q"] == pytest.approx(0.9)
    assert numbers.loc["a", "gap_kept_logit_3q"] == pytest.approx(0.5)
    assert numbers.loc["b", "baseline"] == "unigram" and np.isnan(numbers.loc["b", "gap_kept_tuned_3q"])
    text = truncation_accuracy_markdown(numbers.reset_index(), {})
    assert "| 75.0% / 95.0% | position 40.0% | 50.0% / 90.0% |" in text
    assert "| unigram 50.0% | — / — |" in text


def test_lens_or_layers_without_a_tuned_lens_says_not_run(results, tmp_path):
    from plmdepth.analysis.truncation import lens_or_layers
    from plmdepth.publish.verdicts import lens_or_layers_key_line, lens_or_layers_markdown, \
        write_pages

    result = lens_or_layers(sorted(results.iterdir()))  # skip, lens and variant-effect CSVs, no tuned lens
    assert result.accuracy.empty and result.verdict == "not run"
    assert lens_or_layers_markdown(result).startswith("**Not run.** No results folder of this build holds a "
                                                      "`tuned_lens` measurement")
    line = lens_or_layers_key_line(result)
    assert "Not run in this build: no results folder holds a `tuned_lens` measurement." in line
    book = tmp_path / "book"
    book.mkdir()
    write_pages(sorted(results.iterdir()), book)
    assert line in (book / "key_results.md").read_text()


def test_front_page_shows_the_chapter_verdict(refining, tmp_path):
    from plmdepth.analysis.truncation import lens_or_layers
    from plmdepth.publish.verdicts import lens_or_layers_key_line, write_pages

    book = tmp_path / "book"
    book.mkdir()
    write_pages(sorted(refining.iterdir()), book)
    key = (book / "key_results.md").read_text()
    assert lens_or_layers_key_line(lens_or_layers(sorted(refining.iterdir()))) in key and "**survives**" in key


def test_chapter_threshold_defaults_are_the_front_pages():
    from plmdepth.publish.chapters import chapter

    defaults, params = chapter("lens-or-layers").defaults(), TruncationParameters()
    assert defaults["kept_threshold"] == params.kept_threshold and defaults["basis_share"] == params.basis_share


def test_claims_read_only_the_tables_a_folder_records(results):
    """A CSV that run.json does not record (a run not finished, or not this folder's) is not read."""
    folder = results / "deep"
    run = json.loads((folder / "run.json").read_text())
    del run["measurements"]["logit_lens"]
    (folder / "run.json").write_text(json.dumps(run))
    rows = claims([folder])
    assert set(rows["claim"]) == {"a", "d", "e"}  # (b) needs the logit lens, which is no longer recorded
