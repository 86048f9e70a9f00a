"""The book's verdicts on the paper's claims are computed from the results CSVs, never typed."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from plmdepth.publish.verdicts import NOT_TESTABLE, VerdictParameters, claims, depth_efficiency, \
    key_results_markdown, summary, verdict_markdown


def write_run(root, name, family, blocks, skip, output, kl, spearman=None):
    """A results folder as the runner writes it: run.json and the measurement CSVs."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"model": {"name": name, "family": family, "n_layers": blocks,
                                                           "objective": "masked"}}))
    rows = [{"model": name, "skipped": s, "affected": j, "effect_max": 2 * skip[s], "effect_mean": skip[s],
             "mode": "future"} for s in range(blocks - 1) for j in range(s + 1, blocks)]
    pd.DataFrame(rows).to_csv(folder / "skip_effect.csv", index=False)
    pd.DataFrame({"model": name, "skipped": range(blocks), "prob_l2_max": 1.0, "prob_l2_mean": output + [0.0],
                  "kl_mean": 0.1, "mode": "future"}).to_csv(folder / "skip_output.csv", index=False)
    pd.DataFrame({"model": name, "layer": range(blocks + 1), "relative_depth": np.arange(blocks + 1) / blocks,
                  "kl": kl}).to_csv(folder / "logit_lens.csv", index=False)
    if spearman is not None:
        pd.DataFrame({"model": name, "assay": "mean", "layer": range(1, len(spearman) + 1),
                      "relative_depth": np.arange(1, len(spearman) + 1) / len(spearman),
                      "spearman": spearman}).to_csv(folder / "variant_effects.csv", index=False)
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
    path = copy / "deep" / "skip_effect.csv"
    table = pd.read_csv(path)
    table.loc[table["skipped"] >= 3, "effect_mean"] = 5.0  # late blocks now matter more than early ones
    table.to_csv(path, index=False)
    after_table = claims(sorted(copy.iterdir()))
    after = verdict_markdown(after_table, "a")
    assert after != before and "**mixed**" in after and "against: deep (5.26)" in after
    assert "| (a) Later blocks depend less on earlier computations | Fig. 1 | **mixed** | 1 of 2 |" in \
        key_results_markdown(after_table)


def test_thresholds_are_parameters(results):
    strict = claims(sorted(results.iterdir()), VerdictParameters(kl_share=0.01))
    assert (strict[strict["claim"] == "b"]["verdict"] == "disagrees").all()
    assert summary(strict).set_index(summary(strict)["claim"].str[1]).loc["b", "verdict"] == "disagrees"


def test_front_page_names_every_chapter_by_its_command_line_name():
    import re

    from plmdepth import paths
    from plmdepth.publish.book import CHAPTERS

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
