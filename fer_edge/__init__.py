"""fer_edge: facial expression recognition for the edge.

Importing this package never imports torch, compiles or downloads anything: the runtime side
(`fer_edge.runtime`) runs with numpy, OpenCV and one inference runtime. Training-side pieces
(`fer_edge.ops`, models, training, export) import torch when they are used.
"""
from fer_edge._native import build_info

__version__ = "0.1.0"
__all__ = ["build_info", "Recognizer", "FaceResult", "FrameResults", "draw", "__version__"]


_RUNTIME_NAMES = ("Recognizer", "FaceResult", "FrameResults", "draw")


def __getattr__(name):
    # lazy: `import fer_edge` stays free of OpenCV/runtime imports until the Recognizer is used;
    # fer_edge.runtime resolves these names (lazily too)
    if name in _RUNTIME_NAMES:
        from fer_edge import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'fer_edge' has no attribute {name!r}")
