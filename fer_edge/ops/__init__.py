"""fer_edge kernels as torch ops (training side: imports torch).

Each op validates its arguments, runs the compiled kernel from `fer_edge._C` (CPU or CUDA by the
input's device) and is registered with `torch.library.custom_op`, so autograd, `torch.compile`
and `torch.library.opcheck` work. `fer_edge.ops._reference` holds the PyTorch twin of each.
"""
from fer_edge.ops._validate import set_finite_checks
from fer_edge.ops.chanpool import chanpool_max, even_groups
from fer_edge.ops.hog import hog
from fer_edge.ops.kmeans import assign_cosine, cluster_means, kmeans_cosine
from fer_edge.ops.topk_gating import topk_gating


MAX_THREADS = 256  # csrc/common/parallel.h: kMaxThreads


def set_num_threads(n: int) -> None:
    """Threads for the CPU kernels (n <= 0: the default, FER_EDGE_NUM_THREADS or all cores).
    Capped at MAX_THREADS; when the OS refuses a thread, its share runs on the calling thread."""
    from fer_edge import _native

    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    _native.require().set_num_threads(max(-1, min(n, MAX_THREADS)))


def get_num_threads() -> int:
    from fer_edge import _native

    return _native.require().get_num_threads()


__all__ = [
    "hog", "kmeans_cosine", "assign_cosine", "cluster_means", "topk_gating", "chanpool_max", "even_groups",
    "set_finite_checks", "set_num_threads", "get_num_threads",
]
