"""Recipes: one mechanism for every method's experiments and shipped model.

A recipe (recipes/<method>.yaml) names a method's config, its variants (the ablation: overrides
of one budget), seeds, an optional shared first run that every variant starts from (AGLRLS's
stage 1), the control variant the gains are measured against, and how a model ships (formats to
export, which file to pick under which accuracy rule, the deployment check, the model card). The
same steps then serve every method:

    train: every variant x seed, resuming (runs/<recipe>/<variant>/seed<k>)
    table: one table of every run's final.json, gains over the control per seed (paired), JSON too
    ship:  export -> pick each shipped file by its rule -> copy into fer_edge/assets ->
           the Recognizer on real images vs the PyTorch checkpoint -> model card

`python tools/recipe.py {train,table,ship} recipes/<method>.yaml`. The method contract test also
takes its tiny smoke run from the recipe (`smoke`), so a new method brings a module, a config and
a recipe, nothing else.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

def _repository_root() -> Path:
    """The fer_edge source tree recipes live in (recipes/, configs/, runs/, fer_edge/assets/):
    $FER_EDGE_ROOT, else the working directory when it holds recipes/, else the checkout this
    module was imported from (an editable install)."""
    import os

    for candidate in (os.environ.get("FER_EDGE_ROOT"), Path.cwd(), Path(__file__).resolve().parent.parent):
        if candidate and (Path(candidate) / "recipes").is_dir():
            return Path(candidate).resolve()
    return Path.cwd()


ROOT = _repository_root()
ASSETS = ROOT / "fer_edge" / "assets"  # shipping writes into the source tree, never into site-packages


@dataclass
class ShipFile:
    as_: str                          # file name in fer_edge/assets (an .xml brings its .bin)
    candidates: list                  # format:precision, first that passes the rule ships
    min_agreement: float = 0.0        # labels agreeing with PyTorch on the validation split
    max_accuracy_drop: float = 1.0    # validation accuracy below PyTorch's
    optional: bool = False            # no candidate passes: ship nothing (else an error)


@dataclass
class Ship:
    variant: str
    formats: list
    files: list
    card: str
    title: str
    deploy_check: str = ""            # a dataset spec with image files (e.g. ckplus)


@dataclass
class Recipe:
    name: str
    method: str
    config: str
    runs: str
    results: str
    smoke: list = field(default_factory=list)
    variants: dict = field(default_factory=lambda: {"main": []})
    seeds: list = field(default_factory=lambda: [0])
    shared: dict | None = None        # {name, overrides, pass_as: "key={dir}/..."}
    # runs trained once (seed 0, not reported) before the variants whose overrides cite them as
    # "{run:<name>}" (their folder): e.g. pre-trained encoders an ablation fine-tunes from
    upstream: dict = field(default_factory=dict)
    control: str = ""
    report_sets: list = field(default_factory=list)  # default: the config's eval_sets
    ship: Ship | None = None

    def path(self, key: str) -> Path:
        p = Path(getattr(self, key))
        return p if p.is_absolute() else ROOT / p

    def run_dir(self, variant: str, seed: int) -> Path:
        return self.path("runs") / variant / f"seed{seed}"

    def shared_dir(self) -> Path | None:
        return None if not self.shared else self.path("runs") / self.shared["name"]


def load_recipe(path: str | Path) -> Recipe:
    import yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    known = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown recipe keys {unknown}; known: {sorted(known)}")
    ship = data.pop("ship", None)
    if ship is not None:
        files = [ShipFile(as_=f.pop("as"), **f) for f in ship.pop("files")]
        ship = Ship(files=files, **ship)
    recipe = Recipe(ship=ship, **data)
    if recipe.control and recipe.control not in recipe.variants:
        raise ValueError(f"{path}: control {recipe.control!r} is not one of the variants {list(recipe.variants)}")
    if ship is not None and ship.variant not in recipe.variants:
        raise ValueError(f"{path}: ship.variant {ship.variant!r} is not one of the variants {list(recipe.variants)}")
    return recipe


def recipe_for_method(method: str) -> Recipe:
    """The recipe in recipes/ whose method is `method` (every registered method has one)."""
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        if recipe.method == method:
            return recipe
    raise FileNotFoundError(f"no recipe in {ROOT / 'recipes'} for method {method!r}")


# -- train -------------------------------------------------------------------------------------------
def _train_one(recipe: Recipe, overrides: list[str], out: Path, report: bool = True) -> dict:
    from fer_edge.train import Trainer, load_config

    cfg = load_config(recipe.path("config"), [*overrides, f"out_dir={out}"], method=recipe.method)
    trainer = Trainer(cfg)
    trainer.fit()
    if report and trainer.rank == 0 and not _reported(out / "final.json"):
        trainer.report()
    return json.loads((out / "final.json").read_text()) if (out / "final.json").is_file() else {}


def _reported(final: Path) -> bool:
    """final.json exists and holds per-face predictions for every set (reports written before
    they were stored are redone: evaluation only, the training is not touched)."""
    if not final.is_file():
        return False
    sets = json.loads(final.read_text()).get("sets", {})
    return all("predictions" in r for r in sets.values())


def train(recipe: Recipe, variants=None, seeds=None, extra: list[str] | None = None) -> None:
    """Every variant x seed (resuming finished and half-finished runs), after the shared run."""
    extra = list(extra or [])
    variants = list(variants or recipe.variants)
    for v in variants:
        if v not in recipe.variants:
            raise ValueError(f"unknown variant {v!r}; the recipe has {list(recipe.variants)}")
    base = []
    if recipe.shared:
        shared = recipe.shared_dir()
        print(f"[{recipe.name}] shared run -> {shared}", flush=True)
        _train_one(recipe, [*recipe.shared.get("overrides", []), "seed=0", *extra], shared)
        base = [recipe.shared["pass_as"].format(dir=shared)]
    for seed in seeds or recipe.seeds:
        for v in variants:
            overrides = [_cite_upstream(recipe, o, extra) for o in recipe.variants[v]]
            out = recipe.run_dir(v, seed)
            print(f"[{recipe.name}] {v} seed {seed} -> {out}", flush=True)
            _train_one(recipe, [*base, *overrides, f"seed={seed}", *extra], out)


def _cite_upstream(recipe: Recipe, override: str, extra: list[str]) -> str:
    """Replaces "{run:<name>}" by that upstream run's folder, training it first (once; resumes)."""
    import re

    for name in re.findall(r"\{run:([\w.-]+)\}", override):
        if name not in recipe.upstream:
            raise ValueError(f"{override!r} cites run {name!r}; the recipe's upstream runs are {list(recipe.upstream)}")
        out = recipe.path("runs") / name
        overrides = [*recipe.upstream[name], "seed=0", *extra]
        kept = recipe.path("results") / name
        if not (out / "last.pt").is_file() and _finished_copy(recipe, overrides, kept):
            # runs/ is scratch a later session may not have; the committed copy of the same run is kept
            print(f"[{recipe.name}] upstream run {name}: the committed {kept} (same config, finished)", flush=True)
            out = kept
        else:
            print(f"[{recipe.name}] upstream run {name} -> {out}", flush=True)
            _train_one(recipe, overrides, out, report=False)
        override = override.replace(f"{{run:{name}}}", str(out))
    return override


def _finished_copy(recipe: Recipe, overrides: list[str], folder: Path) -> bool:
    """`folder` holds a finished run of exactly this config: its config.json (read with today's
    defaults for keys it predates) equals the one `overrides` give, and its metrics.jsonl has a row
    for every epoch of every stage."""
    from fer_edge.train import load_config
    from fer_edge.train.config import config_from_dict
    from fer_edge.train.methods import get_method

    if not (folder / "config.json").is_file() or not (folder / "metrics.jsonl").is_file():
        return False
    want = load_config(recipe.path("config"), [*overrides, f"out_dir={folder}"], method=recipe.method)
    have = config_from_dict({**json.loads((folder / "config.json").read_text()), "out_dir": str(folder)})
    if have.to_dict() != want.to_dict():
        return False
    epochs = sum(s.epochs for s in get_method(want.method, want).stages() if s.epochs > 0)
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return max((r.get("epoch", 0) for r in rows), default=0) >= epochs


# -- table -------------------------------------------------------------------------------------------
def _finals(recipe: Recipe) -> dict:
    """Every finished run's final.json: from its run folder, else from the copy an earlier `table`
    made in the results folder (runs/ is scratch that a later session may not have; the committed
    results are not), so a table can grow across sessions."""
    out = {}
    for v in recipe.variants:
        for seed in recipe.seeds:
            for f in (recipe.run_dir(v, seed) / "final.json", recipe.path("results") / f"{v}_seed{seed}" / "final.json"):
                if f.is_file():
                    out[(v, seed)] = json.loads(f.read_text())
                    break
    return out


def paired_gain(diffs: list[float]) -> dict:
    """Mean of paired differences; with 3+ pairs a paired t-test (scipy when installed)."""
    d = {"per_seed": diffs, "mean": float(np.mean(diffs))}
    if len(diffs) >= 3:
        try:
            from scipy import stats

            d["p_value"] = float(stats.ttest_1samp(diffs, 0.0).pvalue)
        except ImportError:
            d["p_value"] = None
    return d


def mcnemar(pred_a, pred_b, labels) -> dict:
    """Exact two-sided McNemar test of two models on the same faces: b = faces only A gets right,
    c = faces only B gets right; p = P(Binomial(b + c, 1/2) as or more extreme)."""
    a_ok, b_ok = np.asarray(pred_a) == np.asarray(labels), np.asarray(pred_b) == np.asarray(labels)
    return mcnemar_counts(int((a_ok & ~b_ok).sum()), int((~a_ok & b_ok).sum()))


def mcnemar_counts(b: int, c: int) -> dict:
    """The same test from the two discordant counts (e.g. pooled over seeds' paired faces)."""
    from math import comb

    n = b + c
    p = 1.0 if n == 0 else min(1.0, 2 * sum(comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n)
    return {"only_first_right": b, "only_second_right": c, "p_value": p}


def table(recipe: Recipe, out: Path | None = None) -> str:
    """table.md and results.json from every run's final.json (and the runs' files copied)."""
    out = Path(out or recipe.path("results"))
    out.mkdir(parents=True, exist_ok=True)
    finals = _finals(recipe)
    if not finals:
        raise FileNotFoundError(f"no finished runs under {recipe.path('runs')} (python tools/recipe.py train ...)")
    sets = recipe.report_sets or list(next(iter(finals.values()))["sets"])
    rules = sorted({r for f in finals.values() for s in sets for r in f["sets"].get(s, {}).get("rules", {})})
    head = ["variant", "seed", *[f"{s} {col}" for s in sets for col in ("accuracy", "mean class", "shared classes", *rules)]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}"  # noqa: E731
    for (v, seed), f in finals.items():
        cells = [v, str(seed)]
        for s in sets:
            r = f["sets"].get(s)
            if r is None:
                cells += ["not run"] * (3 + len(rules))
                continue
            cells += [pct(r["accuracy"]), pct(r["mean_class_accuracy"]), pct(r.get("accuracy_shared_classes"))]
            cells += [pct(r.get("rules", {}).get(name)) for name in rules]
        lines.append("| " + " | ".join(cells) + " |")
        dst = out / f"{v}_seed{seed}"
        dst.mkdir(exist_ok=True)
        for p in recipe.run_dir(v, seed).glob("*"):
            if p.suffix in (".json", ".jsonl", ".png"):
                shutil.copy(p, dst / p.name)
    results = {"recipe": recipe.name, "method": recipe.method, "runs": {f"{v}/seed{s}": f for (v, s), f in finals.items()}}
    if recipe.control:
        gains = {}
        for v in recipe.variants:
            if v == recipe.control:
                continue
            for s in sets:
                diffs = [finals[(v, k)]["sets"][s]["accuracy"] - finals[(recipe.control, k)]["sets"][s]["accuracy"]
                         for k in recipe.seeds if (v, k) in finals and (recipe.control, k) in finals
                         and s in finals[(v, k)]["sets"] and s in finals[(recipe.control, k)]["sets"]]
                if diffs:
                    gains[f"{v} vs {recipe.control} on {s}"] = g = paired_gain(diffs)
                    g["mcnemar_per_seed"] = _mcnemar_per_seed(recipe, finals, v, s)
        results["gains"] = gains
        lines += ["", f"Gains over `{recipe.control}` (same budget and seed, the method's decision rule), in points:", ""]
        for k, g in gains.items():
            per = ", ".join(f"{100 * d:+.2f}" for d in g["per_seed"])
            p = f"; paired t-test p = {g['p_value']:.3g}" if g.get("p_value") is not None else ""
            mc = g.get("mcnemar_per_seed") or {}
            m = ("; McNemar per seed " + ", ".join(f"s{k} p = {r['p_value']:.3g} ({r['only_first_right']} vs "
                                                    f"{r['only_second_right']} faces)" for k, r in mc.items())) if mc else ""
            seq = {k: r["by_sequence"] for k, r in mc.items() if "by_sequence" in r}
            if seq:
                m += ("; faces are frames of sequences, so by sequence (sign-flip test, "
                      + ", ".join(f"s{k} p = {r['p_value']:.3g} over {r['differing_sequences']} differing of "
                                  f"{r['sequences']}" for k, r in seq.items()) + ")")
            lines.append(f"- {k}: mean {100 * g['mean']:+.2f} (per seed {per}){p}{m}")
    lines += _cross_dataset_lines(finals, sets) + _ambiguous_lines(finals, sets)
    lines += ["", "Accuracy in % by the method's decision rule; 'shared classes' masks the classes an eval set lacks; "
              "rule columns show the other decision rules. Checkpoints as each final.json says (selected on the "
              "training set's validation split, or the last epoch). Generated by `python tools/recipe.py table`."]
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return text


def _cross_dataset_lines(finals: dict, sets: list[str]) -> list[str]:
    """The views an unseen-domain set needs (final.json files written since they exist): accuracy on
    the basic six expressions, and for sets of video frames (CK+) one vote per sequence with the
    intervals that show how many independent decisions the set really holds."""
    rows = []
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    ci = lambda c: f"[{100 * c[0]:.1f}, {100 * c[1]:.1f}]"  # noqa: E731
    for (v, seed), f in finals.items():
        for s in sets:
            r = f["sets"].get(s, {})
            vote = r.get("sequence_vote")
            if vote is None:
                continue
            six = r.get("basic_six")
            six_cell = f"{pct(six['accuracy'])} ({six['count']})" if six else "n/a"
            rows.append(f"| {v} | {seed} | {s} | {six_cell} "
                        f"| {pct(vote['accuracy'])} {ci(vote['ci95'])} ({vote['sequences']}) "
                        f"| {pct(vote['face_accuracy'])} {ci(vote['face_ci95_if_independent'])} "
                        f"| {ci(vote['face_ci95_by_sequence'])} |")
    if not rows:
        return []
    return ["", "Unseen-domain views (faces that are frames of sequences):", "",
            "| variant | seed | set | basic six (faces) | one vote per sequence, 95% CI (sequences) "
            "| per face, 95% CI if faces were independent | per face, 95% CI resampling sequences |",
            "|---|---|---|---|---|---|---|", *rows]


def _ambiguous_lines(finals: dict, sets: list[str]) -> list[str]:
    """Accuracy on the faces whose crowd votes leave two or more candidate classes (FERPlus), where
    partial-label training should matter, beside the rest."""
    rows = []
    for (v, seed), f in finals.items():
        for s in sets:
            amb = f["sets"].get(s, {}).get("ambiguous_faces")
            if amb and amb.get("accuracy") is not None:
                rest = amb.get("accuracy_unambiguous")
                rows.append(f"| {v} | {seed} | {s} | {100 * amb['accuracy']:.2f} ({amb['count']}) | "
                            + ("n/a" if rest is None else f"{100 * rest:.2f}") + " |")
    if not rows:
        return []
    return ["", "Faces whose votes leave two or more candidate classes:", "",
            "| variant | seed | set | accuracy on them (faces) | accuracy on the others |", "|---|---|---|---|---|", *rows]


def _mcnemar_per_seed(recipe: Recipe, finals: dict, variant: str, spec: str) -> dict:
    """seed -> McNemar of `variant` vs the control on one eval set, where both runs stored their
    per-face predictions (final.json files written before predictions were stored have none)."""
    from fer_edge.train.metrics import paired_test_by_sequence

    out = {}
    for k in recipe.seeds:
        ra = finals.get((variant, k), {}).get("sets", {}).get(spec, {})
        rb = finals.get((recipe.control, k), {}).get("sets", {}).get(spec, {})
        if "predictions" in ra and "predictions" in rb and ra.get("labels") == rb.get("labels"):
            out[k] = mcnemar(ra["predictions"], rb["predictions"], ra["labels"])
            groups = ra.get("groups") or rb.get("groups") or _groups_of(spec, ra["labels"])
            if groups is not None:  # frames of sequences: the test that counts a sequence once
                out[k]["by_sequence"] = paired_test_by_sequence(ra["predictions"], rb["predictions"], ra["labels"], groups)
    return out


_GROUPS: dict = {}


def _groups_of(spec: str, labels: list[int]) -> list[str] | None:
    """The sequence of each face of an eval set whose final.json predates stored groups, read from
    the dataset's file names (no images) where the data is here and its faces and labels are the
    stored ones in the same order; None otherwise (not a set of sequences, or no data)."""
    key = (spec, len(labels))
    if key not in _GROUPS:
        _GROUPS[key] = None
        try:
            from fer_edge.train.data_roles import open_split

            for num_classes in (8, 7):
                ds = open_split(spec, num_classes, "gray")
                if [smp.label for smp in ds.samples] == list(labels):
                    seqs = [smp.extras.get("sequence") for smp in ds.samples]
                    _GROUPS[key] = seqs if all(seqs) else None
                    break
        except Exception:  # no data folder, an unknown spec: the table goes without the test
            pass
    return _GROUPS[key]


# -- ship --------------------------------------------------------------------------------------------
def deploy_check(checkpoint: Path, models: list[Path], spec: str, detector=None) -> dict:
    """The Recognizer (detection, alignment, the metadata's inputs and decision) on an image
    dataset, for the PyTorch checkpoint and each exported model: faces found, accuracy and
    agreement with the checkpoint's labels. Labels are read only for the accuracy."""
    from fer_edge import Recognizer
    from fer_edge.train import checkpoint as ckpt
    from fer_edge.train.data_roles import open_split

    # the model's own label view: a 7-class model is scored on the faces of its 7 classes
    # (CK+'s contempt faces left out), as its training report was
    ds = open_split(spec, len(ckpt.load(checkpoint)["classes"]), "gray")
    files = [str(s.path) for s in ds.samples if s.path is not None]
    truth = [ds.classes[s.label] for s in ds.samples if s.path is not None]
    report = {"dataset": spec, "faces": len(files), "models": {}}
    reference = None
    for path in [checkpoint, *models]:
        t = time.perf_counter()
        rec = Recognizer(path, detector=detector)
        results = rec.predict(files)
        labels = [r[0].label if r else None for r in results]
        reference = labels if reference is None else reference
        report["models"][Path(path).name] = {
            "faces_found": sum(1 for r in results if r),
            "accuracy": float(np.mean([a == b for a, b in zip(labels, truth)])),
            "agreement_with_checkpoint": float(np.mean([a == b for a, b in zip(labels, reference)])),
            "seconds": round(time.perf_counter() - t, 2)}
    return report


def pick(rows: list[dict], torch_accuracy: float, entry: ShipFile) -> dict | None:
    """The first candidate export that passes the entry's rule."""
    by_name = {f"{r['format']}:{r['precision']}": r for r in rows if "skipped" not in r}
    for c in entry.candidates:
        r = by_name.get(c)
        if r and r["agreement_with_torch"] >= entry.min_agreement and torch_accuracy - r["accuracy"] <= entry.max_accuracy_drop:
            return r
    if entry.optional:
        return None
    raise RuntimeError(f"{entry.as_}: no export among {entry.candidates} passes its rule "
                       f"(agreement >= {entry.min_agreement}, accuracy drop <= {entry.max_accuracy_drop})")


def ship(recipe: Recipe, seed: int | None = None, assets: Path = ASSETS, exports: Path | None = None) -> dict:
    from fer_edge.export import export

    if recipe.ship is None:
        raise ValueError(f"recipe {recipe.name} ships nothing")
    s = recipe.ship
    seed = recipe.seeds[0] if seed is None else seed
    run = recipe.run_dir(s.variant, seed)
    final = json.loads((run / "final.json").read_text())
    ckpt = Path(final["checkpoint"])  # the reported checkpoint (selected on valid, or the last epoch)
    assets = Path(assets)
    assets.mkdir(parents=True, exist_ok=True)
    report = export(ckpt, s.formats, exports or ROOT / "exports" / f"{recipe.name}_ship", name=recipe.name)
    shipped = {}
    for entry in s.files:
        row = pick(report["artifacts"], report["torch_accuracy"], entry)
        target = assets / entry.as_
        for old in (target, target.with_suffix(".bin") if target.suffix == ".xml" else None):
            if old is not None and old.exists():  # a file that no longer passes its rule must not linger
                old.unlink()
        if row is None:
            continue
        shutil.copy(row["file"], assets / entry.as_)
        if entry.as_.endswith(".xml"):
            shutil.copy(Path(row["file"]).with_suffix(".bin"), (assets / entry.as_).with_suffix(".bin"))
        shipped[entry.as_] = row
    check = None
    if s.deploy_check:
        check = deploy_check(ckpt, [assets / name for name in shipped], s.deploy_check)
        out = recipe.path("results")
        out.mkdir(parents=True, exist_ok=True)
        (out / "deploy_check_shipped.json").write_text(json.dumps(check, indent=2))
    card = model_card(recipe, final, report, shipped, check)
    (assets / s.card).write_text(card)
    print(card)
    return {"shipped": shipped, "deploy_check": check}


def model_card(recipe: Recipe, final: dict, report: dict, shipped: dict, check: dict | None) -> str:
    from fer_edge.train.methods import method_class

    run = Path(final["checkpoint"]).parent
    cfg = json.loads((run / "config.json").read_text())
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    m, d = cfg["model"], cfg["data"]
    classes = list(next(iter(final["sets"].values()))["per_class_accuracy"]) if final["sets"] else []
    lines = [f"# {recipe.ship.title}", "",
             f"- **Method**: {recipe.method} ({method_class(recipe.method).description}).",
             f"- **Model**: {m['backbone']} x{m['width']}, {d['image_size']}x{d['image_size']} {d['color']}, "
             f"{len(classes)} classes ({', '.join(classes)}); shipped as "
             + ", ".join(f"`{name}` ({r['format']} {r['precision']}, {r['size_mb']:.2f} MB)" for name, r in shipped.items()) + ".",
             f"- **Data**: {d['dataset']} train" + (f", unlabelled target {d['target']}" if d.get("target") else "")
             + (f", unlabelled pool {d['unlabelled']}" if d.get("unlabelled") else "") + "; no pretrained weights"
             + (f" ({m['pretrained']})" if m.get("pretrained") else "") + ".",
             f"- **Training**: {len(history)} epochs ({', '.join(sorted({str(h.get('stage')) for h in history}))}), "
             f"seed {final['seed']}, {sum(h.get('seconds', 0) for h in history) / 60:.0f} min; config `{recipe.config}` "
             f"(+ variant `{recipe.ship.variant}`).",
             f"- **Selection**: {final['selected_on']}; test sets were evaluated once, afterwards.", "",
             f"| set | accuracy ({final.get('decision', 'argmax')}) | mean class accuracy | faces |", "|---|---|---|---|"]
    for spec, r in final["sets"].items():
        lines.append(f"| {spec} | {r['accuracy']:.4f} | {r['mean_class_accuracy']:.4f} | {r['count']} |")
    lines += ["", f"Exports verified on the validation split (PyTorch accuracy {report['torch_accuracy']:.4f}):", "",
              "| format | precision | MB | accuracy | agreement with PyTorch | ms/face (batch 1) |", "|---|---|---|---|---|---|"]
    for r in report["artifacts"]:
        if "skipped" not in r:
            lines.append(f"| {r['format']} | {r['precision']} | {r['size_mb']:.2f} | {r['accuracy']:.4f} | "
                         f"{r['agreement_with_torch']:.4f} | {r['latency_ms_batch1']:.3f} |")
    if check:
        lines += ["", f"Through the Recognizer on {check['dataset']} ({check['faces']} images; detection, alignment, the "
                  "metadata's inputs and decision):", ""]
        for name, r in check["models"].items():
            lines.append(f"- `{name}`: faces found {r['faces_found']}, accuracy {r['accuracy']:.4f}, agreement with the "
                         f"PyTorch checkpoint {r['agreement_with_checkpoint']:.4f}")
    s = final["seed"]
    train_seed, ship_seed = ("", "") if s == recipe.seeds[0] else (f" --seeds {s}", f" --seed {s}")
    lines += ["", f"Reproduce: `python tools/recipe.py train {_rel(recipe)}{train_seed} && "
              f"python tools/recipe.py ship {_rel(recipe)}{ship_seed}`.", ""]
    return "\n".join(lines)


def _rel(recipe: Recipe) -> str:
    return f"recipes/{recipe.method}.yaml"
