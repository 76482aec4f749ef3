"""Training: configs, the shared trainer, method plug-ins, checkpoints and metrics (torch)."""
from fer_edge.train.config import TrainConfig, load_config
from fer_edge.train.trainer import Trainer

__all__ = ["TrainConfig", "load_config", "Trainer"]
