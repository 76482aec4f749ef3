"""The runtime side: never imports torch, fer_edge.models or fer_edge.train.

Backends load exported models (`open_backend(path)`) and run preprocessed face batches (numpy
and one inference runtime: no OpenCV, so a server that only runs crops needs nothing else); the
Recognizer (face detection -> alignment -> inference -> results) builds on them.
"""
from fer_edge.runtime.backends import Backend, open_backend

__all__ = ["Backend", "open_backend", "Recognizer", "FaceResult", "FrameResults", "draw"]


def __getattr__(name):
    # lazy: the Recognizer and results need OpenCV, the backends do not
    if name == "Recognizer":
        from fer_edge.runtime.recognizer import Recognizer

        return Recognizer
    if name in ("FaceResult", "FrameResults", "draw"):
        from fer_edge.runtime import results

        return getattr(results, name)
    raise AttributeError(f"module 'fer_edge.runtime' has no attribute {name!r}")
