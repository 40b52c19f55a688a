"""The Assignment 6 command in its fast mode: every section runs, every run ends, the report reads MLflow."""

import re
import sys
from pathlib import Path

import pytest

from mlplab.tracking.store import client_for

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments" / "assignment6"))


@pytest.fixture(scope="module")
def fast_report(data_root, template_store, tmp_path_factory):
    import run as assignment6

    folder = tmp_path_factory.mktemp("assignment6")
    store = folder / "mlflow.db"
    store.write_bytes(template_store.read_bytes())
    uri = f"sqlite:///{store}"
    report = assignment6.main(["--fast", "--data-root", str(data_root), "--tracking-uri", uri,
                               "--optuna-storage", f"sqlite:///{folder / 'optuna.db'}", "--report-dir", str(folder / "report"),
                               "--work-dir", str(folder / "work"), "--set", "data.fraction=1.0", "--set", "data.validation_size=100",
                               "--set", "trainer.batch_size=50"])
    return report, client_for(uri)


def runs(client):
    experiment = client.get_experiment_by_name("assignment6")
    return client.search_runs([experiment.experiment_id], max_results=1000)


def test_every_run_of_the_report_ended_and_none_is_left_running(fast_report):
    _, client = fast_report
    statuses = [run.info.status for run in runs(client)]
    assert len(statuses) >= 25
    assert set(statuses) == {"FINISHED"}


def test_the_test_set_is_touched_only_by_the_chosen_models(fast_report):
    _, client = fast_report
    tested = [run for run in runs(client) if "test_accuracy" in run.data.metrics]
    labels = sorted(run.info.run_name.split(":")[0] for run in tested)
    # Q2's and Q3's chosen models once each, the Optuna study's retrained best, Nielsen's two reproductions
    assert labels.count("q2") == 1 and labels.count("q3") == 1 and labels.count("nielsen") == 2
    chosen = [run for run in tested if run.data.tags.get("assignment6.test_evaluated")]
    assert len(chosen) == 2


def test_report_numbers_and_figures_come_from_the_runs(fast_report):
    report, client = fast_report
    text = report.read_text()
    for link in re.findall(r"\]\((figures/[^)]+)\)", text):
        assert (report.parent / link).is_file(), link
    q2 = [run for run in runs(client) if run.data.tags.get("assignment6.test_evaluated") and run.info.run_name.startswith("q2")][0]
    assert f"**test accuracy {100 * q2.data.metrics['test_accuracy']:.2f} %**" in text
    for question, aim in (("q2", 0.89), ("q3", 0.915)):  # each chosen model's test accuracy against the aim
        chosen = [run for run in runs(client) if run.data.tags.get("assignment6.test_evaluated") and run.info.run_name.startswith(question)][0]
        test = chosen.data.metrics["test_accuracy"]
        assert f"The aim of {100 * aim:.2f} % is {'reached' if test >= aim else 'missed'} ({100 * (test - aim):+.2f} points)." in text
    q1 = [run for run in runs(client) if run.data.tags.get("mlplab.kind") == "gd"][0]
    assert f"**x\\* = {q1.data.metrics['x_star']:.6f}**" in text and "| 0.01 | not reached |" in text
    report_run = [run for run in runs(client) if run.data.tags.get("mlplab.kind") == "assignment6"][0]
    logged = {a.path for a in client.list_artifacts(report_run.info.run_id, "figures")}
    assert logged == {f"figures/{p.name}" for p in (report.parent / "figures").glob("*.png")}
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    for expected in ("Question 1", "The perceptron", "Learning slowdown", "Question 2", "Question 3", "Nielsen"):
        assert any(h.startswith(expected) for h in headings), expected


def test_the_seeds_side_by_side_are_scored_as_the_mean_of_their_outputs(fast_report, data_root):
    import json

    import torch

    from mlplab.data import splits as data_module
    from mlplab.apps.hydra_app import compose
    from mlplab.nn.model import build

    report, client = fast_report
    manifest = json.loads((report.parent.parent / "work" / "manifest.json").read_text())
    merged = [entry for entry in manifest["sections"]["q3"]["runs"] if entry.get("members")][0]
    run = client.get_run(merged["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == manifest["sections"]["q3"]["parent"]
    members = [entry for entry in manifest["sections"]["q3"]["runs"] if entry["run_id"] in merged["members"]]
    assert [entry["label"] for entry in members] == ["all together, seed 0", "all together, seed 1", "all together, seed 2"]
    cfg = compose(members[0]["overrides"])
    validation = data_module.load(cfg.data, torch.device("cpu")).validation
    z = 0
    for entry in members:  # the ensemble computed directly: the mean of the members' z^L
        net = build(cfg.model, cfg.loss.name, 0.0).eval()
        net.load_state_dict(torch.load(f"{entry['out_dir']}/model.pt", weights_only=True))
        with torch.no_grad():
            z = z + net(validation.x) / len(members)
    accuracy = (z.argmax(dim=1) == validation.y).float().mean().item()
    assert run.data.metrics["final_val_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert run.data.metrics["train_seconds"] == pytest.approx(
        sum(client.get_run(entry["run_id"]).data.metrics["train_seconds"] for entry in members))
