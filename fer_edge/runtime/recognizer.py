"""Recognizer: frame -> faces -> aligned crops -> one batched inference -> results. No torch.

    from fer_edge import Recognizer
    rec = Recognizer("model.onnx")          # or .xml (OpenVINO), .engine (TensorRT); None: the default model
    for face in rec.predict(frame):          # BGR uint8 frame, a path, gray, BGRA, or a list of frames
        print(face.label, face.confidence, face.box)
"""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from fer_edge import decisions
from fer_edge.faces.align import align, template, transform_points
from fer_edge.runtime.backends import open_backend
from fer_edge.runtime.frames import to_bgr
from fer_edge.runtime.results import FaceResult, FrameResults


DEFAULT_PRECISIONS = ("auto", "int8", "fp32")


def default_model_path(backend: str = "auto", precision: str = "auto") -> Path:
    """The model shipped inside the package (fer_edge/assets/MODEL_CARD.md) in one of its two
    forms: ONNX FP32 (FERPlus test 86.2%) or OpenVINO INT8 (85.8%, about 2x faster on x86 CPUs).
    precision="auto" takes INT8 when OpenVINO is installed, else FP32; "fp32" / "int8" ask for
    one (INT8 needs OpenVINO). backend="onnxruntime" reads the ONNX file, "openvino" either."""
    assets = Path(__file__).resolve().parent.parent / "assets"
    if precision not in DEFAULT_PRECISIONS:
        raise ValueError(f"precision: the default model ships as {DEFAULT_PRECISIONS[1:]} (or 'auto'), not {precision!r}")
    if backend == "tensorrt":
        raise FileNotFoundError("no TensorRT engine is shipped (engines are built for one GPU and TensorRT version): "
                                "build one on the device, python tools/export.py <checkpoint> --formats tensorrt:fp16, "
                                "and pass its path")
    if precision == "int8":
        if backend == "onnxruntime":
            raise ValueError("the default model's INT8 form is OpenVINO IR: use backend='openvino' (or 'auto')")
        try:
            import openvino  # noqa: F401
        except ImportError:
            raise ImportError("the default model's INT8 form needs OpenVINO: pip install openvino "
                              "(or precision='fp32' for the ONNX form)") from None
    int8 = assets / "default.int8.xml"
    if int8.is_file() and backend in ("auto", "openvino") and precision in ("auto", "int8"):
        try:
            import openvino  # noqa: F401

            return int8
        except ImportError:
            pass
    path = assets / "default.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"the default model {path} is missing from this installation; pass a model path")
    return path


def resolve_model_path(model: str | Path) -> Path:
    """A path as given; a bare file name that does not exist here is looked up among the models
    shipped in the package (so `Recognizer("aglrls.xml")` works out of the box). TensorRT
    engines are never shipped: they are built for one GPU and TensorRT version."""
    from fer_edge.runtime.backends.triton import is_url

    if is_url(model):  # a model on a Triton server: the URL as given
        return model
    path = Path(model)
    if path.exists() or path.parent != Path("."):
        return path
    shipped = Path(__file__).resolve().parent.parent / "assets" / path.name
    if shipped.is_file():
        return shipped
    if path.suffix in (".engine", ".plan"):
        raise FileNotFoundError(f"{path} does not exist; TensorRT engines are built on the device that runs them: "
                                f"python tools/export.py <checkpoint> --name {path.stem} --plain-names --formats tensorrt:fp16")
    return path


def decide(logits: np.ndarray, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs -> (labels [N], probabilities [N, C] float32) by the decision rule the model's
    metadata names (fer_edge.decisions; the rule training evaluated the checkpoint with).
    Probabilities are the softmax, or the heads' mean softmax for multi-head models."""
    rule = meta["decision"]
    labels, probs = decisions.decide(logits, rule["rule"], rule.get("params"))
    return labels, probs.astype(np.float32)


# the model inputs the Recognizer makes from frames (metadata "inputs" after the pixels)
FRAME_INPUTS = ("landmarks",)


class Recognizer:
    """Facial expressions of the faces in camera frames.

    Args:
        model: exported model path (.onnx, .xml, .engine/.plan, or a .pt checkpoint with torch);
            a bare name of a shipped model ("aglrls.xml"); a model on a Triton server,
            "triton://host:port/name" (HTTP) or "triton+grpc://host:port/name"; None loads the
            default model.
        detector: a FaceDetector, a YuNet model path, or None (found via FER_EDGE_YUNET / the cache
            dir when `predict` first needs it).
        backend: "auto" (by suffix), "onnxruntime", "openvino", "tensorrt".
        threads: inference threads (None: the runtime's default).
        max_faces: keep only the best-scoring faces per frame (None: all).
        precision: for the default model only: "auto" (OpenVINO INT8 when OpenVINO is installed,
            else ONNX FP32), "fp32" or "int8"; `repr(recognizer)` says which form runs.
        min_face: the smallest face (box width, frame pixels) the detector must find; detection
            runs at the lowest resolution that still finds it (FaceDetector). None: full size.

    Boxes are (x, y, w, h): top-left corner, width and height in frame pixels.
    """

    def __init__(self, model: str | Path | None = None, detector=None, backend: str = "auto",
                 threads: int | None = None, max_faces: int | None = None, precision: str = "auto",
                 min_face: int | None = 40):
        if max_faces is not None and (isinstance(max_faces, bool) or not isinstance(max_faces, int) or max_faces < 1):
            raise ValueError(f"max_faces: expected None or an int >= 1, got {max_faces!r}")
        if model is not None and precision != "auto":
            raise ValueError("precision chooses among the default model's shipped forms; an exported file has one "
                             "precision (export others with tools/export.py)")
        self.min_face = min_face
        path = resolve_model_path(model) if model is not None else default_model_path(backend, precision)
        self.model = open_backend(path, backend, threads=threads)
        self.meta = self.model.meta
        self.channels, self.size, _ = self.model.input_shape
        self.classes = self.model.classes
        self.template = self.meta.get("align_template", "arcface")
        unknown = [n for n in self.model.extra_inputs if n not in FRAME_INPUTS]
        if unknown:
            self.model.close()
            raise ValueError(f"{self.model.path.name} needs the inputs {unknown}, which the Recognizer cannot make from "
                             f"frames (it makes: pixels, {', '.join(FRAME_INPUTS)}); call its backend's infer directly")
        self._detector_arg = detector
        self._detector = None
        self._lock = threading.Lock()
        self.max_faces = max_faces

    @property
    def detector(self):
        with self._lock:
            if self._detector is None:
                from fer_edge.faces.detector import FaceDetector

                d = self._detector_arg
                self._detector = d if isinstance(d, FaceDetector) else FaceDetector(d, min_face=self.min_face)
            return self._detector

    def __repr__(self) -> str:
        c, s = self.channels, self.size
        color = self.meta.get("color", "?")
        return (f"Recognizer(model='{self.model.path.name}', backend='{self.model.name}', "
                f"format='{self.meta.get('format', '?')}', precision='{self.meta.get('precision', '?')}', "
                f"input={c}x{s}x{s} {color}, classes={self.classes}, decision='{self.meta['decision']['rule']}', "
                f"min_face={self.min_face})")

    def _model_input(self, bgr_crop: np.ndarray) -> np.ndarray:
        """[C, S, S] float32 raw pixels in the model's colour order."""
        color = self.meta["color"]
        if color == "gray":
            img = cv2.cvtColor(bgr_crop, cv2.COLOR_BGR2GRAY)[None]
        elif color == "rgb":
            img = bgr_crop[..., ::-1].transpose(2, 0, 1)
        else:
            img = bgr_crop.transpose(2, 0, 1)
        return img.astype(np.float32)

    @property
    def needs_landmarks(self) -> bool:
        return self.model.needs_landmarks

    def crops(self, bgr: np.ndarray, detect: bool = True):
        """(model inputs [N, C, S, S], landmarks [N, 5, 2] in crop pixels, faces) of one frame.
        Without detection the frame is taken as an aligned face, its landmarks the template's."""
        if not detect:
            crop = cv2.resize(bgr, (self.size, self.size), interpolation=cv2.INTER_AREA)
            return self._model_input(crop)[None], template(self.size, self.template)[None].astype(np.float32), [None]
        return self.crops_for(bgr, self.detect(bgr))

    def detect(self, bgr: np.ndarray) -> list:
        """Stage 1: the faces of a BGR frame (best first, at most max_faces)."""
        faces = self.detector.detect(bgr)
        return faces if self.max_faces is None else faces[: self.max_faces]

    def crops_for(self, bgr: np.ndarray, faces: list):
        """Stage 2: each face aligned on its landmarks -> (model inputs, landmarks in the crop, faces)."""
        inputs, points = [], []
        for f in faces:
            crop, m = align(bgr, f.landmarks, self.size, template_name=self.template)
            inputs.append(self._model_input(crop))
            points.append(transform_points(f.landmarks, m))  # where the face's landmarks land in the crop
        if not inputs:
            return np.zeros((0, self.channels, self.size, self.size), np.float32), np.zeros((0, 5, 2), np.float32), []
        return np.stack(inputs), np.stack(points).astype(np.float32), faces

    def infer(self, x: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        """Stage 3: one batched inference over the aligned faces -> model outputs."""
        return self.model.infer(x, landmarks if self.needs_landmarks else None)

    def results(self, per_frame: list, outputs: np.ndarray | None, frames: list | None = None) -> list:
        """Stage 4 (post-processing): outputs -> the model's decision rule -> one FrameResults
        per frame, in order."""
        if outputs is not None and len(outputs):
            labels, probs = decide(outputs, self.meta)
        else:
            labels, probs = np.zeros(0, np.int64), np.zeros((0, len(self.classes)), np.float32)
        out, i = [], 0
        for k, faces in enumerate(per_frame):
            results = FrameResults(frame=None if frames is None else frames[k])
            for f in faces:
                p, label = probs[i], int(labels[i])
                i += 1
                results.append(FaceResult(
                    box=None if f is None else f.box, score=None if f is None else f.score,
                    landmarks=None if f is None else f.landmarks, label=self.classes[label],
                    probabilities={c: float(v) for c, v in zip(self.classes, p)}))
            out.append(results)
        return out

    def predict(self, frames, detect: bool = True, faces=None):
        """One frame (array or path) -> FrameResults (a list of FaceResult with plot() / save());
        a list of frames -> a list of those. No face -> an empty list. `detect=False` treats each
        frame as an already cropped face; `faces` (one list of detections per frame) skips the
        detector (e.g. faces tracked from an earlier frame)."""
        single = not isinstance(frames, (list, tuple))
        batch = [frames] if single else list(frames)
        if faces is not None:
            faces = [faces] if single else list(faces)
            if len(faces) != len(batch):
                raise ValueError(f"faces: one list of detections per frame, got {len(faces)} for {len(batch)} frames")
        per_frame, inputs, points, images = [], [], [], []
        for k, frame in enumerate(batch):
            bgr = to_bgr(frame, f"frames[{k}]" if not single else "frame")
            x, lm, found = self.crops_for(bgr, faces[k]) if faces is not None else self.crops(bgr, detect)
            per_frame.append(found)
            inputs.append(x)
            points.append(lm)
            images.append(bgr)
        x = np.concatenate(inputs) if inputs else np.zeros((0, self.channels, self.size, self.size), np.float32)
        outputs = self.infer(x, np.concatenate(points)) if len(x) else None
        out = self.results(per_frame, outputs, images)
        return out[0] if single else out

    def stream(self, source, smoothing: float = 0.6, min_iou: float = 0.3, max_missed: int = 10, detect_every: int = 1):
        """Yields (frame, results) over a video file, a camera index or an iterable of frames;
        faces carry a `track` id and probabilities smoothed over their track. `detect_every=n`
        runs the detector on every n-th frame and follows the faces' landmarks with optical flow
        in between (a face the flow loses is detected again on the next frame)."""
        from fer_edge.runtime.video import stream

        return stream(self, source, smoothing, min_iou, max_missed, detect_every)

    def close(self) -> None:
        self.model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
