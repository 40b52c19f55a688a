"""The logged MLflow model is self-contained: raw pixels in, the run's own standardisation inside, class
probabilities out; loadable without mlplab from any directory, and servable over HTTP by mlplab-serve."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.console import run_cli, script
from helpers.servers import free_port, http_server
from mlplab.nn.classifier import Classifier
from mlplab.nn.model import build as build_model
from mlplab.tracking.recorder import MlflowRecorder
from mlplab.tracking.store import client_for
from mlplab.training.loop import train

SRC = Path(__file__).resolve().parents[1] / "src"

# Run in a fresh interpreter, in another directory, with mlplab's source tree taken off sys.path first.
LOAD_WITHOUT_MLPLAB = r"""
import gzip, importlib.util, json, sys
from pathlib import Path
import numpy as np
src, model_uri, raw = sys.argv[1:4]
sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path(src).resolve()]
assert importlib.util.find_spec("mlplab") is None, "mlplab is importable: this test would prove nothing"
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(model_uri)
with gzip.open(Path(raw) / "t10k-images-idx3-ubyte.gz") as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
with gzip.open(Path(raw) / "t10k-labels-idx1-ubyte.gz") as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8)
probabilities = model.predict(images.astype(np.float32) / 255)
sums = probabilities.sum(axis=1)
print(json.dumps({"accuracy": float((probabilities.argmax(axis=1) == labels).mean()), "images": len(labels),
                  "min_p": float(probabilities.min()), "sum_range": [float(sums.min()), float(sums.max())],
                  "mlplab": sys.modules["mlplab"].__file__, "metadata": model.metadata.metadata}))
"""


@pytest.fixture(scope="module")
def logged(tmp_path_factory, data_root, template_store):
    """One tiny tracked run with a standardised sigmoid network: (cfg, result, run, store URI)."""
    import shutil

    from helpers.configs import compose_config, tiny_overrides

    store = tmp_path_factory.mktemp("served") / "mlruns"
    store.mkdir()
    shutil.copy(template_store, store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    cfg = compose_config(tiny_overrides(data_root) + ["tracking=local", f"tracking.uri={uri}",
                                                      "tracking.experiment=served", "trainer.epochs=2"])
    assert cfg.data.standardize and cfg.model.output == "auto" and cfg.loss.name == "cross_entropy"
    out = store.parent / "job"
    recorder = MlflowRecorder(cfg, [])
    result = train(cfg, out, recorder=recorder)
    return cfg, result, client_for(uri).get_run(recorder.run_id), uri, out


def test_model_loads_without_mlplab_from_another_directory_and_scores_the_runs_test_accuracy_on_raw_pixels(
        logged, data_root, tmp_path):
    cfg, result, run, uri, _ = logged
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    loaded = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_MLPLAB, str(SRC), run.data.tags["model_uri"],
                             str(data_root / "FashionMNIST" / "raw")], cwd=elsewhere, capture_output=True, text=True,
                            timeout=300, env={"MLFLOW_TRACKING_URI": uri, "PATH": "/usr/bin:/bin"})
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    got = json.loads(loaded.stdout.strip().splitlines()[-1])
    # the same images the run was tested on, fed as ordinary pixels/255: the run's own accuracy (within an image)
    assert abs(got["accuracy"] - result.test_accuracy) <= 1 / got["images"] + 1e-12, (got, result.test_accuracy)
    assert got["min_p"] >= 0 and got["sum_range"] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert "code" in Path(got["mlplab"]).parts and not Path(got["mlplab"]).is_relative_to(SRC)  # the shipped copy
    assert got["metadata"]["class_names"][:2] == ["T-shirt/top", "Trouser"] and len(got["metadata"]["class_names"]) == 10
    assert got["metadata"]["standardization"]["std"] != 1.0  # the run standardised, and the model says how


def test_model_is_named_for_its_network_and_requires_only_what_the_registries_have(logged, tmp_path):
    import importlib.metadata

    import mlflow.pyfunc

    _, _, run, uri, _ = logged
    model = client_for(uri).get_logged_model(run.data.tags["model_uri"].removeprefix("models:/"))
    assert model.name == "mlplab-784-100-10-sigmoid"
    requirements = Path(mlflow.pyfunc.get_model_dependencies(run.data.tags["model_uri"])).read_text().split()
    names = {line.split("==")[0] for line in requirements}
    assert f"torch=={importlib.metadata.version('torch').split('+')[0]}" in requirements
    assert "mlflow" in names and not any(name.startswith("mlplab") for name in names), requirements


def test_model_applies_the_runs_standardisation_and_normalises_the_sigmoid_output(logged):
    import mlflow.pytorch

    cfg, _, run, uri, out = logged
    net = build_model(cfg.model, cfg.loss.name, cfg.regularization.dropout)
    net.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    loaded = mlflow.pytorch.load_model(run.data.tags["model_uri"])
    assert isinstance(loaded, Classifier)
    pixels = torch.rand(16, 28, 28)  # (N, 28, 28) is accepted as well as (N, 784)
    mean, std = loaded.mean.item(), loaded.std.item()
    with torch.inference_mode():
        a = torch.sigmoid(net.eval()((pixels.reshape(16, 784) - mean) / std))
        torch.testing.assert_close(loaded(pixels), a / a.sum(dim=1, keepdim=True), rtol=0, atol=0)


def test_softmax_output_gives_the_softmax_and_an_unstandardised_run_stores_mean_0_std_1():
    net = build_model(type("M", (), {"sizes": [784, 5, 3], "activation": "tanh", "output": "softmax",
                                     "leaky_slope": 0.01})(), "log_likelihood", 0.0)
    model = Classifier(net, 0.0, 1.0, ["a", "b", "c"])
    x = torch.rand(4, 784)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), torch.softmax(net(x), dim=1), rtol=0, atol=0)


def test_mlplab_serve_answers_two_posted_images_with_the_models_probabilities(logged, data_root, tmp_path):
    import mlflow.pyfunc

    _, _, run, uri, _ = logged
    with gzip.open(data_root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz") as f:
        two = (np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:2] / 255).astype(np.float32)
    expected = mlflow.pyfunc.load_model(run.data.tags["model_uri"]).predict(two)
    port = free_port()
    with http_server([str(script("mlplab-serve")), run.info.run_id, "--uri", uri, "--port", str(port)], port,
                     "/ping", tmp_path / "serve.log", start_s=180) as url:
        request = urllib.request.Request(f"{url}/invocations", data=json.dumps({"inputs": two.tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    assert np.allclose(np.array(answer["predictions"]), expected, atol=1e-6), answer


def test_mlplab_serve_refuses_a_run_without_a_model_in_one_line(logged, tmp_path):
    _, _, run, uri, _ = logged
    missing = run_cli(["no-such-run", "--uri", uri], cwd=tmp_path, command="mlplab-serve")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no run 'no-such-run'" in missing.stderr and "mlplab-runs" in missing.stderr
