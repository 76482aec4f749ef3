"""Training methods: the contract (base.py) and one module per method."""
from fer_edge.train.methods.base import (Decision, InferenceSpec, InputSpec, Method, NoConfig, Stage, TrainContext,
                                         describe, get_method, method_class, method_names, register_method)

__all__ = ["Decision", "InferenceSpec", "InputSpec", "Method", "NoConfig", "Stage", "TrainContext", "describe",
           "get_method", "method_class", "method_names", "register_method"]
