"""The AGLRLS small-target study's report (benchmarks/aglrls_small_targets.py) on hand-made runs:
gains are paired by seed, every draw's seeds are averaged before the verdict, and warnings are
judged by today's rules from the stored signals."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def study(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("aglrls_small_targets", ROOT / "benchmarks" / "aglrls_small_targets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(mod, "RESULTS", tmp_path / "results")
    return mod


def _run(mod, draw, variant, seed, correct, n=10, summary=None, decision=None, rules=None):
    out = mod.run_dir(4, str(draw), variant, seed)
    out.mkdir(parents=True)
    labels = [1] * n
    preds = [1] * correct + [2] * (n - correct)
    spec = mod.target_spec(str(draw))
    final = {"sets": {spec: {"accuracy": correct / n, "labels": labels, "predictions": preds},
                      "ferplus:test": {"accuracy": 0.75}},
             "method_summary": summary or {}}
    if decision:
        final["decision"] = final["sets"][spec]["decision"] = decision
        final["sets"][spec]["rules"] = rules
    (out / "final.json").write_text(json.dumps(final))
    (out / "metrics.jsonl").write_text("")


def _signals(flip):
    share = [0.5, 0.3, 0.2, 0, 0, 0, 0]
    before = {"pred_share": share, "head_agreement": 0.8, "entropy": 0.5, "drift_tv": 0.0, "flip_rate": 0.0}
    after = {"pred_share": share, "head_agreement": 0.8, "entropy": 0.5, "drift_tv": 0.0, "flip_rate": flip}
    return {"signals": {"before": before, "after": after, "source_val": [0.8, 0.78], "check": [None, None]},
            "warnings": ["a warning raised by the rules of the day of the run"]}


def test_gains_are_paired_by_seed_and_draws_averaged_over_seeds(study):
    # draw 3 (a report draw): seed 0 source-only 6/10, paper 4/10 (-20); seed 1 source-only 3/10, paper 5/10 (+20)
    _run(study, 3, "source_only", 0, 6)
    _run(study, 3, "paper", 0, 4, summary=_signals(flip=0.4))
    _run(study, 3, "source_only", 1, 3)
    _run(study, 3, "paper", 1, 5, summary=_signals(flip=0.1))
    # draw 4: one seed, paper +10
    _run(study, 4, "source_only", 0, 5)
    _run(study, 4, "paper", 0, 6, summary=_signals(flip=0.0))
    text = study.table(4)
    res = json.loads((study.RESULTS / "stage1_4ep" / "results.json").read_text())
    s = res["summary"]
    assert s["report/paper"]["runs"] == 3 and s["report/paper"]["hurt"] == 1
    assert s["draw3/paper/seeds"]["gains"] == pytest.approx([-20.0, 20.0])
    assert s["draw3/paper/seeds"]["mean_gain"] == pytest.approx(0.0)
    per_draw = s["report/paper/seed_means"]
    assert per_draw["draws"] == pytest.approx({"3": 0.0, "4": 0.1}) and per_draw["hurt"] == 0
    # today's rules: a 40% flip warns, a 10% one does not, whatever the run itself said
    runs = res["runs"]
    assert len(runs["draw3/paper/seed0"]["warnings"]) == 1 and "40% of its faces" in runs["draw3/paper/seed0"]["warnings"][0]
    assert runs["draw3/paper/seed1"]["warnings"] == []
    assert runs["draw3/paper/seed1"]["warnings_at_run"] == ["a warning raised by the rules of the day of the run"]
    assert "| 3 | report | 10 | paper | 0 | glpc | 40.0 | -20.0 |" in text
    # the results land beside the study's stage 1, one folder per run
    assert (study.RESULTS / "stage1_4ep" / "draw3" / "paper_seed1" / "final.json").is_file()


def test_a_run_is_compared_with_source_only_under_the_rule_it_ships(study):
    # fresh draw 2: source-only ships GLPC (7/10) but scores 5/10 by the heads' mean; `safe` ships
    # the heads' mean (6/10): +10 against source-only's heads' mean, not -10 against its GLPC
    _run(study, "fresh2", "source_only", 0, 7, decision="glpc", rules={"glpc": 0.7, "average_7": 0.5})
    _run(study, "fresh2", "safe", 0, 6, decision="mean_softmax", rules={"glpc": 0.4, "average_7": 0.6})
    _run(study, "fresh2", "paper", 0, 8, decision="glpc", rules={"glpc": 0.8, "average_7": 0.3})
    text = study.table(4)
    runs = json.loads((study.RESULTS / "stage1_4ep" / "results.json").read_text())["runs"]
    safe, paper = runs["fresh2/safe/seed0"], runs["fresh2/paper/seed0"]
    assert safe["rule"] == "average_7" and safe["gain_vs_source_only"] == pytest.approx(0.1)
    assert safe["mcnemar_vs_source_only"] is None  # per-face predictions exist for the shipped rules only
    assert paper["rule"] == "glpc" and paper["gain_vs_source_only"] == pytest.approx(0.1)
    assert paper["mcnemar_vs_source_only"] is not None
    assert "| fresh2 | fresh | 10 | safe | 0 | average_7 | 60.0 | +10.0 |  | 40.0 | 60.0 |" in text
    assert (study.RESULTS / "stage1_4ep" / "fresh2" / "safe_seed0" / "final.json").is_file()
    # what each would have scored shipping the other rule, against source-only under that rule
    s = json.loads((study.RESULTS / "stage1_4ep" / "results.json").read_text())["summary"]
    assert s["fresh/safe/by_rule/glpc"]["mean_gain"] == pytest.approx(-0.3) and s["fresh/safe/by_rule/glpc"]["hurt"] == 1
    assert s["fresh/paper/by_rule/average_7"]["mean_gain"] == pytest.approx(-0.2)
    assert "fresh draws, safe, both scored by average_7: 1 runs, mean +10.00" in text


def _stage1(root: Path, preds):
    root.mkdir(parents=True)
    final = {"sets": {"ferplus:test": {"predictions": preds}, "ckplus": {"predictions": preds}}}
    (root / "final.json").write_text(json.dumps(final))


def test_committed_runs_come_back_only_beside_the_same_stage1(study):
    # a committed run of an earlier session (runs/ did not survive it)
    committed = study.RESULTS / "stage1_4ep"
    _stage1(committed / "stage1", [1, 2, 3])
    (committed / "fresh1" / "source_only_seed0").mkdir(parents=True)
    (committed / "fresh1" / "source_only_seed0" / "final.json").write_text("{}")
    # a retrained stage 1 that predicts differently: nothing comes back, so it is trained again
    _stage1(study.RUNS / "stage1_4ep" / "stage1", [1, 2, 2])
    assert study.restore_committed(4) == 0
    assert not (study.run_dir(4, "fresh1", "source_only", 0) / "final.json").exists()
    # the same model (identical predictions): the run is put back where `train` and `table` look
    (study.RUNS / "stage1_4ep" / "stage1" / "final.json").unlink()
    (study.RUNS / "stage1_4ep" / "stage1").rmdir()
    _stage1(study.RUNS / "stage1_4ep" / "stage1", [1, 2, 3])
    assert study.restore_committed(4) == 1
    assert (study.run_dir(4, "fresh1", "source_only", 0) / "final.json").is_file()
    assert study.restore_committed(4) == 0  # once


def test_the_larger_cuts_are_their_own_groups_in_the_report(study):
    # wide0 (a ~200-face target): paper +10; half1 (over 300 faces): safe -10; fresh2: paper +0
    _run(study, "wide0", "source_only", 0, 5)
    _run(study, "wide0", "paper", 0, 6)
    _run(study, "half1", "source_only", 0, 7)
    _run(study, "half1", "safe", 0, 6)
    _run(study, "fresh2", "source_only", 0, 5)
    _run(study, "fresh2", "paper", 0, 5)
    assert study.target_spec("wide0") == "ckplus@wide0" and study.draw_dir("half1") == "half1"
    text = study.table(4)
    s = json.loads((study.RESULTS / "stage1_4ep" / "results.json").read_text())["summary"]
    assert s["wide/paper"]["mean_gain"] == pytest.approx(0.1) and s["wide/paper"]["runs"] == 1
    assert s["half/safe"]["mean_gain"] == pytest.approx(-0.1) and s["fresh/paper"]["mean_gain"] == pytest.approx(0.0)
    # rows in cut order: fresh, then wide, then half
    assert text.index("| fresh2 | fresh |") < text.index("| wide0 | wide |") < text.index("| half1 | half |")
