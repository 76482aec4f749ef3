"""Serving fer_edge models to many cameras: Triton Inference Server model repositories, a
launcher for the `tritonserver` binary the `nvidia-pytriton` wheel bundles, and (in
fer_edge.runtime.backends.triton) the client side the Recognizer uses."""
