"""mlplab from Python: compose / train / search as the console scripts do them, the README's notebook example,
and a wheel installed elsewhere that carries its configs."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import mlplab
from helpers.configs import tiny_overrides
from helpers.console import run_cli
from mlplab.errors import ConfigError
from mlplab.tracking.store import client_for

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_a_bad_override_in_one_line():
    assert mlplab.__version__ == importlib.metadata.version("mlplab")
    with pytest.raises(ConfigError, match=r"^optimizer.lr=-1.0 must be > 0") as error:
        mlplab.compose("optimizer.lr=-1")
    assert "\n" not in str(error.value)


def test_train_records_its_run_exactly_as_the_console_script_does(data_root, mlflow_uri, tmp_path, capsys):
    overrides = [*tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}", "tracking.experiment=api",
                 "optimizer.lr=0.5"]
    cfg = mlplab.compose(*overrides)
    result = mlplab.train(cfg, tmp_path / "api")
    assert capsys.readouterr().out.strip().endswith(f"· MLflow run {result.mlflow_run_id}")
    cli = run_cli([*overrides, f"hydra.run.dir={tmp_path / 'cli'}"], cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    cli_id = json.loads((tmp_path / "cli" / "result.json").read_text())["mlflow_run_id"]
    client = client_for(mlflow_uri)
    api, by_cli = client.get_run(result.mlflow_run_id), client.get_run(cli_id)
    assert api.data.params == by_cli.data.params  # the same config, key for key
    assert api.data.metrics.keys() == by_cli.data.metrics.keys()
    assert api.data.metrics["final_val_accuracy"] == by_cli.data.metrics["final_val_accuracy"]  # same seed, same run
    same = {"overrides", "status", "mlplab.kind", "dataset", "dataset_sha256", "dataset_sizes", "mlflow.note.content"}
    assert {k: api.data.tags[k] for k in same} == {k: by_cli.data.tags[k] for k in same}
    assert api.info.status == by_cli.info.status == "FINISHED" and api.info.run_name == by_cli.info.run_name


def test_the_readmes_notebook_example_runs_from_another_directory(tmp_path):
    """The README's three lines, as written (real Fashion-MNIST, the default store: the session's throw-away one)."""
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"## From Python: a notebook\n\n```python\n(.*?)```", readme, re.S).group(1)
    assert len(example.strip().splitlines()) == 3
    done = subprocess.run([sys.executable, "-c", example + "print('status', result.status, result.epochs_run)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "status finished 1"
    (record,) = (tmp_path / "outputs").glob("*/*-q2-shallow/result.json")
    assert json.loads(record.read_text())["mlflow_run_id"]
    assert not os.environ["MLFLOW_TRACKING_URI"].startswith(f"sqlite:///{ROOT}")  # the project's store untouched


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_trains_from_another_directory_with_its_own_configs(data_root, tmp_path):
    source = tmp_path / "source"  # built from a copy: setuptools writes build/ beside the sources it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "mlruns", "outputs", "multirun",
                                                                 "build", "dist", "*.egg-info", "__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), "-q"], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("mlplab-*.whl")
    # A fresh venv that sees this environment's packages (torch is large) but not its editable mlplab: a .pth
    # line adds the site folder to sys.path without running the .pth files in it, the editable one among them.
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    site = next((fresh / "lib").glob("python*/site-packages"))
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    (site / "borrowed.pth").write_text(ours + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh / "bin" / "python"), "install",
                                "--no-deps", "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MLPLAB_CONF", "PYTHONPATH")}
    where = subprocess.run([str(fresh / "bin" / "python"), "-c", "import mlplab.paths as p; print(p.CONF_DIR, p.MLRUNS)"],
                           cwd=elsewhere, capture_output=True, text=True, env=env, timeout=120)
    conf_dir, mlruns = where.stdout.split()
    assert Path(conf_dir) == site / "mlplab" / "conf" and Path(mlruns) == elsewhere / "mlruns"
    assert (Path(conf_dir) / "train.yaml").is_file() and (Path(conf_dir) / "experiment" / "nielsen_ch1.yaml").is_file()
    run = subprocess.run([str(fresh / "bin" / "mlplab-train"), *tiny_overrides(data_root), "trainer.epochs=1"],
                         cwd=elsewhere, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (record,) = (elsewhere / "outputs").glob("*/*/result.json")
    assert json.loads(record.read_text())["status"] == "finished"


def test_study_runs_a_search_as_mlplab_search_does_and_returns_its_summary(data_root, mlflow_uri, tmp_path, capsys):
    from test_search import grid

    summary = mlplab.study(*tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
                            "tracking.experiment=api-search", f"search.storage={tmp_path / 'study.journal'}",
                            f"search.experiment_dir={tmp_path / 'experiment'}", *grid(tmp_path, [0.05, 1.0]),
                            "search.n_trials=2", out_dir=tmp_path / "study")
    assert summary["trials"] == 2 and summary["complete"] == 2 and summary["best_params"] == {"optimizer.lr": 1.0}
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        "study test_grid: 2 trials (2 complete, 0 pruned, 0 failed); best val_accuracy")
    client = client_for(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("api-search").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("mlplab.kind") == "study"]
    assert parent.info.status == "FINISHED" and parent.data.tags["trials"] == "2"
    assert sorted(r.data.tags.get("mlplab.role", "") for r in runs) == ["", "retrain", "trial", "trial"]
