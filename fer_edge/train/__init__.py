"""Training: configs, the shared trainer, method plug-ins, checkpoints and metrics (torch).

Attributes load lazily, so that the runtime's entry point for checkpoints
(`fer_edge.train.checkpoint_backend`) costs no torch import until a checkpoint is opened."""

__all__ = ["TrainConfig", "load_config", "Trainer"]


def __getattr__(name):
    if name in ("TrainConfig", "load_config"):
        from fer_edge.train import config

        return getattr(config, name)
    if name == "Trainer":
        from fer_edge.train.trainer import Trainer

        return Trainer
    raise AttributeError(f"module 'fer_edge.train' has no attribute {name!r}")
