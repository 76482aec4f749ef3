"""Issue 13: configs are checked when they load (types, ranges, finite numbers, YAML syntax and
encoding), and the kernels' arguments name what is wrong."""
import pytest
import torch

from fer_edge.train import Trainer, load_config


@pytest.mark.parametrize("yaml_text,match", [
    ("optim:\n  epochs: [1, 2]\n", "optim.epochs: expected int"),
    ("data:\n  image_size: 48.7\n", "data.image_size"),
    ("eval_sets: 5\n", "eval_sets: expected list"),
    ("optim:\n  lr: .nan\n", "optim.lr: must be a finite number"),
    ("optim:\n  epochs: -1\n", r"optim.epochs: expected a value in >= 0"),
    ("data:\n  batch_size: 0\n", "data.batch_size"),
    ("data:\n  image_size: 0\n", "data.image_size"),
    ("seed: 1180591620717411303424\n", "seed: expected a value in"),
    ("data:\n  augment: heavy\n", "data.augment: expected one of"),
    ("optim:\n  lr: 0.1\n   momentum: 0.9\n", r"not valid YAML at line 3"),
])
def test_bad_configs_fail_at_load_naming_the_key(tmp_path, yaml_text, match):
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ValueError, match=match):
        load_config(f)


def test_non_utf8_config_names_the_file(tmp_path):
    f = tmp_path / "latin1.yaml"
    f.write_bytes("seed: 1 # é\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.yaml: not UTF-8"):
        load_config(f)


def test_overrides_are_checked_the_same_way():
    for item, match in (("optim.lr=nan", "finite"), ("optim.lr=inf", "finite"), ("threads=-1", "threads"),
                        ("data.num_classes=5", "data.num_classes")):
        with pytest.raises(ValueError, match=match):
            load_config(None, [item])


def test_a_run_with_nothing_to_train_is_an_error(data_root, tmp_path):
    with pytest.raises(ValueError, match="nothing to train"):
        Trainer(load_config(None, [f"out_dir={tmp_path}", "optim.epochs=0", "data.limit=16"]))


def test_wrong_pretrained_weights_are_refused(data_root, tmp_path):
    from fer_edge.models import build_backbone

    torch.save(build_backbone("mobilenet_v2", 1, 48, width=0.25).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="wrong weights file|do not fit"):
        Trainer(load_config(None, [f"out_dir={tmp_path}", "model.width=0.25", f"model.pretrained={tmp_path / 'other.pt'}",
                                   "data.limit=16"]))


def test_kernel_arguments_are_never_rounded_or_wrapped():
    from fer_edge import ops

    with pytest.raises(TypeError, match="group_sizes: expected ints"):
        ops.chanpool_max(torch.randn(2, 10), [4.5, 5.5])
    with pytest.raises(ValueError, match=r"seed: expected an int in \[0, 2\*\*63\)"):
        ops.kmeans_cosine(torch.randn(2, 9, 3), 3, 2, seed=2**70)
