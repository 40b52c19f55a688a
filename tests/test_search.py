"""Optuna studies: spaces, samplers, pruning, resume, best-config files, parallel and distributed workers."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from helpers.configs import tiny_overrides
from helpers.console import CONSOLE_SCRIPT, collect, run_cli, signal_when
from mlplab.paths import CONF_DIR
from mlplab.apps.hydra_app import explain
from mlplab.errors import ConfigError
from mlplab.config import SearchConfig, TrainConfig, register
from mlplab.search.space import apply, check_keys
from mlplab.search.study import run_study
from mlplab.tracking.store import client_for
from helpers.postgres import postgres_server, server_binaries

SEARCH_SCRIPT = CONSOLE_SCRIPT.parent / "mlplab-search"


def compose_search(overrides: list[str]) -> tuple[TrainConfig, SearchConfig]:
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        app = OmegaConf.to_object(compose(config_name="search", overrides=overrides))
    base = TrainConfig(**{f.name: getattr(app, f.name) for f in dataclasses.fields(TrainConfig)})
    return base, app.search


@pytest.fixture
def search_setup(data_root, mlflow_uri, tmp_path):
    def make(*overrides: str):
        return compose_search([*tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
                               "tracking.experiment=tests", f"search.storage={tmp_path / 'study.journal'}",
                               f"search.experiment_dir={tmp_path / 'experiment'}", "search.seed=0", *overrides])

    return make


def study_of(search: SearchConfig, tmp_path: Path) -> optuna.Study:
    from mlplab.search.storage import make_storage

    return optuna.load_study(study_name=search.study_name or search.name, storage=make_storage(search))


def children(uri: str, kind_parent: str = "study"):
    client = client_for(uri)
    experiment = client.get_experiment_by_name("tests").experiment_id
    (parent,) = client.search_runs([experiment], f"tags.`mlplab.kind` = '{kind_parent}'")
    runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return parent, runs


# ---- the space ----------------------------------------------------------------------------------------

def test_the_q2_space_is_log_uniform_over_the_assignments_rates():
    _, search = compose_search(["search=q2_lr"])
    spec = search.space["optimizer.lr"]
    assert spec["type"] == "float" and spec["log"] and spec["low"] <= 1e-4 and spec["high"] >= 1.0


def search_file(folder: Path, name: str, space: dict, **settings) -> list[str]:
    """Overrides that select a search written to ``folder/search/<name>.yaml``, as a user would write one."""
    (folder / "search").mkdir(parents=True, exist_ok=True)
    (folder / "search" / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "space": space, **settings}))
    return [f"hydra.searchpath=[file://{folder}]", f"search={name}"]


@pytest.mark.parametrize("space, settings, fragment", [
    ({"optimizer.momentum": {"type": "float", "low": 0.9, "high": 0.1}}, {}, "low=0.9 > high=0.1: swap them"),
    ({"optimizer.lr": {"type": "float", "low": 0, "high": 1, "log": True}}, {}, "a log scale needs low > 0"),
    ({"x": {"type": "spline", "low": 0, "high": 1}}, {}, "search.space.x.type='spline' is not known"),
    ({"x": {"type": "float", "low": 0, "hi": 1}}, {}, "unknown fields ['hi']"),
    ({"optimizer.lr": {"type": "float", "low": 0.1, "high": 1}}, {"n_trials": 0}, "search.n_trials=0 must be >= 1"),
    ({"optimizer.lr": {"type": "float", "low": 0.1, "high": 1}}, {"sampler": "annealing"},
     "search.sampler='annealing' is not known"),
])
def test_bad_spaces_fail_in_one_line(tmp_path, space, settings, fragment):
    with pytest.raises(Exception) as error:
        compose_search(search_file(tmp_path, "bad", space, **settings))
    line = explain(error.value)
    assert fragment in line and "\n" not in line


def test_an_unknown_key_in_the_space_fails_in_one_line(tmp_path):
    base, search = compose_search(search_file(tmp_path, "typo", {"optimizer.learning_rate": {"type": "float", "low": 0.1, "high": 1}}))
    with pytest.raises(ConfigError, match=r"search.space.optimizer.learning_rate is not a training config key") as error:
        check_keys(base, search.space)
    assert "\n" not in str(error.value)


def test_a_value_the_space_can_sample_but_training_refuses_fails_before_the_study(search_setup, tmp_path):
    base, search = search_setup(*search_file(tmp_path, "typo", {"model.activation": {
        "type": "categorical", "choices": ["sigmoid", "swish"]}}))
    with pytest.raises(ConfigError, match=r"search.space.model.activation can sample 'swish', which training refuses: "
                                          r"model.activation='swish' is not known"):
        run_study(base, search, tmp_path / "out")
    assert not (tmp_path / "study.journal").exists()  # refused before any study was made


def test_a_search_without_a_validation_split_fails_before_the_study(search_setup, tmp_path):
    base, search = search_setup("search=q2_lr", "data.validation_size=0")
    with pytest.raises(ConfigError, match="data.validation_size=0 leaves a search nothing to choose on"):
        run_study(base, search, tmp_path / "out")
    assert not (tmp_path / "study.journal").exists()


@pytest.mark.parametrize("metric, direction", [("val_loss", "maximize"), ("val_accuracy", "minimize")])
def test_a_metric_sought_the_wrong_way_fails_in_one_line(metric, direction):
    with pytest.raises(Exception) as error:
        compose_search(["search=q2_lr", f"search.metric={metric}", f"search.direction={direction}"])
    assert f"search.metric={metric} with search.direction={direction} would seek the worst model" in explain(error.value)


def test_a_combination_training_refuses_fails_its_trial_and_the_study_goes_on(search_setup, tmp_path):
    """sgdm needs a momentum > 0: sgdm with 0.0 is refused when the trial's config is built, and that trial is
    told FAIL (never left RUNNING); each value alone is possible, so the space itself is accepted."""
    base, search = search_setup(*search_file(tmp_path, "pairs", {
        "optimizer.name": {"type": "categorical", "choices": ["sgd", "sgdm"]},
        "optimizer.momentum": {"type": "categorical", "choices": [0.0, 0.9]}}, sampler="grid"),
        "search.n_trials=4", "search.final_test=false", "search.pruner=none")
    run_study(base, search, tmp_path / "out")
    trials = {(t.params["optimizer.name"], t.params["optimizer.momentum"]): t for t in study_of(search, tmp_path).trials}
    assert len(trials) == 4
    refused = trials["sgdm", 0.0]
    assert refused.state == optuna.trial.TrialState.FAIL and "optimizer=sgdm needs optimizer.momentum > 0" in refused.user_attrs["failure"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for pair, t in trials.items() if pair != ("sgdm", 0.0))


def test_a_float_range_with_the_grid_sampler_fails_in_one_line():
    with pytest.raises(Exception) as error:
        compose_search(["search=q2_lr", "search.sampler=grid"])
    assert "search.sampler=grid needs categorical choices" in explain(error.value)


def test_width_and_depth_rebuild_the_layer_sizes():
    base, _ = compose_search([])
    cfg = apply(base, {"model.width": 300, "model.depth": 3, "optimizer.lr": 0.25, "model.activation": "relu"})
    assert cfg.model.sizes == [784, 300, 300, 300, 10]
    assert cfg.optimizer.lr == 0.25 and cfg.model.activation == "relu"
    with pytest.raises(ConfigError, match="regularization.dropout=1.5 must lie in"):
        apply(base, {"regularization.dropout": 1.5})  # sampled values are validated like any config


# ---- studies ------------------------------------------------------------------------------------------

def grid(folder: Path, rates: list[float]) -> list[str]:
    """A grid search over these learning rates (the shipped conf/search/q2_grid.yaml would shadow the name)."""
    return search_file(folder / "conf", "test_grid", {"optimizer.lr": {"type": "categorical", "choices": rates}},
                       sampler="grid", pruner="none")

def test_a_batch_of_trials_trains_as_one_population_with_the_values_of_one_at_a_time(search_setup, mlflow_uri, tmp_path):
    rates = [0.01, 0.1, 0.5, 1.0, 3.0]
    values = {}
    for batch in (1, 4):
        base, search = search_setup(*grid(tmp_path, rates), f"search.n_trials={len(rates)}", "search.final_test=false",
                                    f"search.batch={batch}", f"search.study_name=batch{batch}", "trainer.epochs=2")
        run_study(base, search, tmp_path / f"out{batch}")
        trials = study_of(search, tmp_path).trials
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        values[batch] = {t.params["optimizer.lr"]: t.value for t in trials}
    assert values[4] == values[1]  # the population's members are the trials run alone
    client = client_for(mlflow_uri)
    experiment = client.get_experiment_by_name("tests").experiment_id
    members = client.search_runs([experiment], "tags.population_size = '4'")
    assert len(members) == 4 and len({r.data.tags["population"] for r in members}) == 1
    assert all(r.data.tags["trial_state"] == "COMPLETE" for r in members)


def test_grid_sampler_covers_exactly_the_listed_values(search_setup, tmp_path):
    rates = [0.001, 0.01, 0.1, 1.0]
    base, search = search_setup(*grid(tmp_path, rates), f"search.n_trials={len(rates)}", "search.final_test=false")
    run_study(base, search, tmp_path / "out")
    tried = sorted(t.params["optimizer.lr"] for t in study_of(search, tmp_path).trials)
    assert tried == rates


def test_pruning_stops_a_hopeless_trial_after_its_first_epoch(search_setup, mlflow_uri, tmp_path):
    base, search = search_setup(*grid(tmp_path, [1.0, 1e-6]), "search.sampler=random",
                                "search.n_trials=2", "search.pruner=median", "search.pruner_startup_trials=1",
                                "search.pruner_warmup_epochs=0", "trainer.epochs=4", "search.final_test=false")
    # The good rate first, so the median of a completed trial exists when the hopeless one reports.
    from mlplab.search.storage import make_storage

    study = optuna.create_study(study_name="test_grid", storage=make_storage(search), direction="maximize")
    study.enqueue_trial({"optimizer.lr": 1.0})
    study.enqueue_trial({"optimizer.lr": 1e-6})
    run_study(base, search, tmp_path / "out")
    trials = {t.params["optimizer.lr"]: t for t in study_of(search, tmp_path).trials}
    assert trials[1.0].state == optuna.trial.TrialState.COMPLETE and len(trials[1.0].intermediate_values) == 4
    assert trials[1e-6].state == optuna.trial.TrialState.PRUNED and len(trials[1e-6].intermediate_values) == 1
    _, runs = children(mlflow_uri)
    pruned = [r for r in runs if r.data.tags.get("trial_state") == "PRUNED"]
    assert len(pruned) == 1 and pruned[0].data.tags["status"] == "pruned" and pruned[0].info.status == "KILLED"


def test_a_rerun_continues_the_same_study_to_n_trials_in_total(search_setup, mlflow_uri, tmp_path):
    base, search = search_setup("search=q2_lr", "search.n_trials=3", "search.pruner=none", "search.final_test=false")
    run_study(base, search, tmp_path / "first")
    assert len(study_of(search, tmp_path).trials) == 3
    search.n_trials = 5
    run_study(base, search, tmp_path / "second")
    trials = study_of(search, tmp_path).trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    parent, runs = children(mlflow_uri)
    assert len(runs) == 5 and parent.info.status == "FINISHED"  # one parent, found again on resume
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == [0, 1, 2, 3, 4]


def test_a_diverging_trial_is_recorded_failed_and_the_study_goes_on(search_setup, tmp_path):
    base, search = search_setup(*grid(tmp_path, [1e30, 1.0]),
                                "search.n_trials=2", "optimizer=adam", "model.activation=relu", "search.final_test=false")
    run_study(base, search, tmp_path / "out")
    trials = {t.params["optimizer.lr"]: t for t in study_of(search, tmp_path).trials}
    assert trials[1e30].state == optuna.trial.TrialState.FAIL and "diverged" in trials[1e30].user_attrs["failure"]
    assert trials[1.0].state == optuna.trial.TrialState.COMPLETE


def test_the_best_config_file_reruns_to_the_same_validation_accuracy_and_test_is_touched_once(
        search_setup, data_root, mlflow_uri, tmp_path):
    base, search = search_setup(*grid(tmp_path, [0.05, 1.0]),
                                "search.n_trials=2", "trainer.epochs=2")
    summary = run_study(base, search, tmp_path / "out")
    best = study_of(search, tmp_path).best_trial
    assert summary["best_params"] == {"optimizer.lr": 1.0} == best.params
    assert summary["best_retrained_val_accuracy"] == pytest.approx(best.value)
    parent, runs = children(mlflow_uri)
    with_test = [r for r in runs if "test_accuracy" in r.data.metrics]
    assert len(with_test) == 1  # the trials never touched the test set; the retrained best did, once
    assert parent.data.metrics["best_test_accuracy"] == with_test[0].data.metrics["test_accuracy"]
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    figures = {a.path for a in client_for(mlflow_uri).list_artifacts(parent.info.run_id)}
    assert {"optimization_history.png", "slice.png"} <= figures

    experiment = Path(summary["experiment_file"])
    assert experiment.parent == tmp_path / "experiment" and yaml.safe_load(experiment.read_text())["optimizer"]["lr"] == 1.0
    run = run_cli([f"hydra.searchpath=[file://{tmp_path}]", "experiment=search_test_grid", f"data.root={data_root}",
                   "tracking=off", "trainer.progress=false", f"hydra.run.dir={tmp_path / 'rerun'}"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rerun = json.loads((tmp_path / "rerun" / "result.json").read_text())
    assert rerun["val_accuracy"] == pytest.approx(best.value, abs=0)


def test_trials_and_the_retrain_are_named_for_what_they_are_and_linked_both_ways(search_setup, mlflow_uri, tmp_path):
    rates = [0.05, 1.0, 0.3]
    user = ["trainer.epochs=2", "regularization=l2", "search.n_trials=3", "optimizer.lr=9"]  # as typed
    base, search = search_setup(*grid(tmp_path, rates), "search.n_trials=3", "trainer.epochs=2", "regularization=l2")
    run_study(base, search, tmp_path / "out", overrides=user)
    study = study_of(search, tmp_path)
    parent, runs = children(mlflow_uri)
    by_role = {role: [r for r in runs if r.data.tags.get("mlplab.role") == role] for role in ("trial", "retrain")}
    assert len(by_role["trial"]) == 3 and len(by_role["retrain"]) == 1
    for trial in study.trials:
        (run,) = [r for r in by_role["trial"] if r.data.tags["trial_number"] == str(trial.number)]
        lr = trial.params["optimizer.lr"]
        assert run.info.run_name == f"trial {trial.number} · lr={lr:.3g}"
        # the user's overrides, less the search's own keys and the one the trial sets, then the trial's value
        assert run.data.tags["overrides"] == f"trainer.epochs=2 regularization=l2 optimizer.lr={lr}"
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id  # optuna-dashboard shows the way back
    (retrain,) = by_role["retrain"]
    best = study.best_trial
    assert retrain.info.run_name == f"best of test_grid (trial {best.number}, retrained)"
    assert retrain.data.tags["retrain_of_trial"] == str(best.number) and "trial_number" not in retrain.data.tags
    assert study.metric_names == ["val_accuracy"]

    # The parent: counts as tags, not metrics; best_value stepped by trial number, the best so far at each.
    assert {parent.data.tags[k] for k in ("trials", "complete")} == {"3"} and parent.data.tags["pruned"] == "0"
    assert not {"trials", "complete", "pruned", "fail"} & set(parent.data.metrics)
    values = [t.value for t in sorted(study.trials, key=lambda t: t.number)]
    expected = [(n, max(values[: n + 1])) for n in range(3)]
    history = sorted((m.step, m.value) for m in client_for(mlflow_uri).get_metric_history(parent.info.run_id, "best_value"))
    assert history == expected and parent.data.metrics["best_value"] == best.value


def test_optuna_dashboard_shows_the_metric_by_name_and_each_trials_mlflow_run(search_setup, mlflow_uri, tmp_path):
    """`make dashboard`'s server over a study's storage, read through the HTTP API its pages use."""
    import urllib.request

    from helpers.servers import free_port, http_server

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    base, search = search_setup(*grid(tmp_path, [0.05, 1.0]), "search.n_trials=2", "search.final_test=false",
                                f"search.storage={storage}")
    run_study(base, search, tmp_path / "out")
    _, runs = children(mlflow_uri)
    run_of_trial = {int(r.data.tags["trial_number"]): r.info.run_id for r in runs}
    port = free_port()
    dashboard = CONSOLE_SCRIPT.parent / "optuna-dashboard"
    with http_server([str(dashboard), storage, "--host", "127.0.0.1", "--port", str(port), "--quiet"], port,
                     "/api/studies", tmp_path / "dashboard.log") as url:
        studies = json.load(urllib.request.urlopen(f"{url}/api/studies", timeout=30))["study_summaries"]
        (study,) = [s for s in studies if s["study_name"] == "test_grid"]
        detail = json.load(urllib.request.urlopen(f"{url}/api/studies/{study['study_id']}?after=0", timeout=30))
    assert detail["objective_names"] == ["val_accuracy"]  # not "Objective 0"
    shown = {t["number"]: {a["key"]: a["value"] for a in t["user_attrs"]} for t in detail["trials"]}
    assert {n: attrs["mlflow_run_id"] for n, attrs in shown.items()} == run_of_trial


def _trials_and_runs(storage, study_name, mlflow_uri):
    from mlplab.config import SearchConfig as S
    from mlplab.search.storage import make_storage

    study = optuna.load_study(study_name=study_name, storage=make_storage(S(storage=storage)))
    parent, runs = children(mlflow_uri)
    return study.trials, parent, runs


def test_four_workers_on_a_journal_file_finish_exactly_n_trials(data_root, mlflow_uri, tmp_path):
    journal = tmp_path / "study.journal"
    run = subprocess.run([str(SEARCH_SCRIPT), *tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
                          "tracking.experiment=tests", "search=q2_lr", "search.n_trials=8", "search.workers=4",
                          "search.pruner=none", f"search.storage={journal}", "search.write_experiment=false",
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    trials, parent, runs = _trials_and_runs(str(journal), "q2_lr", mlflow_uri)
    assert len(trials) == 8 and sorted(t.number for t in trials) == list(range(8))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    trial_runs = [r for r in runs if "trial_state" in r.data.tags]  # the retrained best is a child too
    assert sorted(int(r.data.tags["trial_number"]) for r in trial_runs) == list(range(8))
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1


def test_a_continued_study_never_repeats_a_trial(search_setup, tmp_path):
    base, search = search_setup("search=q2_lr", "search.n_trials=3", "search.sampler=random", "search.pruner=none",
                                "search.final_test=false", "tracking=off")
    run_study(base, search, tmp_path / "first")
    first = [t.params["optimizer.lr"] for t in study_of(search, tmp_path).trials]
    search.n_trials = 6
    run_study(base, search, tmp_path / "second")
    rates = [t.params["optimizer.lr"] for t in study_of(search, tmp_path).trials]
    assert rates[:3] == first and len(set(rates)) == 6


@pytest.mark.skipif(server_binaries() is None, reason="PostgreSQL is installed by `make setup` (Debian's postgresql)")
def test_two_processes_share_one_study_through_postgresql(data_root, mlflow_uri, tmp_path):
    with postgres_server() as url:
        command = [str(SEARCH_SCRIPT), *tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
                   "tracking.experiment=tests", "search=q2_lr", "search.n_trials=6", "search.pruner=none",
                   f"search.storage={url}", "search.write_experiment=false", "search.final_test=false"]
        # Started together, as on two machines: each opens the same study and takes trials until there are 6.
        workers = [subprocess.Popen([*command, f"hydra.run.dir={tmp_path / f'worker{i}'}"], cwd=tmp_path,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
        outputs = [w.communicate(timeout=600) for w in workers]
        assert all(w.returncode == 0 for w in workers), outputs
        trials, parent, runs = _trials_and_runs(url, "q2_lr", mlflow_uri)
    assert sorted(t.number for t in trials) == list(range(6))  # exactly n_trials, no duplicates
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == list(range(6))
    worked = [sum(" - trial " in line for line in (out + err).splitlines()) for out, err in outputs]
    assert all(n >= 1 for n in worked), worked  # both processes really took trials


def test_ctrl_c_then_the_same_command_completes_the_study_to_n_trials(data_root, mlflow_uri, tmp_path):
    journal = tmp_path / "study.journal"
    command = [str(SEARCH_SCRIPT), *tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
               "tracking.experiment=tests", "search=q2_lr", "search.n_trials=4", "search.pruner=none",
               "trainer.epochs=50", f"search.storage={journal}", "search.write_experiment=false", "search.final_test=false"]
    process = subprocess.Popen([*command, f"hydra.run.dir={tmp_path / 'first'}"], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client, deadline = MlflowClient(mlflow_uri), time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None and not client.search_runs(
            [e.experiment_id for e in client.search_experiments()], "tags.job_num = '1'"):
        time.sleep(0.05)  # until trial 1's run exists: a signal before it would leave no run to be KILLED
    process.send_signal(signal.SIGINT)
    _, stderr = collect(process, timeout=300)
    assert process.returncode == 130, stderr
    rerun = subprocess.run([*command, "trainer.epochs=2", f"hydra.run.dir={tmp_path / 'second'}"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    trials, parent, runs = _trials_and_runs(str(journal), "q2_lr", mlflow_uri)
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert len(interrupted) == 1 and interrupted[0].state == optuna.trial.TrialState.FAIL
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 4  # the budget, not counting the killed one
    assert parent.info.status == "FINISHED"
    killed = [r for r in runs if r.data.tags.get("status") == "killed"]
    assert len(killed) == 1 and killed[0].info.status == "KILLED"


def test_a_killed_workers_trial_is_failed_and_retried_and_the_study_ends_at_n_trials(data_root, mlflow_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"  # an RDB storage: trials carry heartbeats
    command = [str(SEARCH_SCRIPT), *tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
               "tracking.experiment=tests", "search=q2_lr", "search.n_trials=3",
               "search.pruner=none", f"search.storage={storage}", "search.heartbeat_seconds=1",
               "search.write_experiment=false", "search.final_test=false"]
    killed = signal_when([*command, "trainer.epochs=100000", f"hydra.run.dir={tmp_path / 'first'}"], tmp_path,
                         tmp_path / "first" / "trial_0000", signal.SIGKILL)  # kill -9 in the middle of trial 0
    assert killed.returncode == -signal.SIGKILL
    time.sleep(2.5)  # past the grace period (2 heartbeats) of the dead worker's trial
    again = subprocess.run([*command, "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'second'}"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name="q2_lr", storage=storage).trials
    (stale,) = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == stale.number]
    assert stale.number == 0 and retry.state == optuna.trial.TrialState.COMPLETE and retry.params == stale.params
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 3
    # the dead worker could not end its MLflow runs; the next worker did
    parent, runs = children(mlflow_uri)
    assert parent.info.status == "FINISHED" and all(r.info.status != "RUNNING" for r in runs)
    # (a kill that lands between the trial's folder and its MLflow run, under load, leaves no run to end)
    lost = [r for r in runs if r.data.tags.get("job_num") == "0"]
    # ended by the next process: as its trial was found stale (worker_lost), or its process dead (process_lost)
    assert all(r.info.status == "KILLED" and r.data.tags["status"] in ("worker_lost", "process_lost") for r in lost)
