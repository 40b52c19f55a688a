"""The training job: learns, is deterministic, stops on divergence and plateaus, resumes exactly."""

import json

import pytest
import torch

from mlplab.errors import ConfigError
from mlplab.training.evaluate import confusion_counts
from mlplab.training.loop import train


def weights(out_dir):
    return torch.load(out_dir / "model.pt", weights_only=True)


def test_training_learns_the_synthetic_classes_and_writes_result_json(tiny_config, tmp_path):
    cfg = tiny_config("trainer.epochs=3", "optimizer.lr=1.0")
    result = train(cfg, tmp_path)
    assert result.status == "finished" and result.epochs_run == 3
    assert result.test_accuracy > 0.9  # chance is 0.1
    written = json.loads((tmp_path / "result.json").read_text())
    for key in ("status", "val_accuracy", "test_accuracy", "test_loss", "train_seconds", "epochs_run", "mlflow_run_id"):
        assert key in written
    assert written["test_accuracy"] == result.test_accuracy
    assert [h["epoch"] for h in written["history"]] == [1, 2, 3]
    assert written["history"][-1]["images_seen"] == 3 * 600


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tiny_config, tmp_path):
    overrides = ("trainer.epochs=2", "regularization=dropout")
    train(tiny_config(*overrides), tmp_path / "a")
    train(tiny_config(*overrides), tmp_path / "b")
    train(tiny_config(*overrides, "trainer.seed=1"), tmp_path / "c")
    a, b, c = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_huge_learning_rate_diverges_without_training_on_nans(tiny_config, tmp_path):
    cfg = tiny_config("trainer.epochs=3", "optimizer=adam", "optimizer.lr=1e30", "model.activation=relu")
    result = train(cfg, tmp_path)
    assert result.status == "diverged" and "non-finite" in result.detail
    assert all(torch.isfinite(w).all() for w in weights(tmp_path).values())
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "diverged"


def test_early_stopping_stops_after_patience_epochs_without_improvement(tiny_config, tmp_path):
    # lr tiny enough that validation accuracy cannot improve after the first epochs
    cfg = tiny_config("trainer.epochs=30", "trainer.early_stopping_patience=2", "optimizer.lr=1e-9")
    result = train(cfg, tmp_path)
    assert result.status == "early_stopped"
    assert result.epochs_run == result.best_epoch + 2


def test_halve_on_plateau_stops_when_eta_reaches_one_128th(tiny_config, tmp_path):
    cfg = tiny_config("trainer.epochs=100", "schedule=halve_on_plateau", "schedule.patience=1", "optimizer.lr=1e-9")
    result = train(cfg, tmp_path)
    rates = [h["lr"] for h in result.history]
    assert result.status == "early_stopped" and "η₀" in result.detail
    assert rates[-1] == pytest.approx(1e-9 / 64)  # the last epoch trained at η₀/64, then η fell to η₀/128


def test_keep_best_ends_with_the_best_validation_epoch(tiny_config, tmp_path):
    cfg = tiny_config("trainer.epochs=4", "trainer.keep_best=true", "optimizer.lr=3.0")
    result = train(cfg, tmp_path)
    assert result.val_accuracy == result.best_val_accuracy == max(h["val_accuracy"] for h in result.history)


def test_validation_every_k_images_records_each_check(tiny_config, tmp_path):
    cfg = tiny_config("trainer.epochs=2", "trainer.validate_every=200")
    result = train(cfg, tmp_path)
    assert [c["images_seen"] for c in result.validation_checks] == [200, 400, 600, 800, 1000, 1200]
    assert all(0 <= c["val_accuracy"] <= 1 for c in result.validation_checks)


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam"])
def test_resume_from_checkpoint_is_bit_identical_to_an_uninterrupted_run(tiny_config, tmp_path, optimizer):
    common = (f"optimizer={optimizer}", "regularization=l2_dropout", "schedule=piecewise", "schedule.drop_period=1")
    train(tiny_config("trainer.epochs=4", *common), tmp_path / "full")
    train(tiny_config("trainer.epochs=2", *common), tmp_path / "half")
    resumed = train(tiny_config("trainer.epochs=4", f"trainer.resume={tmp_path / 'half' / 'checkpoint.pt'}", *common),
                    tmp_path / "resumed")
    full, again = weights(tmp_path / "full"), weights(tmp_path / "resumed")
    assert all(torch.equal(full[k], again[k]) for k in full)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in json.loads((tmp_path / "full" / "result.json").read_text())["history"]]


def test_resume_refuses_a_checkpoint_of_another_architecture(tiny_config, tmp_path):
    train(tiny_config(), tmp_path / "a")
    cfg = tiny_config("model.sizes=[784,20,10]", f"trainer.resume={tmp_path / 'a' / 'checkpoint.pt'}")
    with pytest.raises(ConfigError, match=r"resume with the same model.sizes"):
        train(cfg, tmp_path / "b")
    assert json.loads((tmp_path / "b" / "result.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("override, message", [
    ("model.sizes=[100,10]", "images have 784 pixels"),
    ("model.sizes=[784,30,7]", "data has 10 classes"),
    ("trainer.batch_size=100000", "exceeds the 600 training images"),
])
def test_sizes_and_batch_that_do_not_fit_the_data_fail_in_one_line(tiny_config, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message) as error:
        train(tiny_config(override), tmp_path)
    assert "\n" not in str(error.value)


def test_class_subset_trains_a_two_output_network(tiny_config, tmp_path):
    result = train(tiny_config("data.classes=[3,8]", "model.sizes=[784,10,2]", "data.validation_size=20"), tmp_path)
    assert result.status == "finished" and result.test_accuracy > 0.9


def test_confusion_counts_count_each_true_and_predicted_pair():
    counts = confusion_counts(torch.tensor([0, 1, 1, 2, 0]), torch.tensor([0, 1, 2, 2, 2]), 3)
    assert counts.tolist() == [[1, 0, 0], [0, 1, 0], [1, 1, 1]]
