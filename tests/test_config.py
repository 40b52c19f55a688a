"""Every config group option and experiment preset composes and trains; bad values fail in one line."""

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from mlplab.paths import CONF_DIR
from mlplab.apps.hydra_app import compose, explain
from mlplab.errors import ConfigError
from mlplab.data.splits import load
from mlplab.training.loop import train

GROUPS = ["data", "model", "loss", "initializer", "regularization", "optimizer", "schedule"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]
PRESETS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
SIGMA = {"step": lambda z, p: (z > 0).float(), "sigmoid": lambda z, p: torch.sigmoid(z), "tanh": lambda z, p: torch.tanh(z),
         "relu": lambda z, p: z.clamp(min=0), "leaky_relu": lambda z, p: torch.where(z > 0, z, 0.01 * z),
         "prelu": lambda z, p: torch.where(z > 0, z, p * z)}


def accuracy_by_hand(cfg, out_dir, split: str) -> tuple[float, int, float]:
    """(accuracy, images, share of images whose z^L is finite) of the saved model.pt on ``split``, by
    a^ℓ = σ(W^ℓ a^{ℓ-1} + b^ℓ) written out here (no dropout: it is off when a model is measured)."""
    state = torch.load(out_dir / "model.pt", weights_only=True)
    data = getattr(load(cfg.data, torch.device("cpu")), split)
    a, layers = data.x, len(cfg.model.sizes) - 1
    for layer in range(layers):
        z = a @ state[f"layers.{layer}.weight"].T + state[f"layers.{layer}.bias"]
        slope = state.get(f"activations.{layer}.weight", torch.zeros(1))
        a = z if layer == layers - 1 else SIGMA[cfg.model.activation](z, slope)
    correct = (a.argmax(dim=1) == data.y).double()
    return float(correct.mean()), len(correct), float(torch.isfinite(a).all(dim=1).double().mean())


def assert_measured_right(cfg, out_dir, result) -> None:
    """The accuracies a job reports are those of the network it saved, on the right splits."""
    for split, reported in (("test", result.test_accuracy), ("validation", result.val_accuracy)):
        accuracy, images, finite = accuracy_by_hand(cfg, out_dir, split)
        # at most one image apart: another summation order may flip an exact near-tie
        assert finite == 1.0 and abs(reported - accuracy) <= 1 / images + 1e-9, split
    assert result.history[-1]["images_seen"] == result.epochs_run * len(load(cfg.data, torch.device("cpu")).train)


def test_the_contract_options_exist():
    names = set(OPTIONS)
    for option in [("data", "fashion_mnist"), ("data", "mnist"), ("loss", "quadratic"), ("loss", "cross_entropy"),
                   ("loss", "log_likelihood"), ("optimizer", "sgd"), ("optimizer", "sgdm"), ("optimizer", "nesterov"),
                   ("optimizer", "adam"), ("schedule", "constant"), ("schedule", "piecewise"),
                   ("schedule", "halve_on_plateau"), ("schedule", "reduce_on_plateau"), ("regularization", "none"),
                   ("regularization", "l2"), ("regularization", "l1"), ("regularization", "dropout"),
                   ("initializer", "standard_normal"), ("initializer", "scaled_normal"),
                   ("initializer", "uniform_fan_in"), ("initializer", "glorot_uniform"), ("initializer", "he_normal")]:
        assert option in names
    assert {"nielsen_ch1", "nielsen_ch3", "q2_shallow", "q3_improved"} <= set(PRESETS)


def test_every_default_choice_is_in_its_registry():
    """Defaults are not looked up when a config is built (config.chosen): they must be right by construction."""
    import dataclasses

    from mlplab import config
    from mlplab.nn.activations import ACTIVATIONS
    from mlplab.nn.costs import COSTS, OUTPUTS
    from mlplab.nn.initializers import BIAS_INITIALIZERS, WEIGHT_INITIALIZERS
    from mlplab.search.samplers import PRUNERS, SAMPLERS
    from mlplab.training.engines import ENGINES
    from mlplab.training.optim import OPTIMIZERS, SCHEDULES

    def default(cls, name):
        return next(f.default for f in dataclasses.fields(cls) if f.name == name)

    assert default(config.ModelConfig, "activation") in ACTIVATIONS
    assert default(config.ModelConfig, "output") in ("auto", *OUTPUTS)
    assert default(config.LossConfig, "name") in COSTS
    assert default(config.InitializerConfig, "weights") in WEIGHT_INITIALIZERS
    assert default(config.InitializerConfig, "biases") in BIAS_INITIALIZERS
    assert default(config.OptimizerConfig, "name") in OPTIMIZERS
    assert default(config.ScheduleConfig, "name") in SCHEDULES
    assert default(config.TrainerConfig, "engine") in ENGINES
    assert default(config.SearchConfig, "sampler") in SAMPLERS and default(config.SearchConfig, "pruner") in PRUNERS


def test_a_choice_that_is_not_the_default_is_still_checked_in_one_line():
    from mlplab import config

    with pytest.raises(ConfigError, match=r"^model.activation='swish' is not known: use one of step, sigmoid"):
        config.ModelConfig(activation="swish")


@pytest.mark.parametrize("group, option", OPTIONS)
def test_every_group_option_composes_and_trains_one_epoch(tiny_config, tmp_path, group, option):
    cfg = tiny_config(f"{group}={option}")
    result = train(cfg, tmp_path)
    assert result.status in ("finished", "early_stopped"), result.detail
    assert result.epochs_run == 1
    assert_measured_right(cfg, tmp_path, result)


@pytest.mark.parametrize("activation", ["step", "sigmoid", "tanh", "relu", "leaky_relu", "prelu"])
def test_every_activation_trains_one_epoch(tiny_config, tmp_path, activation):
    cfg = tiny_config(f"model.activation={activation}", "optimizer.lr=0.1")
    result = train(cfg, tmp_path)
    assert result.status == "finished"
    assert_measured_right(cfg, tmp_path, result)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_experiment_preset_composes_and_trains_one_epoch(tiny_config, tmp_path, preset):
    cfg = tiny_config(f"experiment={preset}")
    result = train(cfg, tmp_path)
    assert result.status == "finished" and result.epochs_run == 1
    assert_measured_right(cfg, tmp_path, result)


def test_presets_carry_nielsens_settings(tiny_config):
    ch1 = tiny_config("experiment=nielsen_ch1", "trainer.batch_size=10")
    assert (ch1.model.sizes, ch1.loss.name, ch1.initializer.weights, ch1.optimizer.lr) == ([784, 30, 10], "quadratic", "standard_normal", 3.0)
    ch3 = tiny_config("experiment=nielsen_ch3", "trainer.batch_size=10")
    assert (ch3.loss.name, ch3.initializer.weights, ch3.regularization.l2, ch3.optimizer.lr) == ("cross_entropy", "scaled_normal", 5.0, 0.5)
    q2 = tiny_config("experiment=q2_shallow", "trainer.batch_size=300")
    assert (q2.model.sizes, q2.model.activation, q2.loss.name, q2.optimizer.name, q2.trainer.batch_size) == (
        [784, 100, 10], "sigmoid", "cross_entropy", "sgd", 300)


@pytest.mark.parametrize("override, fragment", [
    ("optimizer.lr=0", "optimizer.lr=0.0 must be > 0"),
    ("optimizer.lr=-1", "must be > 0"),
    ("trainer.batch_size=0", "trainer.batch_size=0 must be >= 1"),
    ("regularization.dropout=1.0", "must lie in [0, 1)"),
    ("model.sizes=[]", "needs at least input and output"),
    ("model.sizes=[784,0,10]", "every layer size must be positive"),
    ("model.activation=swish", "model.activation='swish' is not known: use one of step, sigmoid"),
    ("data.classes=[3,12]", "classes are 0..9"),
    ("data.fraction=0", "data.fraction=0.0 must lie in (0, 1]"),
    ("trainer.device=tpu", "trainer.device='tpu' is not known"),
    ("optimizer.lr=inf", "optimizer.lr=inf must be > 0 and finite"),
    ("optimizer.lr=nan", "optimizer.lr=nan must be > 0 and finite"),
    ("regularization.l2=inf", "regularization.l2=inf must be >= 0 and finite"),
    ("model.leaky_slope=inf", "model.leaky_slope=inf must be >= 0 and finite"),
    ("optimizer.betas=[2,0.5]", "optimizer.betas=[2.0, 0.5] must be two numbers in [0, 1)"),
    ("optimizer.betas=[0.9]", "optimizer.betas=[0.9] must be two numbers in [0, 1)"),
    ("optimizer.eps=-1", "optimizer.eps=-1.0 must be > 0 and finite"),
    ("trainer.seed=-1", "trainer.seed=-1 must lie in 0..2^63-1"),
    ("trainer.seed=100000000000000000000", "trainer.seed=100000000000000000000 must lie in 0..2^63-1"),
])
def test_out_of_range_values_fail_before_training_in_one_line(tiny_config, override, fragment):
    with pytest.raises(ConfigError) as error:
        tiny_config(override)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_misspelt_key_fails_at_composition_and_is_explained_in_one_line(tiny_config):
    with pytest.raises(ConfigCompositionException) as error:
        tiny_config("trainer.epoch=3")
    line = explain(error.value)
    assert "trainer.epoch is not a config key" in line and "\n" not in line


@pytest.mark.parametrize("config_name, override, key", [
    ("train", "+foo=1", "foo"),
    ("train", "+model.widht=100", "model.widht"),
    ("search", "+search.trials=5", "search.trials"),
])
def test_a_key_appended_with_plus_must_exist_in_the_schema(config_name, override, key):
    with pytest.raises(ConfigError, match=f"^{key} is not a config key"):
        compose([override], config_name=config_name)


def test_free_form_mappings_still_take_new_keys():
    cfg = compose(["+search.space.lr={type:float,low:0.01,high:1}"], config_name="search")
    assert cfg.search.space["lr"]["high"] == 1


def test_a_wrongly_typed_value_is_explained_in_one_line(tiny_config):
    with pytest.raises((ConfigCompositionException, ValidationError)) as error:
        tiny_config("trainer.epochs=many")
    line = explain(error.value)
    assert "trainer.epochs" in line and "\n" not in line
