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

    from fer_edge.data import DATASETS

    kind = args.dataset.partition(":")[0]
    if kind not in DATASETS:
        raise ValueError(f"unknown dataset {args.dataset!r}; known: {', '.join(DATASETS)}")
    split = args.split or DATASETS[kind][0]
    ds = open_dataset(args.dataset, split)
    # the one place training looks (fer_edge.data.landmarks.cache_file), named as training names it
    spec = (f"ferplus:{split}" if kind == "ferplus" else args.dataset if len(DATASETS[kind]) == 1 and not split.startswith("draw")
            else f"{args.dataset}@{split}")
    detector = FaceDetector(args.yunet, min_side=args.min_side)
    cache = landmarks.build(ds, detector, progress=True)
    path = landmarks.save(cache, args.out or landmarks.cache_file(spec))
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

    ex = _parser("export", sub, "export a checkpoint to ONNX / OpenVINO / TensorRT, each verified")
    ex.add_argument("checkpoint", nargs="?", help="a training checkpoint (.pt)")
    ex.add_argument("--formats", nargs="+", default=list(DEFAULT_TARGETS), help="format:precision, e.g. onnx:fp32 openvino:int8")
    ex.add_argument("--out", default="exports", help="output folder")
    ex.add_argument("--name", help="file stem (default: the run folder's name)")
    ex.add_argument("--calibration", type=int, default=300, help="INT8 calibration images from the training data")
    ex.add_argument("--val-limit", type=int, default=0, help="verify on the first N validation images (0: all)")
    ex.add_argument("--seed", type=int, default=0, help="seed of the calibration draw")
    ex.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32], help="TensorRT optimisation profile")
    ex.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT builder workspace")
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


def _describe_faces(results) -> str:
    """'face 0 at (x, y, w, h) happiness 0.98 (surprise 0.01)' per face, or 'no face'."""
    parts = []
    for k, r in enumerate(results):
        runner = sorted(r.probabilities.items(), key=lambda kv: -kv[1])[1:2]
        where = "" if r.box is None else " at (" + ", ".join(f"{v:.0f}" for v in r.box) + ")"
        who = f"track {r.track}" if r.track is not None else f"face {k}"
        parts.append(f"{who}{where} {r.label} {r.confidence:.2f}" + "".join(f" ({n} {p:.2f})" for n, p in runner))
    return "; ".join(parts) or "no face"


def _open_window(name: str) -> None:
    """--show: a window, or a clear error where there is no display or OpenCV has no GUI."""
    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise RuntimeError("--show needs a display (DISPLAY is not set); use --save to write the annotated output")
    try:
        cv2.namedWindow(name, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise RuntimeError("--show needs OpenCV with GUI support: pip install opencv-python (the headless build "
                           "has no windows); or use --save") from None


def _predict_stream(args, rec, source, out) -> tuple[list, list]:
    """A video file or a camera: tracked faces, smoothed probabilities, a summary at the end."""
    import time
    from collections import Counter, defaultdict

    import cv2

    name = f"camera {source}" if isinstance(source, int) else str(source)
    records, writer, labels_per_track = [], None, defaultdict(Counter)
    n = None
    if not isinstance(source, int):
        cap = cv2.VideoCapture(str(source))
        if not cap.isOpened():
            raise ValueError(f"{source}: cannot open video")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        fps = cap.get(cv2.CAP_PROP_FPS) or 25
        cap.release()
    else:
        fps = 25
    if args.show:
        _open_window("fer-edge")
    from tqdm import tqdm

    bar = tqdm(total=n, desc=name, unit="frame", disable=args.json or args.show or isinstance(source, int))
    start, frames = time.perf_counter(), 0
    try:
        for k, (frame, results) in enumerate(rec.stream(source, detect_every=args.detect_every)):
            frames += 1
            bar.update(1)
            records.append({"frame": k, "faces": results.to_list()})
            for r in results:
                labels_per_track[r.track][r.label] += 1
            if isinstance(source, int) and not args.json and not args.show:
                print(f"frame {k}: {_describe_faces(results)}", flush=True)
            if out is not None or args.show:
                annotated = results.plot()
                if out is not None:
                    if writer is None:
                        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, annotated.shape[1::-1])
                    writer.write(annotated)
                if args.show:
                    cv2.imshow("fer-edge", annotated)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):  # q or Esc
                        break
    except KeyboardInterrupt:  # a camera runs until stopped: Ctrl-C ends it with the summary
        pass
    finally:
        bar.close()
        if writer is not None:
            writer.release()
        if args.show:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - start
    if not args.json:
        faces = sum(len(r["faces"]) for r in records)
        print(f"{name}: {frames} frames in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s), "
              f"{faces} faces, {len(labels_per_track)} tracks")
        for track, counts in sorted(labels_per_track.items(), key=lambda kv: -sum(kv[1].values())):
            total = sum(counts.values())
            top = ", ".join(f"{label} {100 * c / total:.0f}%" for label, c in counts.most_common(3))
            print(f"  track {track}: {total} frames, {top}")
        if out is not None:
            print(f"annotated video: {out}")
    return records, []


def _predict(args) -> int:
    from pathlib import Path

    import cv2

    from fer_edge.paths import IMAGE_SUFFIXES
    from fer_edge.faces.crops import VIDEO_SUFFIXES
    from fer_edge.runtime import Recognizer

    rec = Recognizer(args.model, detector=args.yunet, threads=args.threads, backend=args.backend,
                     precision=args.precision, min_face=None if args.min_face == 0 else args.min_face)
    print(f"model: {rec.model.path.name} ({rec.meta.get('format', '?')} {rec.meta.get('precision', '?')}, "
          f"{rec.model.name}); classes: {', '.join(rec.classes)}", file=sys.stderr)
    src = Path(args.source)
    out = Path(args.save) if args.save else None
    camera = args.source.isdigit() and not src.exists()
    if camera or src.suffix.lower() in VIDEO_SUFFIXES:
        if args.no_detect:
            raise ValueError("--no-detect is for cropped face images, not videos or cameras")
        records, failed = _predict_stream(args, rec, int(args.source) if camera else src, out)
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
        if args.show:
            _open_window("fer-edge")
        from tqdm import tqdm

        records, failed = [], []
        # a bar for folders; per-image lines stay on stdout (the bar goes to stderr)
        for f in tqdm(files, desc=src.name, unit="img", disable=args.json or len(files) < 2):
            try:
                results = rec.predict(f, detect=not args.no_detect)
            except (ValueError, TypeError, FileNotFoundError) as exc:  # one bad file never stops the others
                failed.append(f)
                records.append({"image": str(f), "error": str(exc)})
                print(f"skipped {f}: {exc}", file=sys.stderr)
                continue
            records.append({"image": str(f), "faces": results.to_list()})
            if out is not None:
                # mirror the input tree, so that a/1.jpg and b/1.jpg never overwrite each other
                target = out / f.relative_to(src).parent / f"{f.stem}_fer.png" if folder else out
                results.save(target)
            if args.show:
                cv2.imshow("fer-edge", results.plot())
                cv2.waitKey(0 if len(files) == 1 else 500)
            if not args.json:
                print(f"{f}: {_describe_faces(results)}")
        if args.show:
            cv2.destroyAllWindows()
    if args.json:
        print(json.dumps(records, indent=2))  # always a list: one record per image or frame
    if failed:
        print(f"fer-edge: {len(failed)} of {len(records)} images failed (listed above)", file=sys.stderr)
        return 1
    return 0


def _benchmark(args) -> int:
    from fer_edge import benchmark

    report = benchmark.run(args.models, args.data, args.limit, args.formats, args.batch, args.camera_batch, args.repeats,
                           args.threads, args.frame, args.out, not args.no_chart, args.yunet, args.min_face,
                           not args.no_detection_rates)
    print(benchmark.format_table(report))
    print(f"results: {report['json']}" + (f", chart: {report['chart']}" if "chart" in report else ""))
    return 0


def _serve(args) -> int:
    from fer_edge.serving import triton_server as ts
    from fer_edge.serving.triton_repository import write_repository

    if args.prepare_stub_env:
        runtimes = ["onnxruntime"] + (["openvino"] if args.with_openvino else [])
        print(f"Triton stub environment: {ts.prepare_stub_env(args.prepare_stub_env, runtimes)}")
        return 0
    if not args.model:
        raise ValueError("serve needs a model (or --prepare-stub-env DIR)")
    folder = write_repository(args.model, args.repository, args.name, args.kind, args.max_batch,
                              tuple(args.preferred_batch), args.queue_delay_us, args.instances, args.device,
                              threads=args.threads or 0)
    print(f"model repository: {folder.parent} (model {args.name}, {args.kind} backend)")
    if args.write_only:
        return 0
    if args.kind != "python":
        raise ValueError(f"the {args.kind} kind needs a Triton server that ships that backend (the tritonserver "
                         "containers); this machine's server runs the python kind. Use --write-only and serve the "
                         "repository there")
    server = ts.TritonServer(args.repository, args.http_port, args.grpc_port, stub_env=args.stub_env)
    with server:
        print(f"serving: Recognizer('triton://{server.http_url}/{args.name}') or "
              f"Recognizer('triton+grpc://{server.grpc_url}/{args.name}'); Ctrl-C stops", flush=True)
        try:
            server.process.wait()
        except KeyboardInterrupt:
            pass
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


EXAMPLES = {
    "fer-edge": """examples:
  fer-edge predict photo.jpg --save faces.png        # the shipped model on a photo
  fer-edge predict 0 --show                          # webcam, live
  fer-edge benchmark                                 # every format x precision of the shipped model
  fer-edge train baseline --config configs/baseline_ferplus.yaml
  fer-edge <command> --help                          # each command's options and examples""",
    "predict": """examples:
  fer-edge predict photo.jpg                         # one line per face: where, label, confidence
  fer-edge predict photo.jpg --save faces.png --json # annotated copy + JSON (always a list)
  fer-edge predict photos/ --save annotated/         # a folder; unreadable files are skipped and listed
  fer-edge predict clip.mp4 --save clip_fer.mp4 --detect-every 3
  fer-edge predict 0 --show                          # camera 0 in a window (q quits)
  fer-edge predict face_crops/ --no-detect           # already cropped faces
  fer-edge predict photo.jpg --model aglrls.xml --precision auto""",
    "benchmark": """examples:
  fer-edge benchmark                                 # the shipped model's forms on this machine
  fer-edge benchmark runs/baseline_ferplus/best.pt   # export every format x precision that runs here, then measure
  fer-edge benchmark model.onnx model.int8.xml --data ckplus --limit 500
  fer-edge benchmark --out bench/ --repeats 200""",
    "train": """examples:
  fer-edge train baseline --config configs/baseline_ferplus.yaml
  fer-edge train baseline --config configs/baseline_ferplus.yaml optim.epochs=5 data.image_size=64
  fer-edge train aglrls --config configs/aglrls_ferplus_ckplus.yaml --target unlabelled:my_camera_crops \\
      aglrls.check_set=folder:my_labelled_faces""",
    "eval": """examples:
  fer-edge eval runs/baseline_ferplus/best.pt --sets ferplus:test ckplus""",
    "export": """examples:
  fer-edge export runs/baseline_ferplus/best.pt --formats onnx:fp32 openvino:int8
  fer-edge export runs/aglrls/full/seed0/last.pt --formats tensorrt:fp16 --name aglrls --plain-names
  fer-edge export --list                             # formats and precisions""",
    "info": """examples:
  fer-edge info                                      # compiled kernels, CUDA, threads""",
    "serve": """examples:
  fer-edge serve --prepare-stub-env ~/.cache/fer_edge/triton_stub_env   # once: the Python backend's environment
  fer-edge serve exports/m.fp32.onnx --name fer                          # repository + a local Triton server
  fer-edge serve exports/m.fp32.onnx --kind onnxruntime --device gpu --write-only --repository /models
  # cameras: Recognizer("triton://server:8000/fer") or Recognizer("triton+grpc://server:8001/fer")""",
    "data": """examples:
  fer-edge data stats ferplus
  fer-edge data landmarks ckplus
  fer-edge data crop my_camera.mp4 --out my_camera_crops --every 5""",
}


def _parser(name: str, sub, help_text: str, **kw):
    return sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES.get(name),
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kw)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `fer-edge` parser with every subcommand (argv only decides whether `train --help`
    lists the methods, which imports the training side)."""
    from fer_edge import __version__

    parser = argparse.ArgumentParser(prog="fer-edge", description="Facial expression recognition for the edge.",
                                     epilog=EXAMPLES["fer-edge"], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fer-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _parser("info", sub, "show the compiled kernels, CUDA support and threading").set_defaults(func=_info)

    data = _parser("data", sub, "datasets: class statistics, landmark caches, face crops").add_subparsers(dest="data_cmd", required=True)
    st = data.add_parser("stats", help="class counts per split, and a class-histogram PNG")
    st.add_argument("dataset", help="ferplus | ckplus | fer2013:<csv> | rafdb:<root> | affectnet:<root> | folder:<root>")
    st.add_argument("--split", help="one split only (default: all)")
    st.add_argument("--mode", default="majority", help="FERPlus label protocol (majority, probability, multi_target, argmax)")
    st.add_argument("--out", help="PNG path (default: <dataset>_classes.png)")
    st.set_defaults(func=_data_stats)
    lm = data.add_parser("landmarks", help="detect 5 landmarks once per image and cache them where training reads them "
                                           "($FER_EDGE_CACHE/landmarks, default ~/.cache/fer_edge/landmarks)")
    lm.add_argument("dataset", help="ferplus | ckplus | rafdb:<root> | folder:<root> ...")
    lm.add_argument("--split", help="one split (default: the dataset's first)")
    lm.add_argument("--out", help="cache file (default: <cache dir>/landmarks/<dataset>_<split>.npz, what training "
                                  "reads; training's data.landmarks_dir=<folder> points elsewhere)")
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

    tr = sub.add_parser("train", help="train a model with one of the methods",
                        epilog=(_methods_epilog(argv) or "") + "\n\n" + EXAMPLES["train"],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("method", help="a registered training method (listed below)")
    tr.add_argument("--config", help="YAML config (see configs/)")
    tr.add_argument("--source", help="labelled training dataset, e.g. ferplus (= data.dataset)")
    tr.add_argument("--target", help="unlabelled target domain to adapt to, e.g. ckplus or unlabelled:<folder> (= data.target)")
    tr.add_argument("--unlabelled", help="unlabelled pool, e.g. unlabelled:<folder> (= data.unlabelled)")
    tr.add_argument("--no-report", action="store_true", help="skip the final evaluation on the eval sets")
    tr.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=0.05 data.image_size=64")
    tr.set_defaults(func=_train)
    ev = _parser("eval", sub, "evaluate a checkpoint on datasets")
    ev.add_argument("checkpoint", help="a training checkpoint (.pt)")
    ev.add_argument("--sets", nargs="*", help="e.g. ferplus:test ckplus (default: the run's eval_sets)")
    ev.add_argument("--out", help="folder for final.json and confusion PNGs (default: the run folder)")
    ev.set_defaults(func=_eval)

    add_export_parser(sub)
    pr = _parser("predict", sub, "expressions of the faces in an image, a folder of images, a video or a camera")
    pr.epilog = (pr.epilog + "\n\nUnreadable images in a folder are skipped and reported (and in --json as "
                 "{image, error}); the exit status is 1 when any image failed, 2 for a usage error, 0 otherwise.")
    pr.add_argument("source", help="an image, a folder of images, a video file, or a camera index (0, 1, ...)")
    pr.add_argument("--model", help="exported model (.onnx, .xml, .engine); default: the shipped model")
    pr.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8"),
                    help="default model only: auto = OpenVINO INT8 when OpenVINO is installed, else ONNX FP32")
    pr.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "openvino", "tensorrt"),
                    help="inference runtime (auto: by the model file's suffix)")
    pr.add_argument("--save", help="annotated image (a folder for a folder of images, mirroring its tree as "
                                   "<name>_fer.png; .mp4 for a video or camera)")
    pr.add_argument("--show", action="store_true", help="show the annotated frames in a window (needs a display and "
                                                        "opencv-python with GUI support); q or Esc quits")
    pr.add_argument("--json", action="store_true", help="print the results as JSON: a list with one record per image "
                                                        "or frame")
    pr.add_argument("--no-detect", action="store_true", help="inputs are already cropped faces")
    pr.add_argument("--min-face", type=int, default=40,
                    help="smallest face to find, in pixels (box width); detection runs at the lowest resolution "
                         "that still finds it (0: full resolution)")
    pr.add_argument("--detect-every", type=int, default=1,
                    help="videos and cameras: detect faces every N frames and follow them with optical flow "
                         "in between (faster; a lost face is detected again at once)")
    pr.add_argument("--yunet", help="YuNet ONNX path (default: $FER_EDGE_YUNET, the cache dir, the data folder)")
    pr.add_argument("--threads", type=int, help="inference threads (default: the runtime's)")
    pr.set_defaults(func=_predict)

    bm = _parser("benchmark", sub, "every format x precision of a model that runs here: size, accuracy, agreement, "
                                   "classifier and pipeline latency per stage, with anchors; table, JSON and chart")
    bm.add_argument("models", nargs="*", help="exported models (.onnx, .xml, .engine) or a training checkpoint (.pt, "
                                              "exported first to every form that runs here); default: the shipped model")
    bm.add_argument("--data", default="ferplus:valid", help="labelled faces for accuracy (any dataset spec)")
    bm.add_argument("--limit", type=int, default=0, help="use the first N faces of --data (0: all)")
    bm.add_argument("--formats", nargs="+", help="checkpoints: format:precision to export (default: all that run here)")
    bm.add_argument("--batch", type=int, default=8, help="the classifier's camera-like batch (faces per call)")
    bm.add_argument("--camera-batch", type=int, default=4, help="frames per predict call for the batched pipeline row")
    bm.add_argument("--repeats", type=int, default=50, help="timed runs per measurement")
    bm.add_argument("--threads", type=int, help="inference threads (default: the runtime's)")
    bm.add_argument("--frame", help="a photo with one face for the pipeline timings (default: the data folder's portrait)")
    bm.add_argument("--min-face", type=int, default=40, help="the detector's min_face for the pipeline rows")
    bm.add_argument("--yunet", help="YuNet ONNX path (default: $FER_EDGE_YUNET, the cache dir, the data folder)")
    bm.add_argument("--out", default="fer_edge_benchmark", help="folder for the JSON, the chart and any exports")
    bm.add_argument("--no-chart", action="store_true", help="skip the PNG chart (needs matplotlib)")
    bm.add_argument("--no-detection-rates", action="store_true",
                    help="skip counting the faces found before/after min_face on the data folder's photos and crops")
    bm.set_defaults(func=_benchmark)

    sv = _parser("serve", sub, "serve a model to many cameras through Triton Inference Server (the cameras detect "
                               "and align, the server classifies)")
    sv.add_argument("model", nargs="?", help="exported model (.onnx, .xml; .engine with --kind tensorrt)")
    sv.add_argument("--repository", default="triton_models", help="model repository folder to write")
    sv.add_argument("--name", default="fer_edge", help="the model's name on the server")
    sv.add_argument("--kind", default="python", choices=("python", "onnxruntime", "openvino", "tensorrt"),
                    help="python: fer_edge's runtime inside Triton's Python backend (any Triton, CPU included); "
                         "the others: Triton's own backends (GPU servers)")
    sv.add_argument("--max-batch", type=int, default=32, help="largest batch the server forms")
    sv.add_argument("--preferred-batch", type=int, nargs="+", default=[8, 32], help="dynamic batching's preferred sizes")
    sv.add_argument("--queue-delay-us", type=int, default=2000, help="how long a request may wait to be batched")
    sv.add_argument("--instances", type=int, default=1, help="model instances (instance_group count)")
    sv.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="instance kind")
    sv.add_argument("--threads", type=int, help="python kind: inference threads per instance")
    sv.add_argument("--http-port", type=int, help="default: a free port")
    sv.add_argument("--grpc-port", type=int, help="default: a free port")
    sv.add_argument("--write-only", action="store_true", help="write the repository, do not start a server")
    sv.add_argument("--stub-env", help="the Python environment Triton's Python backend runs in (default: "
                                       "$FER_EDGE_TRITON_STUB_ENV or ~/.cache/fer_edge/triton_stub_env)")
    sv.add_argument("--prepare-stub-env", metavar="DIR", help="make that environment (numpy<2, the runtimes, fer_edge "
                                                              "linked in) and exit")
    sv.add_argument("--with-openvino", action="store_true", help="--prepare-stub-env: also install OpenVINO")
    sv.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)

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
