"""Every run recorded in a real MLflow store: what it holds, how it ends, sweeps, servers, reruns."""

from __future__ import annotations

import dataclasses
import getpass
import gzip
import hashlib
import json
import math
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

from helpers.configs import tiny_overrides
from helpers.console import CONSOLE_SCRIPT, run_cli, signal_when
from helpers.postgres import postgres_server, server_binaries
from helpers.servers import tracking_server

from mlplab.data.idx import IDX_FILES
from mlplab.nn.model import build as build_model
from mlplab.tracking.recorder import MlflowRecorder
from mlplab.tracking.store import client_for
from mlplab.tracking.run import flatten, git_state, source_name
from mlplab.training.loop import train


def tracked(tiny_config, uri, *overrides):
    return tiny_config("tracking=local", f"tracking.uri={uri}", "tracking.experiment=tests", *overrides)


def record(cfg, out_dir, overrides=(), **kwargs):
    recorder = MlflowRecorder(cfg, list(overrides))
    result = train(cfg, out_dir, recorder=recorder, **kwargs)
    return result, client_for(cfg.tracking.uri).get_run(recorder.run_id)


def metric_history(uri, run_id, key):
    return [(m.step, m.value) for m in sorted(client_for(uri).get_metric_history(run_id, key), key=lambda m: m.step)]


def assert_series(uri, run_id, key, expected: list[tuple[int, float]]):
    got = metric_history(uri, run_id, key)
    assert [step for step, _ in got] == [step for step, _ in expected], key
    assert [value for _, value in got] == pytest.approx([value for _, value in expected], rel=1e-12), key


def test_a_run_records_params_tags_metrics_and_artifacts(tiny_config, mlflow_uri, data_root, tmp_path):
    cfg = tracked(tiny_config, mlflow_uri, "trainer.epochs=2", "trainer.validate_every=300", "optimizer.lr=0.5")
    result, run = record(cfg, tmp_path / "job", overrides=["optimizer.lr=0.5"])

    assert run.info.status == "FINISHED" and run.info.run_name == "784-100-10 sigmoid sgd lr=0.5"
    assert result.mlflow_run_id == run.info.run_id
    assert json.loads((tmp_path / "job" / "result.json").read_text())["mlflow_run_id"] == run.info.run_id
    # params: the whole resolved config, flattened
    assert run.data.params == flatten(dataclasses.asdict(cfg))
    assert run.data.params["optimizer.lr"] == "0.5" and run.data.params["model.sizes"] == "[784, 100, 10]"
    # tags: provenance
    tags = run.data.tags
    sha = hashlib.sha256()
    for name in IDX_FILES:
        with gzip.open(data_root / "FashionMNIST" / "raw" / f"{name}.gz") as packed:  # the files as given, unpacked
            sha.update(packed.read())
    assert tags["dataset"] == "fashion_mnist" and tags["dataset_sha256"] == sha.hexdigest()
    assert tags["overrides"] == "optimizer.lr=0.5" and tags["device"] == "cpu" and tags["status"] == "finished"
    assert tags["torch_version"] == torch.__version__ and tags["git_dirty"] in ("true", "false")
    assert len(tags["git_commit"]) == 40
    # metrics: one value per epoch, equal to the job's own history
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds"):
        source = "seconds" if key == "epoch_seconds" else key
        assert_series(mlflow_uri, run.info.run_id, key, [(h["epoch"], h[source]) for h in result.history])
    assert_series(mlflow_uri, run.info.run_id, "check_val_accuracy",
                  [(c["images_seen"], c["val_accuracy"]) for c in result.validation_checks])
    assert [step for step, _ in metric_history(mlflow_uri, run.info.run_id, "check_val_loss")] == [300, 600, 900, 1200]
    finals = run.data.metrics
    assert finals["test_accuracy"] == pytest.approx(result.test_accuracy)
    assert finals["test_loss"] == pytest.approx(result.test_loss)
    assert finals["final_val_accuracy"] == pytest.approx(result.val_accuracy)
    assert finals["train_seconds"] == pytest.approx(result.train_seconds)
    # artifacts
    names = {a.path for a in client_for(mlflow_uri).list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.yaml", "learning_curves.png", "confusion_matrix.png", "result.json"} <= names
    local = Path(client_for(mlflow_uri).download_artifacts(run.info.run_id, "config.yaml", str(tmp_path)))
    assert "lr: 0.5" in local.read_text()
    for png in ("learning_curves.png", "confusion_matrix.png"):
        data = Path(client_for(mlflow_uri).download_artifacts(run.info.run_id, png, str(tmp_path))).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_logged_model_loads_and_predicts_exactly_what_the_trained_model_predicts(tiny_config, mlflow_uri, tmp_path):
    import mlflow.pytorch

    cfg = tracked(tiny_config, mlflow_uri, "trainer.epochs=2")
    _, run = record(cfg, tmp_path)
    loaded = mlflow.pytorch.load_model(run.data.tags["model_uri"])
    trained = build_model(cfg.model, cfg.loss.name, cfg.regularization.dropout)
    trained.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    x = torch.rand(64, 784)
    with torch.inference_mode():  # the logged model wraps the very network trained (test_served_model.py: the rest)
        assert torch.equal(loaded.net.eval()(x), trained.eval()(x))
    # The logged model carries the run's final metrics (the MLflow UI shows them on the model's page).
    model = client_for(mlflow_uri).get_logged_model(run.data.tags["model_uri"].removeprefix("models:/"))
    linked = {metric.key: metric.value for metric in model.metrics}
    assert linked["test_accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])
    assert linked["final_val_accuracy"] == pytest.approx(run.data.metrics["final_val_accuracy"])
    assert model.source_run_id == run.info.run_id


@pytest.mark.skipif(server_binaries() is None, reason="PostgreSQL is installed by `make setup` (Debian's postgresql)")
def test_a_run_is_recorded_in_a_postgresql_tracking_store(tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow puts a database store's artifacts under ./mlruns
    with postgres_server() as url:
        cfg = tracked(tiny_config, url, "trainer.epochs=2")
        result, run = record(cfg, tmp_path / "run")
        assert run.info.status == "FINISHED"
        assert run.data.metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
        assert metric_history(url, run.info.run_id, "val_accuracy") == [(h["epoch"], h["val_accuracy"]) for h in result.history]
        assert "learning_curves.png" in {a.path for a in client_for(url).list_artifacts(run.info.run_id)}


def test_divergence_ends_the_run_failed_with_the_reason(tiny_config, mlflow_uri, tmp_path):
    cfg = tracked(tiny_config, mlflow_uri, "optimizer=adam", "optimizer.lr=1e30", "model.activation=relu")
    result, run = record(cfg, tmp_path)
    assert result.status == "diverged"
    assert run.info.status == "FAILED" and run.data.tags["status"] == "diverged"
    assert "non-finite cost" in run.data.tags["status_detail"]
    # The weights were thrown to ±inf: the test loss is NaN, which the logged result.json holds as null (strict JSON)
    assert math.isnan(result.test_loss)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    (tmp_path / "download").mkdir()
    logged = client_for(mlflow_uri).download_artifacts(run.info.run_id, "result.json", str(tmp_path / "download"))
    record_ = json.loads(Path(logged).read_text(), parse_constant=refuse)
    assert record_["status"] == "diverged" and record_["test_loss"] is None
    assert record_ == json.loads((tmp_path / "result.json").read_text())  # the job's own file, as it wrote it


def test_an_exception_ends_the_run_failed(tiny_config, mlflow_uri, tmp_path):
    cfg = tracked(tiny_config, mlflow_uri, "model.sizes=[784,30,3]")  # caught once the data is loaded
    recorder = MlflowRecorder(cfg, [])
    with pytest.raises(Exception, match="data has 10 classes"):
        train(cfg, tmp_path, recorder=recorder)
    run = client_for(mlflow_uri).get_run(recorder.run_id)
    assert run.info.status == "FAILED" and "ConfigError" in run.data.tags["status_detail"]


def test_an_interrupt_ends_the_run_killed(tiny_config, mlflow_uri, tmp_path):
    def interrupt(metrics):
        raise KeyboardInterrupt

    cfg = tracked(tiny_config, mlflow_uri, "trainer.epochs=5")
    recorder = MlflowRecorder(cfg, [])
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path, recorder=recorder, on_epoch=interrupt)
    run = client_for(mlflow_uri).get_run(recorder.run_id)
    assert run.info.status == "KILLED" and run.data.tags["status"] == "killed"
    assert len(metric_history(mlflow_uri, recorder.run_id, "val_accuracy")) == 1


def test_a_run_killed_by_sigterm_in_a_subprocess_is_killed_in_mlflow(data_root, mlflow_uri, tmp_path):
    out = tmp_path / "run"
    run = signal_when([str(CONSOLE_SCRIPT), *tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
                       "trainer.epochs=100000", f"hydra.run.dir={out}"], tmp_path, out / "checkpoint.pt", signal.SIGTERM)
    assert run.returncode == 143, run.stderr
    run_id = json.loads((out / "result.json").read_text())["mlflow_run_id"]
    assert client_for(mlflow_uri).get_run(run_id).info.status == "KILLED"


def test_tracking_off_records_nothing(tiny_config, tmp_path):
    result = train(tiny_config(), tmp_path)  # tiny configs run with tracking=off
    assert result.mlflow_run_id is None and not (tmp_path / "mlflow").exists()


def _children(uri, parent_id):
    client = client_for(uri)
    parent = client.get_run(parent_id)
    return client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")


def _sweep_parent(uri, experiment="tests"):
    client = client_for(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([experiment_id], "tags.`mlplab.kind` = 'sweep'")
    return parent


def test_a_two_job_multirun_is_one_parent_with_two_children_and_the_best_recorded(data_root, mlflow_uri, tmp_path):
    run = run_cli(["-m", *tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
                   "tracking.experiment=tests", "optimizer.lr=0.01,3.0", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                  cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    parent = _sweep_parent(mlflow_uri)
    children = _children(mlflow_uri, parent.info.run_id)
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert {c.data.tags["job_num"] for c in children} == {"0", "1"}
    assert all(c.data.tags["sweep_id"] == parent.data.tags["sweep_id"] for c in children)
    best = max(children, key=lambda c: c.data.metrics["final_val_accuracy"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_final_val_accuracy"] == best.data.metrics["final_val_accuracy"]
    assert parent.data.tags["best_overrides"] == best.data.tags["overrides"]
    assert "optimizer.lr=3.0" in parent.data.tags["best_overrides"]
    # the swept key and its values as the parent's params, and a figure of the metric against it
    assert parent.data.tags["swept_keys"] == "optimizer.lr" and parent.data.params == {"swept.optimizer.lr": "0.01, 3.0"}
    figure = Path(client_for(mlflow_uri).download_artifacts(parent.info.run_id, "sweep_final_val_accuracy.png", str(tmp_path)))
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    # and the sweep's last line names its best job, its figures and its run
    job = best.data.tags["job_num"]
    record = json.loads((tmp_path / "sweep" / job / "result.json").read_text())
    assert run.stdout.strip().splitlines()[-1] == (
        f"sweep q2-default: 2 jobs (2 finished); best job {job} (optimizer.lr={best.data.params['optimizer.lr']}): "
        f"val {100 * record['val_accuracy']:.2f}%, test {100 * record['test_accuracy']:.2f}%, MLflow run "
        f"{best.info.run_id} → {tmp_path / 'sweep' / job / 'result.json'}")


def test_two_parallel_jobs_on_one_sqlite_store_lose_nothing(data_root, mlflow_uri, tmp_path):
    run = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *tiny_overrides(data_root),
                   "tracking=local", f"tracking.uri={mlflow_uri}", "tracking.experiment=tests", "trainer.epochs=3",
                   "trainer.validate_every=100", "optimizer.lr=0.5,1.0", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                  cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    parent = _sweep_parent(mlflow_uri)
    children = _children(mlflow_uri, parent.info.run_id)
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    for child in children:
        assert len(metric_history(mlflow_uri, child.info.run_id, "val_accuracy")) == 3
        assert len(metric_history(mlflow_uri, child.info.run_id, "check_val_accuracy")) == 18  # 1800 images / 100


def test_a_failing_job_fails_the_sweep_parent_but_keeps_the_other_jobs(data_root, mlflow_uri, tmp_path):
    run = run_cli(["-m", *tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
                   "tracking.experiment=tests", "optimizer.lr=1.0,-1", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                  cwd=tmp_path)
    assert run.returncode == 2 and "optimizer.lr=-1.0 must be > 0" in run.stderr
    parent = _sweep_parent(mlflow_uri)
    children = _children(mlflow_uri, parent.info.run_id)
    assert parent.info.status == "FAILED" and [c.info.status for c in children] == ["FINISHED"]


@pytest.mark.parametrize("engine", ["autograd", "seed"])
def test_a_diverging_job_is_failed_with_its_reason_and_the_sweep_goes_on(data_root, mlflow_uri, tmp_path, engine):
    run = run_cli(["-m", *tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}", "tracking.experiment=tests",
                   "model.activation=relu", "optimizer.lr=1e30,0.5", f"trainer.engine={engine}", "trainer.epochs=2",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    parent = _sweep_parent(mlflow_uri)
    children = {c.data.params["optimizer.lr"]: c for c in _children(mlflow_uri, parent.info.run_id)}
    diverged, fine = children["1e+30"], children["0.5"]
    assert diverged.info.status == "FAILED" and diverged.data.tags["status"] == "diverged"
    # the first step is finite and throws the weights to ±inf: the second mini-batch (image 50) stops it
    assert diverged.data.tags["status_detail"] == "non-finite cost nan in epoch 1 at image 50"
    assert fine.info.status == "FINISHED" and parent.info.status == "FINISHED"
    assert parent.data.tags["best_run_id"] == fine.info.run_id


def test_mlplab_runs_lists_runs_best_first_within_80_columns_with_what_distinguishes_them(tiny_config, mlflow_uri, tmp_path):
    from mlplab.apps.runs import list_runs

    for lr, l2 in (("0.0123456", "5.0"), ("3.0", "0.0")):
        record(tracked(tiny_config, mlflow_uri, f"optimizer.lr={lr}", f"regularization.l2={l2}",
                       f"tracking.run_name=a very long run name that a user typed to remember lr {lr}"), tmp_path / lr)
    text = list_runs(mlflow_uri, "tests", None, 20, "train").splitlines()
    assert all(len(line) <= 80 for line in text), "\n".join(text)
    assert text[0].split() == ["run", "kind", "status", "val%", "test%", "ep", "sec", "name", "differs"]
    best, other = text[2], text[3]
    # best first; the differing keys by their last part, values to 3 figures; equal keys and noise left out
    assert best.endswith("lr=3 l2=0") and other.endswith("lr=0.0123 l2=5")
    assert "epochs" not in best and "tracking" not in best and "a very long" in best and "…" in best
    finals = sorted((r.data.metrics["final_val_accuracy"] for r in client_for(mlflow_uri).search_runs(
        [client_for(mlflow_uri).get_experiment_by_name("tests").experiment_id])), reverse=True)
    assert best.split()[3] == f"{100 * finals[0]:.1f}" and best.split()[1] == "-"  # rounded; not part of a sweep


def test_mlplab_runs_lists_studies_with_their_trials_and_best_params(search_setup_for_runs, mlflow_uri, tmp_path):
    from mlplab.apps.runs import list_runs

    text = list_runs(mlflow_uri, "tests", None, 20, "study").splitlines()
    assert all(len(line) <= 80 for line in text)
    assert text[0].split() == ["run", "kind", "status", "best", "test%", "trials", "name", "differs"]
    assert len(text) == 4 and {line.split()[5] for line in text[2:]} == {"2"}
    assert "study s0" in text[2] + text[3] and "lr=" in text[2]  # the best params tell the two studies apart
    trials = list_runs(mlflow_uri, "tests", None, 20, "train").splitlines()
    kinds = sorted(" ".join(line.split()[1:3]) for line in trials[2:])
    assert [k for k in kinds if k.startswith("trial")] == ["trial 0", "trial 0", "trial 1", "trial 1"]
    assert len([k for k in kinds if k.startswith("best ")]) == 2  # each study's retrained best


@pytest.fixture
def search_setup_for_runs(data_root, mlflow_uri, tmp_path):
    """Two finished two-trial studies with different learning rates in the test store."""
    from test_search import compose_search, grid

    from mlplab.search.study import run_study

    for name, rates in (("s0", [0.05, 1.0]), ("s1", [0.1, 0.5])):
        base, search = compose_search([*tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
                                       "tracking.experiment=tests", f"search.storage={tmp_path / 'study.journal'}",
                                       f"search.experiment_dir={tmp_path / 'experiment'}", "search.seed=0",
                                       *grid(tmp_path / name, rates), "search.n_trials=2", f"search.study_name={name}"])
        run_study(base, search, tmp_path / name / "out")


def test_a_rerun_from_the_record_reproduces_the_run_exactly(tiny_config, mlflow_uri, tmp_path):
    from mlplab.apps.runs import rerun

    _, run = record(tracked(tiny_config, mlflow_uri, "trainer.epochs=2", "regularization=dropout"), tmp_path / "a")
    report = rerun(mlflow_uri, run.info.run_id, tmp_path / "again")
    assert "(identical)" in report
    (folder,) = (tmp_path / "again").iterdir()
    first, second = (torch.load(p / "model.pt", weights_only=True) for p in (tmp_path / "a", folder))
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.fixture
def mlflow_server(mlflow_uri, tmp_path):
    """`mlflow server` over the test store on a free 127.0.0.1 port, stopped when the test ends."""
    with tracking_server(mlflow_uri, tmp_path / "served-artifacts") as url:
        yield url


def test_runs_are_found_through_a_tracking_servers_rest_api(tiny_config, mlflow_uri, mlflow_server, tmp_path):
    _, local_run = record(tracked(tiny_config, mlflow_uri), tmp_path / "local")  # straight into the store
    server_cfg = tiny_config("tracking=server", f"tracking.uri={mlflow_server}", "tracking.experiment=tests")
    server_result, server_run = record(server_cfg, tmp_path / "served")  # through the server's REST API

    def post(path, body):
        request = urllib.request.Request(f"{mlflow_server}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    with urllib.request.urlopen(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=tests",
                                timeout=10) as response:
        experiment = json.load(response)["experiment"]
    runs = post("runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    found = {r["info"]["run_id"]: r for r in runs}
    assert {local_run.info.run_id, server_run.info.run_id} <= set(found)
    served = found[server_run.info.run_id]
    assert served["info"]["status"] == "FINISHED"
    metrics = {m["key"]: m["value"] for m in served["data"]["metrics"]}
    assert metrics["test_accuracy"] == pytest.approx(server_result.test_accuracy)
    artifacts = json.load(urllib.request.urlopen(
        f"{mlflow_server}/api/2.0/mlflow/artifacts/list?run_id={server_run.info.run_id}", timeout=10))
    assert "learning_curves.png" in {f["path"] for f in artifacts["files"]}
    # What the UI reads for its Source, Created by, Git commit, Description and Datasets fields (all were empty)
    for run in (served, found[local_run.info.run_id]):
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["mlflow.source.name"] == source_name() and tags["mlflow.source.type"] == "LOCAL"
        assert tags["mlflow.user"] == getpass.getuser() and tags["mlflow.source.git.commit"] == git_state()[0]
        assert tags["mlflow.note.content"].startswith("A 784-100-10 sigmoid network (cross_entropy cost, sgd lr=1, "
                                                      "mini-batches of 50) trained on Fashion-MNIST (600 training / "
                                                      "100 validation / 200 test images). It ended finished after 1 of 1 "
                                                      "epochs: validation ")
        (dataset_input,) = run["inputs"]["dataset_inputs"]
        dataset = dataset_input["dataset"]
        assert (dataset["name"], dataset["digest"]) == ("Fashion-MNIST", tags["dataset_sha256"][:36])
        assert json.loads(dataset["profile"]) == {"train": 600, "validation": 100, "test": 200,
                                                  "sha256": tags["dataset_sha256"]}
        assert dataset_input["tags"] == [{"key": "mlflow.data.context", "value": "training"}]


def test_a_runs_source_is_the_command_that_made_it(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/home/me/project/.venv/bin/mlplab-search", "search=q2_lr"])
    assert source_name() == "mlplab-search"


def test_four_processes_training_into_one_new_sqlite_store_lose_no_run_and_no_metric(data_root, tmp_path):
    """Started together on a store that does not exist yet: the schema is created once, every write lands."""
    uri = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    epochs = 4
    processes = [subprocess.Popen([str(CONSOLE_SCRIPT), *tiny_overrides(data_root), "tracking=local", f"tracking.uri={uri}",
                                   "tracking.experiment=crowd", f"trainer.epochs={epochs}", "trainer.validate_every=200",
                                   f"trainer.seed={i}", f"hydra.run.dir={tmp_path / f'job{i}'}"],
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    client = client_for(uri)
    runs = client.search_runs([client.get_experiment_by_name("crowd").experiment_id])
    assert sorted(r.data.params["trainer.seed"] for r in runs) == ["0", "1", "2", "3"]
    for run in runs:
        assert run.info.status == "FINISHED"
        result = json.loads((tmp_path / f"job{run.data.params['trainer.seed']}" / "result.json").read_text())
        assert metric_history(uri, run.info.run_id, "val_accuracy") == [(h["epoch"], h["val_accuracy"]) for h in result["history"]]
        assert len(metric_history(uri, run.info.run_id, "check_val_accuracy")) == len(result["validation_checks"]) > 0


def test_a_store_whose_creation_is_interrupted_is_never_left_half_made(tmp_path, monkeypatch):
    """A worker stopped while MLflow builds a new store's schema must not leave a store no later run can open:
    interrupted, it removes its side file; killed outright (kill -9), it leaves one, which the next run removes."""
    from mlflow.tracking import MlflowClient

    from mlplab.tracking import store as tracking

    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))  # no cached empty store: the schema is migrated
    db = tmp_path / "store" / "mlflow.db"
    real = MlflowClient.search_experiments

    def interrupted_while_migrating(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise KeyboardInterrupt  # the schema is built, the move into place never happens

    monkeypatch.setattr(MlflowClient, "search_experiments", interrupted_while_migrating)
    with pytest.raises(KeyboardInterrupt):
        tracking.client_for(f"sqlite:///{db}")
    assert not db.exists() and not list(db.parent.glob("mlflow.db.partial-*"))
    (db.parent / "mlflow.db.partial-4242-1").write_bytes(b"half a schema")  # what kill -9 mid-migration leaves
    monkeypatch.setattr(MlflowClient, "search_experiments", real)
    client = tracking.client_for(f"sqlite:///{db}")  # the next run builds it afresh
    assert client.get_experiment_by_name("Default") is not None and db.exists()
    assert not list(db.parent.glob("mlflow.db.partial-*"))


def test_a_new_store_starts_as_a_copy_of_the_cached_empty_one_with_its_own_default_experiment(tmp_path, monkeypatch):
    """MLflow's migration of a new sqlite store (~1.6 s) runs once per MLflow version: later new stores copy the
    empty store it made; a cached copy that is not a database is migrated past (and replaced)."""
    import importlib.metadata
    import sqlite3

    from mlplab.tracking import store as tracking

    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    first = tracking.client_for(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    first.create_experiment("only-in-a")
    cached = tmp_path / "cache" / "mlflow-stores" / f"empty-{importlib.metadata.version('mlflow')}.db"
    with sqlite3.connect(cached) as connection:  # marks the cached copy, to see where the next store came from
        connection.execute("UPDATE experiments SET name = 'from-the-cache' WHERE experiment_id = 0")
    second = tracking.client_for(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    (default,) = second.search_experiments()
    assert default.name == "from-the-cache" and default.experiment_id == "0"
    assert default.artifact_location == (tmp_path / "b" / "artifacts" / "0").as_uri()  # beside its own store
    assert second.create_experiment("new-in-b") and second.search_runs([default.experiment_id]) == []
    cached.write_bytes(b"not a database")
    third = tracking.client_for(f"sqlite:///{tmp_path / 'c' / 'mlflow.db'}")
    assert [e.name for e in third.search_experiments()] == ["Default"]  # migrated afresh
    with sqlite3.connect(cached) as connection:  # and cached again
        assert connection.execute("SELECT name FROM experiments").fetchall() == [("Default",)]


def test_a_dataset_input_lost_to_another_runs_insert_is_logged_again_and_never_fails_the_run(tmp_path):
    """Two first jobs of a study on a server logged the same new dataset at once; the loser's insert hit the
    store's unique key and failed its trial (seen in CI). The second try links the row the winner made."""
    from mlplab.tracking.run import TrackedRun

    class Racing:
        def __init__(self, failures):
            self.calls, self.failures = 0, failures

        def log_inputs(self, run_id, datasets):
            self.calls += 1
            if self.calls <= self.failures:
                raise RuntimeError("(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint")

    once = Racing(failures=1)
    TrackedRun(once, "run").log_dataset("Fashion-MNIST", "ab" * 32, tmp_path, {"train": 1})
    assert once.calls == 2
    always = Racing(failures=10)  # a store that never takes it: a warning, the run goes on
    TrackedRun(always, "run").log_dataset("Fashion-MNIST", "ab" * 32, tmp_path, {"train": 1})
    assert always.calls == 3
