"""Every config group option and experiment preset composes and trains; bad values fail in one line."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from mlplab.cli import CONF_DIR, compose_train, explain
from mlplab.config import ConfigError
from mlplab.train import train

GROUPS = ["data", "model", "loss", "initializer", "regularization", "optimizer", "schedule"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]
PRESETS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


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


@pytest.mark.parametrize("group, option", OPTIONS)
def test_every_group_option_composes_and_trains_one_epoch(tiny_config, tmp_path, group, option):
    cfg = tiny_config(f"{group}={option}")
    result = train(cfg, tmp_path)
    assert result.status in ("finished", "early_stopped"), result.detail
    assert result.epochs_run == 1 and 0.0 <= result.test_accuracy <= 1.0


@pytest.mark.parametrize("activation", ["step", "sigmoid", "tanh", "relu", "leaky_relu", "prelu"])
def test_every_activation_trains_one_epoch(tiny_config, tmp_path, activation):
    result = train(tiny_config(f"model.activation={activation}", "optimizer.lr=0.1"), tmp_path)
    assert result.status == "finished"


@pytest.mark.parametrize("preset", PRESETS)
def test_every_experiment_preset_composes_and_trains_one_epoch(tiny_config, tmp_path, preset):
    cfg = tiny_config(f"experiment={preset}")
    result = train(cfg, tmp_path)
    assert result.status == "finished" and result.epochs_run == 1


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
        compose_train([override], config_name=config_name)


def test_free_form_mappings_still_take_new_keys():
    cfg = compose_train(["+search.space.lr={type:float,low:0.01,high:1}"], config_name="search")
    assert cfg.search.space["lr"]["high"] == 1


def test_a_wrongly_typed_value_is_explained_in_one_line(tiny_config):
    with pytest.raises((ConfigCompositionException, ValidationError)) as error:
        tiny_config("trainer.epochs=many")
    line = explain(error.value)
    assert "trainer.epochs" in line and "\n" not in line
