"""Training curves (fer_edge.train.metrics.plot_curves): every kind of history a run logs plots
without warnings, including a label-free stage that logs no accuracy."""
import warnings

import pytest

from fer_edge.train.metrics import plot_curves

LABEL_FREE = [{"epoch": 1, "stage": "pretrain", "train_loss": 0.95, "mim_loss": 0.95},
              {"epoch": 2, "stage": "pretrain", "train_loss": 0.81, "mim_loss": 0.81}]
SUPERVISED = [{"epoch": 3, "stage": "finetune", "train_loss": 1.2, "train_acc": 0.41, "val_acc": 0.44},
              {"epoch": 4, "stage": "finetune", "train_loss": 1.0, "train_acc": 0.52, "val_acc": 0.55}]


@pytest.mark.parametrize("history", [LABEL_FREE, SUPERVISED, LABEL_FREE + SUPERVISED, []],
                         ids=["label-free", "supervised", "both-stages", "empty"])
def test_curves_plot_every_history_without_warnings(tmp_path, history):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plot_curves(history, tmp_path / "curves.png", "run")
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
