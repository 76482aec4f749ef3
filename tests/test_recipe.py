"""Recipes (fer_edge/recipe.py): loading and validation, the ship rules, the table with paired
gains, and the whole mechanism on a real smoke run of the baseline (train -> table -> ship into
a temporary assets folder -> the Recognizer check -> model card)."""
import dataclasses
import json
import os

import pytest

from fer_edge import recipe as rc

os.environ.setdefault("FER_EDGE_PROGRESS", "0")


def test_the_shipped_recipes_load_and_name_their_methods():
    for method in ("baseline", "aglrls"):
        r = rc.recipe_for_method(method)
        assert r.method == method and r.path("config").is_file() and r.ship is not None
    aglrls = rc.recipe_for_method("aglrls")
    assert aglrls.control == "source_only" and aglrls.shared["name"] == "stage1"
    assert aglrls.ship.files[0].candidates == ["openvino:fp16", "openvino:fp32"]


def test_bad_recipes_are_clear_errors(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nmethod: baseline\nconfig: c\nruns: r\nresults: o\nvarients: {}\n")
    with pytest.raises(ValueError, match="unknown recipe keys"):
        rc.load_recipe(bad)
    bad.write_text("name: x\nmethod: baseline\nconfig: c\nruns: r\nresults: o\nvariants: {a: []}\ncontrol: b\n")
    with pytest.raises(ValueError, match="control 'b'"):
        rc.load_recipe(bad)


def test_ship_rules_pick_the_first_passing_candidate():
    rows = [{"format": "openvino", "precision": "fp16", "agreement_with_torch": 0.9997, "accuracy": 0.80},
            {"format": "openvino", "precision": "fp32", "agreement_with_torch": 1.0, "accuracy": 0.80},
            {"format": "openvino", "precision": "int8", "agreement_with_torch": 0.97, "accuracy": 0.785},
            {"format": "tensorrt", "precision": "fp16", "skipped": "no TensorRT"}]
    exact = rc.ShipFile("m.xml", ["openvino:fp16", "openvino:fp32"], min_agreement=1.0)
    assert rc.pick(rows, 0.80, exact)["precision"] == "fp32"
    within = rc.ShipFile("m.int8.xml", ["openvino:int8"], max_accuracy_drop=0.01)
    with pytest.raises(RuntimeError, match="no export"):
        rc.pick(rows, 0.80, within)
    assert rc.pick(rows, 0.80, dataclasses.replace(within, optional=True)) is None
    assert rc.pick(rows, 0.79, within)["precision"] == "int8"
    assert rc.pick(rows, 0.80, rc.ShipFile("e", ["tensorrt:fp16"], optional=True)) is None


def _final(acc_ck, acc_fp):
    def res(a):
        return {"accuracy": a, "mean_class_accuracy": a, "accuracy_shared_classes": a, "count": 10,
                "per_class_accuracy": {"neutral": a}, "rules": {"glpc": a, "average_7": a - 0.01}}
    return {"checkpoint": "x/last.pt", "selected_on": "last epoch (no selection)", "best_epoch": 1, "val_acc": 0.5,
            "seed": 0, "decision": "glpc", "sets": {"ckplus": res(acc_ck), "ferplus:test": res(acc_fp)}}


def test_table_reports_every_run_and_paired_gains_over_the_control(tmp_path):
    r = rc.Recipe(name="t", method="aglrls", config="c", runs=str(tmp_path / "runs"), results=str(tmp_path / "out"),
                  variants={"source_only": [], "full": []}, seeds=[0, 1, 2], control="source_only")
    accs = {("source_only", 0): 0.50, ("source_only", 1): 0.52, ("source_only", 2): 0.51,
            ("full", 0): 0.60, ("full", 1): 0.61, ("full", 2): 0.63}
    for (v, s), a in accs.items():
        d = r.run_dir(v, s)
        d.mkdir(parents=True)
        (d / "final.json").write_text(json.dumps(_final(a, 0.8)))
    text = rc.table(r)
    assert text.count("| full |") == 3 and "glpc" in text and "average_7" in text
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    g = results["gains"]["full vs source_only on ckplus"]
    assert g["per_seed"] == pytest.approx([0.10, 0.09, 0.12]) and g["mean"] == pytest.approx(0.10333, abs=1e-4)
    assert 0 < g["p_value"] < 0.01  # three consistent +9..12 point gains
    assert results["gains"]["full vs source_only on ferplus:test"]["mean"] == pytest.approx(0.0)
    assert (tmp_path / "out" / "full_seed2" / "final.json").is_file()


def test_table_keeps_runs_of_earlier_sessions_from_the_committed_results(tmp_path):
    import shutil

    r = rc.Recipe(name="t", method="aglrls", config="c", runs=str(tmp_path / "runs"), results=str(tmp_path / "out"),
                  variants={"source_only": [], "full": []}, seeds=[0, 1], control="source_only")
    for (v, s), a in {("source_only", 0): 0.50, ("full", 0): 0.60}.items():
        r.run_dir(v, s).mkdir(parents=True)
        (r.run_dir(v, s) / "final.json").write_text(json.dumps(_final(a, 0.8)))
    rc.table(r)
    shutil.rmtree(tmp_path / "runs")  # a new session: scratch runs are gone, the results folder is committed
    for (v, s), a in {("source_only", 1): 0.52, ("full", 1): 0.55}.items():
        r.run_dir(v, s).mkdir(parents=True)
        (r.run_dir(v, s) / "final.json").write_text(json.dumps(_final(a, 0.8)))
    text = rc.table(r)
    assert text.count("| full |") == 2 and text.count("| source_only |") == 2
    g = json.loads((tmp_path / "out" / "results.json").read_text())["gains"]["full vs source_only on ckplus"]
    assert g["per_seed"] == pytest.approx([0.10, 0.03])


def test_the_baseline_recipe_trains_tables_and_ships_end_to_end(data_root, tmp_path):
    r = dataclasses.replace(rc.recipe_for_method("baseline"), runs=str(tmp_path / "runs"), results=str(tmp_path / "results"))
    r.ship = dataclasses.replace(r.ship, formats=["onnx:fp32", "openvino:int8"])
    rc.train(r, extra=[*r.smoke, "eval_sets=ckplus,ferplus:test"])
    final = json.loads((r.run_dir("main", 0) / "final.json").read_text())
    assert final["selected_on"] == "valid" and final["sets"]["ckplus"]["count"] == 981
    ck = final["sets"]["ckplus"]
    assert ck["basic_six"]["count"] == 927 and ck["sequence_vote"]["sequences"] == 327
    assert "ambiguous_faces" not in ck  # CK+ has no votes
    fp = final["sets"]["ferplus:test"]
    amb = fp["ambiguous_faces"]
    assert fp["count"] == 3137 and 0 < amb["count"] < 3137 and "sequence_vote" not in fp
    n = amb["count"]  # the two accuracies recompose the whole
    assert amb["accuracy"] * n + amb["accuracy_unambiguous"] * (3137 - n) == pytest.approx(fp["accuracy"] * 3137)
    lo, hi = ck["sequence_vote"]["face_ci95_by_sequence"]
    assert lo <= ck["accuracy"] <= hi
    text = rc.table(r)
    assert "| main | 0 |" in text and "one vote per sequence" in text and "two or more candidate classes" in text
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "default.int8.xml").write_text("stale")  # a file that no longer passes its rule must go
    out = rc.ship(r, assets=assets, exports=tmp_path / "exports")
    assert (assets / "default.onnx").is_file()
    assert ("default.int8.xml" in out["shipped"]) == (assets / "default.int8.xml").is_file()
    if (assets / "default.int8.xml").is_file():
        assert (assets / "default.int8.xml").read_text() != "stale" and (assets / "default.int8.bin").is_file()
    check = out["deploy_check"]
    assert check["models"]["default.onnx"]["agreement_with_checkpoint"] == 1.0
    card = (assets / "MODEL_CARD.md").read_text()
    assert "ckplus" in card and "onnx" in card and "recipe.py" in card


def test_mcnemar_on_a_hand_computed_case():
    labels = [0] * 12
    a = [0] * 10 + [1, 1]            # A wrong on faces 10, 11
    b = [1] * 3 + [0] * 9            # B wrong on faces 0, 1, 2
    r = rc.mcnemar(a, b, labels)     # only A right: 3 faces, only B right: 2 faces
    assert (r["only_first_right"], r["only_second_right"]) == (3, 2)
    assert r["p_value"] == pytest.approx(1.0)  # 2 * P(X <= 2 | n=5) = 2 * 16/32, capped at 1
    r = rc.mcnemar([0] * 10, [1] * 10, [0] * 10)
    assert r["p_value"] == pytest.approx(2 / 2 ** 10)
    assert rc.mcnemar([0, 1], [0, 1], [0, 0])["p_value"] == 1.0
    # from counts: 5 vs 0 discordant faces, p = 2 * (1/2)^5; the per-face form agrees
    assert rc.mcnemar_counts(5, 0)["p_value"] == pytest.approx(0.0625)
    assert rc.mcnemar_counts(3, 2) == rc.mcnemar(a, b, labels)


def test_table_runs_mcnemar_per_seed_on_stored_predictions(tmp_path):
    r = rc.Recipe(name="t", method="baseline", config="c", runs=str(tmp_path / "runs"), results=str(tmp_path / "out"),
                  variants={"base": [], "full": []}, seeds=[0], control="base")
    labels = [0] * 20
    for v, pred in (("base", [0] * 10 + [1] * 10), ("full", [0] * 20)):
        d = r.run_dir(v, 0)
        d.mkdir(parents=True)
        f = _final(0.5, 0.8)
        f["sets"]["ckplus"].update(predictions=pred, labels=labels)
        (d / "final.json").write_text(json.dumps(f))
    text = rc.table(r)
    mc = json.loads((tmp_path / "out" / "results.json").read_text())["gains"]["full vs base on ckplus"]["mcnemar_per_seed"]
    assert mc["0"]["only_first_right"] == 10 and mc["0"]["p_value"] == pytest.approx(2 / 2 ** 10)
    assert "McNemar" in text
    gains = json.loads((tmp_path / "out" / "results.json").read_text())["gains"]
    assert gains["full vs base on ferplus:test"]["mcnemar_per_seed"] == {}  # no stored predictions: no test
    assert "by_sequence" not in mc["0"]  # no groups stored and none to be found for 20 made-up faces


def test_table_tests_frames_of_sequences_by_sequence(tmp_path):
    r = rc.Recipe(name="t", method="baseline", config="c", runs=str(tmp_path / "runs"), results=str(tmp_path / "out"),
                  variants={"base": [], "full": []}, seeds=[0], control="base")
    labels, groups = [0] * 12, [g for g in "abcd" for _ in range(3)]
    for v, pred in (("base", [1] * 3 + [0] * 9), ("full", [0] * 12)):
        d = r.run_dir(v, 0)
        d.mkdir(parents=True)
        f = _final(0.5, 0.8)
        f["sets"]["ckplus"].update(predictions=pred, labels=labels, groups=groups)
        (d / "final.json").write_text(json.dumps(f))
    text = rc.table(r)
    mc = json.loads((tmp_path / "out" / "results.json").read_text())["gains"]["full vs base on ckplus"]["mcnemar_per_seed"]["0"]
    assert mc["p_value"] == pytest.approx(2 / 2 ** 3)  # three faces...
    assert mc["by_sequence"]["differing_sequences"] == 1 and mc["by_sequence"]["p_value"] == 1.0  # ...one sequence
    assert "by sequence (sign-flip test, s0 p = 1 over 1 differing of 4)" in text


def test_variants_cite_upstream_runs_trained_first_once_per_citation(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(rc, "_train_one", lambda recipe, overrides, out, report=True: calls.append((overrides, out, report)) or {})
    r = rc.Recipe(name="t", method="pll", config="c", runs=str(tmp_path / "runs"), results=str(tmp_path / "out"),
                  upstream={"enc": ["pll.pretrain_epochs=3", "optim.epochs=0"]},
                  variants={"scratch": [], "tuned": ["pll.encoder={run:enc}/encoder"]}, seeds=[0, 1])
    rc.train(r, variants=["scratch", "tuned"], seeds=[1], extra=["threads=1"])
    upstream = [c for c in calls if c[1] == tmp_path / "runs" / "enc"]
    assert len(upstream) == 1 and upstream[0][0] == ["pll.pretrain_epochs=3", "optim.epochs=0", "seed=0", "threads=1"]
    assert upstream[0][2] is False  # trained, not reported
    tuned = calls[-1]
    assert tuned[1] == r.run_dir("tuned", 1)
    assert f"pll.encoder={tmp_path / 'runs' / 'enc'}/encoder" in tuned[0] and "seed=1" in tuned[0]
    r.variants["bad"] = ["pll.encoder={run:missing}/encoder"]
    with pytest.raises(ValueError, match="missing"):
        rc.train(r, variants=["bad"], seeds=[0])


def test_an_upstream_run_committed_to_the_results_is_reused_only_when_its_config_matches(tmp_path, monkeypatch):
    from fer_edge.train import load_config

    calls = []
    monkeypatch.setattr(rc, "_train_one", lambda recipe, overrides, out, report=True: calls.append((overrides, out)) or {})
    config = str(rc.ROOT / "configs/pll_ferplus.yaml")
    r = rc.Recipe(name="t", method="pll", config=config, runs=str(tmp_path / "runs"), results=str(tmp_path / "out"),
                  upstream={"enc": ["pll.pretrain_epochs=2", "optim.epochs=0"]},
                  variants={"tuned": ["pll.encoder={run:enc}/encoder"]}, seeds=[0])
    kept = tmp_path / "out" / "enc"
    kept.mkdir(parents=True)
    cfg = load_config(config, ["pll.pretrain_epochs=2", "optim.epochs=0", "seed=0", f"out_dir={tmp_path}/elsewhere"],
                      method="pll")
    (kept / "config.json").write_text(json.dumps(cfg.to_dict()))
    (kept / "metrics.jsonl").write_text(json.dumps({"stage": "pretrain", "epoch": 1}) + "\n")
    rc.train(r, variants=["tuned"], seeds=[0])  # one epoch of two: not finished, so trained
    assert [c[1] for c in calls] == [tmp_path / "runs" / "enc", r.run_dir("tuned", 0)]
    calls.clear()
    with open(kept / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"stage": "pretrain", "epoch": 2}) + "\n")
    rc.train(r, variants=["tuned"], seeds=[0])  # finished, same config: reused, nothing upstream trained
    assert [c[1] for c in calls] == [r.run_dir("tuned", 0)] and f"pll.encoder={kept}/encoder" in calls[0][0]
    calls.clear()
    (kept / "config.json").write_text(json.dumps({**cfg.to_dict(), "pll": {**cfg.to_dict()["pll"], "pretrain_lr": 0.5}}))
    rc.train(r, variants=["tuned"], seeds=[0])  # another config: trained again
    assert calls[0][1] == tmp_path / "runs" / "enc"
