"""fer_edge: facial expression recognition for the edge.

Importing this package never imports torch, compiles or downloads anything: the runtime side
(`fer_edge.runtime`) runs with numpy, OpenCV and one inference runtime. Training-side pieces
(`fer_edge.ops`, models, training, export) import torch when they are used.
"""
from fer_edge._native import build_info

__version__ = "0.1.0"
__all__ = ["build_info", "__version__"]
