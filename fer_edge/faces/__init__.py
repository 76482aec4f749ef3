"""Face detection (YuNet) and 5-point alignment: numpy + OpenCV only, shared by the training
data (crops, landmark caches) and the runtime (camera frames)."""
from fer_edge.faces.align import align, invert, template, transform_points, similarity
from fer_edge.faces.detector import Face, FaceDetector, resolve_yunet

__all__ = ["Face", "FaceDetector", "resolve_yunet", "align", "invert", "template", "transform_points", "similarity"]
