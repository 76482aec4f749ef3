"""The runtime side: never imports torch, fer_edge.models or fer_edge.train.

Backends load exported models (`open_backend(path)`) and run preprocessed face batches; the
Recognizer (face detection -> alignment -> inference -> results) builds on them.
"""
from fer_edge.runtime.backends import Backend, open_backend
from fer_edge.runtime.recognizer import Recognizer
from fer_edge.runtime.results import FaceResult, FrameResults, draw

__all__ = ["Backend", "open_backend", "Recognizer", "FaceResult", "FrameResults", "draw"]
