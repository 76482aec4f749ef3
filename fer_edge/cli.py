"""`fer-edge` command line: info, data, train, eval, export, predict."""
from __future__ import annotations

import argparse
import json
import os
import sys

from fer_edge import build_info


def _info(_args) -> int:
    print(json.dumps(build_info(), indent=2))
    return 0


def _data_stats(args) -> int:
    from fer_edge.data import stats

    kwargs = {"mode": args.mode} if args.dataset.startswith("ferplus") else {}
    counts = stats.split_counts(args.dataset, [args.split] if args.split else None, **kwargs)
    print(stats.format_table(counts))
    out = args.out or f"{args.dataset.partition(':')[0]}_classes.png"
    print(f"histogram: {stats.save_histogram(counts, out, args.dataset)}")
    return 0


def _data_landmarks(args) -> int:
    from fer_edge.data import landmarks, open_dataset
    from fer_edge.faces import FaceDetector

    ds = open_dataset(args.dataset, args.split)
    detector = FaceDetector(args.yunet, min_side=args.min_side)
    cache = landmarks.build(ds, detector, progress=True)
    path = landmarks.save(cache, args.out or landmarks.default_path(ds))
    print(f"{ds.name}: {cache.summary()}")
    print(f"landmark cache: {path}")
    return 0


def _train(args) -> int:
    from fer_edge.train import Trainer, load_config

    overrides = list(args.overrides)
    for flag, key in (("source", "data.dataset"), ("target", "data.target"), ("unlabelled", "data.unlabelled")):
        if getattr(args, flag):
            overrides.insert(0, f"{key}={getattr(args, flag)}")
    cfg = load_config(args.config, overrides, method=args.method)
    trainer = Trainer(cfg)
    summary = trainer.fit()
    if trainer.rank == 0:
        print(json.dumps(summary))
        told = trainer.method.summary(trainer.history)
        for line in told.get("lines", []):
            print(line)
        for warning in told.get("warnings", []):
            print(f"WARNING: {warning}", file=sys.stderr)
        if not args.no_report:
            results = trainer.report()
            for spec, res in results["sets"].items():
                rules = "".join(f", {k} {v:.4f}" for k, v in res.get("rules", {}).items())
                print(f"{spec}: accuracy {res['accuracy']:.4f}, mean class accuracy {res['mean_class_accuracy']:.4f}, "
                      f"shared-class accuracy {res['accuracy_shared_classes']:.4f}{rules}")
            print(f"results: {trainer.out / 'final.json'}")
    return 0


def _eval(args) -> int:
    from fer_edge.train.trainer import trainer_from_checkpoint

    trainer = trainer_from_checkpoint(args.checkpoint)
    if args.out:
        trainer.out = __import__("pathlib").Path(args.out)
        trainer.out.mkdir(parents=True, exist_ok=True)
    results = trainer.report(args.sets or None, checkpoint_path=__import__("pathlib").Path(args.checkpoint))
    for spec, res in results["sets"].items():
        rules = "".join(f", {k} {v:.4f}" for k, v in res.get("rules", {}).items())
        print(f"{spec}: accuracy {res['accuracy']:.4f}, mean class accuracy {res['mean_class_accuracy']:.4f}{rules}")
    return 0


def _export(args) -> int:
    from fer_edge.export import export
    from fer_edge.export.formats import table

    if args.list:
        print(table())
        return 0
    if not args.checkpoint:
        raise ValueError("export needs a checkpoint (or --list)")
    report = export(args.checkpoint, args.formats, args.out, args.name, args.calibration, args.val_limit, args.seed,
                    tuple(args.batch_sizes), args.workspace_mb, args.dla_core, args.threads, plain_names=args.plain_names)
    print(f"torch accuracy on {report['validation_set']}: {report['torch_accuracy']:.4f}")
    return 0


def add_export_parser(sub) -> None:
    from fer_edge.export.api import DEFAULT_TARGETS

    ex = sub.add_parser("export", help="export a checkpoint to ONNX / OpenVINO / TensorRT, each verified")
    ex.add_argument("checkpoint", nargs="?")
    ex.add_argument("--formats", nargs="+", default=list(DEFAULT_TARGETS), help="format:precision, e.g. onnx:fp32 openvino:int8")
    ex.add_argument("--out", default="exports")
    ex.add_argument("--name", help="file stem (default: the run folder's name)")
    ex.add_argument("--calibration", type=int, default=300, help="INT8 calibration images from the training data")
    ex.add_argument("--val-limit", type=int, default=0, help="verify on the first N validation images (0: all)")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32], help="TensorRT optimisation profile")
    ex.add_argument("--workspace-mb", type=int, default=1024)
    ex.add_argument("--dla-core", type=int, help="TensorRT: build for this DLA core (Jetson)")
    ex.add_argument("--threads", type=int, help="runtime threads while verifying")
    ex.add_argument("--plain-names", action="store_true",
                    help="name files <name>.xml / <name>.engine (one precision per format) instead of <name>.<precision>.xml")
    ex.add_argument("--list", action="store_true", help="print the formats table")
    ex.set_defaults(func=_export)


def _data_crop(args) -> int:
    from fer_edge.faces import FaceDetector
    from fer_edge.faces.crops import crop_faces

    stats = crop_faces(args.source, args.out, args.size, args.every, args.min_score, FaceDetector(args.yunet))
    print(f"{stats['faces']} faces from {stats['frames']} frames -> {stats['out']}")
    return 0


def _predict(args) -> int:
    from pathlib import Path

    import cv2

    from fer_edge.paths import IMAGE_SUFFIXES
    from fer_edge.faces.crops import VIDEO_SUFFIXES
    from fer_edge.runtime import Recognizer, draw

    rec = Recognizer(args.model, detector=args.yunet, threads=args.threads)
    src = Path(args.source)
    out = Path(args.save) if args.save else None
    records, failed = [], []
    if src.suffix.lower() in VIDEO_SUFFIXES:
        cap = cv2.VideoCapture(str(src))
        if not cap.isOpened():
            raise ValueError(f"{src}: cannot open video")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        writer = None
        from tqdm import tqdm

        for k in tqdm(range(n or 10**9), total=n, desc=src.name, unit="frame", disable=args.json):
            ok, frame = cap.read()
            if not ok:
                break
            results = rec.predict(frame, detect=not args.no_detect)
            records.append({"frame": k, "faces": [r.to_dict() for r in results]})
            if out:
                if writer is None:
                    fps = cap.get(cv2.CAP_PROP_FPS) or 25
                    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
                writer.write(draw(frame, results))
        if writer is not None:
            writer.release()
    else:
        if not src.exists():
            raise FileNotFoundError(f"{src} does not exist")
        folder = src.is_dir()
        # entries that are folders named like images (a "x.jpg/" directory) are not images
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) if folder else [src]
        if folder and not files:
            raise ValueError(f"{src} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        if out is not None:
            _check_save_target(out, folder)
        from tqdm import tqdm

        # a bar for folders; per-image lines stay on stdout (the bar goes to stderr)
        for f in tqdm(files, desc=src.name, unit="img", disable=args.json or len(files) < 2):
            try:
                results = rec.predict(f, detect=not args.no_detect)
            except (ValueError, TypeError, FileNotFoundError) as exc:  # one bad file never stops the others
                failed.append(f)
                records.append({"image": str(f), "error": str(exc)})
                print(f"skipped {f}: {exc}", file=sys.stderr)
                continue
            records.append({"image": str(f), "faces": [r.to_dict() for r in results]})
            if out is not None:
                # mirror the input tree, so that a/1.jpg and b/1.jpg never overwrite each other
                target = out / f.relative_to(src).parent / f"{f.stem}_fer.png" if folder else out
                target.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(target), draw(cv2.imread(str(f)), results)):
                    raise OSError(f"could not write {target}")
            if not args.json:
                summary = ", ".join(f"{r.label} {r.confidence:.2f}" for r in results) or "no face"
                print(f"{f}: {summary}")
    if args.json:
        print(json.dumps(records if len(records) != 1 else records[0], indent=2))
    if failed:
        print(f"fer-edge: {len(failed)} of {len(records)} images failed (listed above)", file=sys.stderr)
        return 1
    return 0


def _check_save_target(out, folder: bool) -> None:
    """--save: a folder for a folder of inputs (created), else an image file OpenCV can write."""
    import cv2

    if folder:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--save {out}: a file; a folder of images needs a folder to save into")
        out.mkdir(parents=True, exist_ok=True)
        return
    if out.is_dir():
        raise ValueError(f"--save {out}: a folder; give an image file name such as {out / 'faces.png'}")
    if not cv2.haveImageWriter(str(out)):
        raise ValueError(f"--save {out}: OpenCV cannot write {out.suffix or 'files without a suffix'!r} images "
                         "(use .png or .jpg)")
    out.parent.mkdir(parents=True, exist_ok=True)


def _methods_epilog(argv) -> str | None:
    """The registered methods with their one-line descriptions, for `fer-edge train --help` only
    (listing them imports the training side, i.e. torch, which no other command needs)."""
    words = sys.argv[1:] if argv is None else argv
    if "train" not in words:
        return None
    try:
        from fer_edge.train.methods import describe
    except ImportError as exc:  # the runtime-only install
        return f"methods: unavailable ({exc}); install fer_edge[train]"
    return "methods:\n" + "\n".join(f"  {name:12s} {text}" for name, text in describe().items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fer-edge", description="Facial expression recognition for the edge.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="show the compiled kernels, CUDA support and threading").set_defaults(func=_info)

    data = sub.add_parser("data", help="datasets: class statistics, landmark caches").add_subparsers(dest="data_cmd", required=True)
    st = data.add_parser("stats", help="class counts per split, and a class-histogram PNG")
    st.add_argument("dataset", help="ferplus | ckplus | fer2013:<csv> | rafdb:<root> | affectnet:<root> | folder:<root>")
    st.add_argument("--split", help="one split only (default: all)")
    st.add_argument("--mode", default="majority", help="FERPlus label protocol (majority, probability, multi_target, argmax)")
    st.add_argument("--out", help="PNG path (default: <dataset>_classes.png)")
    st.set_defaults(func=_data_stats)
    lm = data.add_parser("landmarks", help="detect 5 landmarks once per image and cache them beside the dataset")
    lm.add_argument("dataset")
    lm.add_argument("--split")
    lm.add_argument("--out", help="cache file (default: beside the dataset, fer_edge_landmarks.npz)")
    lm.add_argument("--yunet", help="YuNet ONNX path (default: $FER_EDGE_YUNET, the cache dir, the data folder)")
    lm.add_argument("--min-side", type=int, default=160, help="upscale smaller images to this side before detection")
    lm.set_defaults(func=_data_landmarks)
    cr = data.add_parser("crop", help="aligned face crops from a camera's video, image or image folder "
                                      "(an unlabelled target: data.target=unlabelled:<out>)")
    cr.add_argument("source", help="video (.mp4, .avi, ...), image, or folder of images")
    cr.add_argument("--out", required=True, help="folder for the crops (<frame>_<k>.png)")
    cr.add_argument("--size", type=int, default=96, help="crop side in pixels (fer2013 framing)")
    cr.add_argument("--every", type=int, default=1, help="video: keep every N-th frame")
    cr.add_argument("--min-score", type=float, default=0.8, help="YuNet score a face needs")
    cr.add_argument("--yunet", help="YuNet ONNX path (default: $FER_EDGE_YUNET, the cache dir, the data folder)")
    cr.set_defaults(func=_data_crop)

    tr = sub.add_parser("train", help="train a model with one of the methods", epilog=_methods_epilog(argv),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("method", help="a registered training method (listed below)")
    tr.add_argument("--config", help="YAML config (see configs/)")
    tr.add_argument("--source", help="labelled training dataset, e.g. ferplus (= data.dataset)")
    tr.add_argument("--target", help="unlabelled target domain to adapt to, e.g. ckplus or unlabelled:<folder> (= data.target)")
    tr.add_argument("--unlabelled", help="unlabelled pool, e.g. unlabelled:<folder> (= data.unlabelled)")
    tr.add_argument("--no-report", action="store_true", help="skip the final evaluation on the eval sets")
    tr.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=0.05 data.image_size=64")
    tr.set_defaults(func=_train)
    ev = sub.add_parser("eval", help="evaluate a checkpoint on datasets")
    ev.add_argument("checkpoint")
    ev.add_argument("--sets", nargs="*", help="e.g. ferplus:test ckplus (default: the run's eval_sets)")
    ev.add_argument("--out", help="folder for final.json and confusion PNGs (default: the run folder)")
    ev.set_defaults(func=_eval)

    add_export_parser(sub)
    pr = sub.add_parser("predict", help="expressions of the faces in an image, a folder of images or a video",
                        epilog="Unreadable images in a folder are skipped and reported (and in --json as "
                               "{image, error}); the exit status is 1 when any image failed, 2 for a usage error, "
                               "0 otherwise.")
    pr.add_argument("source")
    pr.add_argument("--model", help="exported model (.onnx, .xml, .engine); default: the shipped model")
    pr.add_argument("--save", help="annotated image (a folder for a folder of images, mirroring its tree as "
                                   "<name>_fer.png; .mp4 for a video)")
    pr.add_argument("--json", action="store_true", help="print the results as JSON")
    pr.add_argument("--no-detect", action="store_true", help="inputs are already cropped faces")
    pr.add_argument("--yunet", help="YuNet ONNX path (default: $FER_EDGE_YUNET, the cache dir, the data folder)")
    pr.add_argument("--threads", type=int)
    pr.set_defaults(func=_predict)

    # key=value overrides may stand anywhere after `train METHOD` (argparse alone cannot mix them
    # with flags), so they are collected from what the parser did not recognise.
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":
        args.overrides = list(args.overrides) + [e for e in extra if "=" in e and not e.startswith("-")]
        extra = [e for e in extra if not ("=" in e and not e.startswith("-"))]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:  # user mistakes: one line, no traceback
        if os.environ.get("FER_EDGE_DEBUG") == "1":
            raise
        print(f"fer-edge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
