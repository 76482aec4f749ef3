"""The native core under hostile settings: it raises or degrades, it never takes the process down."""
import os
import subprocess
import sys
import tempfile

import pytest
import torch

from fer_edge import _native, ops


def run(code: str, **env) -> subprocess.CompletedProcess:
    # from outside the repository: `python -c` there would import the unbuilt source tree
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **env), cwd=tempfile.gettempdir())


def test_absurd_thread_counts_are_capped_not_fatal():
    # each in its own process: a std::terminate would kill it (the probe saw "terminate called")
    code = ("import torch; from fer_edge import ops; ops.set_num_threads(100000); "
            "print(ops.get_num_threads()); ops.hog(torch.zeros(64, 1, 48, 48)); "
            "ops.kmeans_cosine(torch.randn(300, 16, 4), 3, 2, seed=0); print('ok')")
    proc = run(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(ops.MAX_THREADS), "ok"]
    proc = run("import torch; from fer_edge import ops; print(ops.get_num_threads()); "
               "ops.hog(torch.zeros(64, 1, 48, 48)); print('ok')", FER_EDGE_NUM_THREADS="40000")
    assert proc.returncode == 0 and proc.stdout.split() == [str(ops.MAX_THREADS), "ok"], proc.stderr[-2000:]
    with pytest.raises(TypeError, match="int"):
        ops.set_num_threads(2.5)


def test_threads_the_os_refuses_fall_back_to_the_calling_thread():
    """Under an address-space limit that leaves room for only a few thread stacks, the kernels
    still finish (the refused chunks run on the calling thread) with the same results."""
    code = """
import resource, threading, time, torch
from fer_edge import ops
ops.set_num_threads(64)
x = torch.randn(256, 64, 8, generator=torch.Generator().manual_seed(0))
ref = ops.kmeans_cosine(x, 4, 3, seed=0)[1].clone()
vm = int([l for l in open('/proc/self/status') if l.startswith('VmSize')][0].split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (48 << 20), resource.RLIM_INFINITY))
stop, started = threading.Event(), []
try:  # proof that the OS now refuses threads (8 MB stacks)
    for _ in range(64):
        t = threading.Thread(target=stop.wait); t.start(); started.append(t)
except RuntimeError:
    pass
stop.set(); [t.join() for t in started]
got = ops.kmeans_cosine(x, 4, 3, seed=0)[1]
print(len(started) < 64, bool((got == ref).all()))
"""
    proc = run(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "True"], proc.stdout


def test_shapes_whose_element_count_overflows_are_rejected_before_any_memory_is_touched():
    lib = _native.require()
    huge = lib.Buffer(0, [2**62, 2**62, 4], "float32")
    out = lib.Buffer(0, [2**62, 4, 4], "float32")
    labels = lib.Buffer(0, [2**62, 2**62], "int64")
    with pytest.raises(ValueError, match="more elements than int64"):
        lib.kmeans_cosine(huge, lib.Buffer(), out, labels, lib.Buffer(), 4, 2, 0, 0)
    with pytest.raises(ValueError, match="more elements than int64"):
        lib.assign_cosine(huge, out, labels, lib.Buffer(0, [2**62, 2**62], "float32"))
