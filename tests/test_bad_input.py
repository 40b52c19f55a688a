"""Every mistake a user can make on the command line, one row each, run through the real console scripts.

The promise for all of them (DESIGN.md, "Habits"): a non-zero exit; one line on stderr that names the problem
and says what to change; no traceback unless ``MLPLAB_DEBUG=1`` asks for one; no MLflow run left RUNNING; no
half-written file; no password echoed. Each row is a process that pays for importing torch (and MLflow and
torchvision when it gets that far), so the selected rows start together in a small pool and each test waits
for its own.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from helpers.configs import compose_config, tiny_overrides
from helpers.console import CONSOLE_SCRIPT
from helpers.idx import N_TRAIN, idx_bytes, synthetic_images, write_idx_gz

SECRET = "secret"  # the password in every URI row that carries one: it must never be printed
WORKERS = 4  # processes at once: mostly import time, so more than the 2 cores still helps
ROW_TIMEOUT_S = 120  # a row still running then is a hang
# An unreachable server or database: the whole command, imports included, with WORKERS rows at once on 2 cores
# (~15 s alone, 30-40 s among them) — against MLflow's own ~4 minutes of retries, or for ever for a silent host.
FAIL_FAST_S = 60
RECORD_FILES = {"config.yaml", "overrides.yaml", "result.json"}  # all a failed run may leave in the artifact store


@dataclass(frozen=True)
class Row:
    id: str
    args: tuple[str, ...]  # overrides on top of the tiny base run; {placeholders} name the module's files
    says: tuple[str, ...]  # what the one line must hold: the key or file at fault, and the fix
    script: str = "mlplab-train"
    debug: bool = False  # also run with MLPLAB_DEBUG=1, which must show the traceback


TRAIN_ROWS = [
    # composition: a group option or key that does not exist
    Row("unknown_group_option", ("optimizer=adamw",),
        ("optimizer=adamw is not an option", "use one of adam, nesterov, sgd, sgdm")),
    Row("misspelt_key", ("optimizer.lrr=0.1",), ("optimizer.lrr is not a config key", "check its spelling"), debug=True),
    Row("appended_unknown_key", ("+model.widht=100",), ("model.widht is not a config key", "check its spelling")),
    # range checks in config.py
    Row("lr_zero", ("optimizer.lr=0",), ("optimizer.lr=0.0 must be > 0", "e.g. optimizer.lr=0.1"), debug=True),
    Row("lr_negative", ("optimizer.lr=-0.5",), ("optimizer.lr=-0.5 must be > 0",)),
    Row("batch_size_zero", ("trainer.batch_size=0",), ("trainer.batch_size=0 must be >= 1",)),
    Row("empty_sizes", ("model.sizes=[]",), ("model.sizes=[] needs at least input and output", "e.g. [784,10]")),
    Row("zero_size", ("model.sizes=[784,0,10]",), ("model.sizes=[784, 0, 10]", "every layer size must be positive")),
    Row("negative_size", ("model.sizes=[784,-30,10]",), ("model.sizes=[784, -30, 10]", "must be positive")),
    Row("dropout_one", ("regularization.dropout=1.0",), ("regularization.dropout=1.0 must lie in [0, 1)",)),
    Row("dropout_negative", ("regularization.dropout=-0.1",), ("regularization.dropout=-0.1 must lie in [0, 1)",)),
    Row("unknown_activation", ("model.activation=swish",),
        ("model.activation='swish' is not known", "use one of step, sigmoid")),
    Row("class_out_of_range", ("data.classes=[0,12]",), ("data.classes=[0, 12]", "classes are 0..9")),
    Row("random_shift_negative", ("data.random_shift=-1",), ("data.random_shift=-1 must lie in 0..27",)),
    # checks against the data, after its MLflow run started (which must then end FAILED)
    Row("batch_larger_than_data", ("trainer.batch_size=100000",),
        ("trainer.batch_size=100000 exceeds the 600 training images", "lower it")),
    Row("input_size_mismatch", ("model.sizes=[100,30,10]",),
        ("model.sizes starts with 100 but the images have 784 pixels", "use model.sizes=[784,...]")),
    Row("output_size_mismatch", ("model.sizes=[784,30,7]",),
        ("model.sizes ends with 7 but the data has 10 classes", "use model.sizes=[...,10]")),
    Row("resume_other_architecture", ("model.sizes=[784,30,10]", "trainer.resume={checkpoint}"),
        ("trainer.resume={checkpoint} holds a [784, 100, 10] network but model.sizes=[784, 30, 10]",
         "resume with the same model.sizes")),
    # the data files
    Row("empty_data_root", ("data=mnist", "data.root={empty}"),
        ("MNIST not found under {empty} (download disabled)", "put train-images-idx3-ubyte.gz")),
    Row("truncated_gz", ("data.root={truncated}",),
        ("{truncated}/FashionMNIST/raw/train-images-idx3-ubyte.gz", "truncated or corrupt", "replace it"),
        debug=True),
    Row("bad_magic", ("data.root={bad_magic}",),
        ("{bad_magic}/FashionMNIST/raw/train-labels-idx1-ubyte", "not an IDX file", "replace it")),
    Row("count_mismatch", ("data.root={count_mismatch}",),
        ("700 training images but 650 labels", "{count_mismatch}/FashionMNIST/raw", "replace them")),
    # the MLflow store. A fresh store's schema migration must not print its INFO lines either.
    Row("fresh_store_then_missing_data", ("tracking.uri=sqlite:///{fresh_store}", "data=mnist", "data.root={empty}"),
        ("MNIST not found under {empty}",)),
    # Tests run as root, whom chmod does not stop: a store under a regular file fails for anyone.
    Row("unwritable_store", ("tracking.uri=sqlite:///{a_file}/mlruns/mlflow.db",),
        ("cannot write the MLflow store {a_file}/mlruns/mlflow.db", "tracking.uri")),
    Row("malformed_tracking_uri", (f"tracking.uri=notascheme://user:{SECRET}@host/x",),
        ("tracking.uri=notascheme://user:***@host/x", "sqlite:///")),
    Row("relative_sqlite_uri", ("tracking.uri=sqlite:/relative",), ("tracking.uri=sqlite:/relative", "sqlite:///")),
    Row("unreachable_tracking_server", ("tracking=server", f"tracking.uri=http://user:{SECRET}@127.0.0.1:{{closed_port}}"),
        ("cannot reach the MLflow server http://user:***@127.0.0.1:{closed_port}", "tracking.uri")),
    Row("unreachable_tracking_database", (f"tracking.uri=postgresql://user:{SECRET}@127.0.0.1:{{closed_port}}/db",),
        ("cannot reach the tracking database postgresql://user:***@127.0.0.1:{closed_port}/db", "tracking.uri")),
    Row("silent_tracking_database", (f"tracking.uri=postgresql://user:{SECRET}@127.0.0.1:{{silent_port}}/db",),
        ("cannot reach the tracking database postgresql://user:***@127.0.0.1:{silent_port}/db", "tracking.uri")),
    Row("silent_tracking_server", ("tracking=server", f"tracking.uri=http://user:{SECRET}@127.0.0.1:{{silent_port}}"),
        ("cannot reach the MLflow server http://user:***@127.0.0.1:{silent_port}", "tracking.uri")),
]

SEARCH_SPACES = {  # search files a user might write: conf/search/<name>.yaml
    "low_above_high": {"optimizer.lr": {"type": "float", "low": 1.0, "high": 0.1, "log": True}},
    "unknown_key": {"optimizer.learning_rate": {"type": "float", "low": 0.1, "high": 1.0}},
    "unknown_field": {"optimizer.lr": {"type": "float", "low": 0.1, "hi": 1.0}},
}

SEARCH_ROWS = [
    Row("search_malformed_storage", (f"search.storage=notascheme://user:{SECRET}@host/db",),
        ("cannot open the Optuna storage notascheme://user:***@host/db", "check search.storage"), "mlplab-search"),
    Row("search_unreachable_storage", (f"search.storage=postgresql://user:{SECRET}@127.0.0.1:{{closed_port}}/db",),
        ("cannot open the Optuna storage postgresql://user:***@127.0.0.1:{closed_port}/db", "check search.storage"),
        "mlplab-search"),
    Row("search_silent_storage", (f"search.storage=postgresql://user:{SECRET}@127.0.0.1:{{silent_port}}/db",),
        ("cannot open the Optuna storage postgresql://user:***@127.0.0.1:{silent_port}/db", "check search.storage"),
        "mlplab-search"),
    Row("search_low_above_high", ("search=low_above_high",),
        ("search.space.optimizer.lr: low=1.0 > high=0.1", "swap them"), "mlplab-search"),
    Row("search_unknown_key", ("search=unknown_key",),
        ("search.space.optimizer.learning_rate is not a training config key", "check its spelling"), "mlplab-search"),
    Row("search_unknown_field", ("search=unknown_field",),
        ("search.space.optimizer.lr has unknown fields ['hi']", "use ['choices', 'high'"), "mlplab-search"),
    Row("search_zero_trials", ("search.n_trials=0",), ("search.n_trials=0 must be >= 1",), "mlplab-search"),
]

ROWS = TRAIN_ROWS + SEARCH_ROWS


def closed_port() -> int:
    """A local port nothing listens on (bound once by the OS, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A local port that takes connections and never answers, like a host that drops packets."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes the handshakes; nothing ever reads or replies
        yield listener.getsockname()[1]


def corrupted_root(folder: Path, name: str, packed: bytes) -> str:
    """A data root of the synthetic Fashion-MNIST .gz files, but ``<name>.gz`` holds ``packed``."""
    raw = write_idx_gz(folder / "FashionMNIST" / "raw", seed=0)
    (raw / f"{name}.gz").write_bytes(packed)
    return str(folder)


@pytest.fixture(scope="module")
def paths(tmp_path_factory, template_store, data_root, silent_port) -> dict[str, str]:
    """The files the rows name, by placeholder."""
    from mlplab.training.loop import train

    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "store").mkdir()
    shutil.copy(template_store, tmp / "store" / "mlflow.db")
    (tmp / "empty").mkdir()
    (tmp / "a_file").write_text("a regular file where the store's folder should be\n")
    images, labels = synthetic_images(N_TRAIN, seed=0)  # what write_idx_gz(seed=0) writes as the training split
    images_gz = gzip.compress(idx_bytes(images))
    for name, spec in SEARCH_SPACES.items():
        (tmp / "conf" / "search").mkdir(parents=True, exist_ok=True)
        (tmp / "conf" / "search" / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "space": spec}))
    train(compose_config(tiny_overrides(data_root)), tmp / "trained")  # a 784-100-10 checkpoint to resume from
    return {
        "data": str(data_root), "tmp": str(tmp), "store": f"sqlite:///{tmp / 'store' / 'mlflow.db'}",
        "empty": str(tmp / "empty"), "a_file": str(tmp / "a_file"), "conf": str(tmp / "conf"),
        "fresh_store": str(tmp / "fresh" / "mlflow.db"), "checkpoint": str(tmp / "trained" / "checkpoint.pt"),
        "closed_port": str(closed_port()), "silent_port": str(silent_port),
        "truncated": corrupted_root(tmp / "truncated", "train-images-idx3-ubyte", images_gz[: len(images_gz) // 2]),
        "bad_magic": corrupted_root(tmp / "bad_magic", "train-labels-idx1-ubyte",
                                    gzip.compress(b"\xde\xad\xbe\xef" + idx_bytes(labels)[4:])),
        "count_mismatch": corrupted_root(tmp / "count_mismatch", "train-labels-idx1-ubyte",
                                         gzip.compress(idx_bytes(labels[:650]))),
    }


@dataclass
class Outcome:
    process: subprocess.CompletedProcess | None  # None: it still ran after ROW_TIMEOUT_S
    seconds: float
    experiment: str  # the MLflow experiment its runs went to
    job_dir: Path  # Hydra's output directory
    data_root: Path
    store: Path  # the sqlite file of its MLflow store


def run(row: Row, paths: dict[str, str], debug: bool) -> Outcome:
    """The row's overrides on top of a tiny base run, run as conftest.run_cli runs a command."""
    experiment = row.id + ("-debug" if debug else "")
    base = [*tiny_overrides(paths["data"]), "tracking=local", "tracking.uri={store}", f"tracking.experiment={experiment}",
            f"hydra.run.dir={{tmp}}/runs/{experiment}"]
    if row.script == "mlplab-search":
        base += ["hydra.searchpath=[file://{conf}]", "search.n_trials=1", f"search.storage={{tmp}}/studies/{experiment}",
                 "search.experiment_dir={tmp}/experiment"]
    chosen = {key: value.format(**paths) for key, _, value in (arg.partition("=") for arg in [*base, *row.args])}
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "MLPLAB_DEBUG")}
    env.update(PYTHONUNBUFFERED="1", **({"MLPLAB_DEBUG": "1"} if debug else {}))
    started = time.monotonic()
    try:
        process = subprocess.run([str(CONSOLE_SCRIPT.parent / row.script), *(f"{k}={v}" for k, v in chosen.items())],
                                 cwd=paths["tmp"], env=env, capture_output=True, text=True, timeout=ROW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process = None
    uri = chosen["tracking.uri"] if chosen["tracking.uri"].startswith("sqlite:///") else paths["store"]
    return Outcome(process, time.monotonic() - started, experiment, Path(chosen["hydra.run.dir"]), Path(chosen["data.root"]),
                   Path(uri.removeprefix("sqlite:///")))


@pytest.fixture(scope="module")
def outcomes(request, paths):
    """Start every selected row (and its debug run) at once; each test waits for its own."""
    wanted = [(item.callspec.params["row"], item.originalname == "test_debug_mode_shows_the_traceback")
              for item in request.session.items if item.path == request.path and hasattr(item, "callspec")]
    with ThreadPoolExecutor(WORKERS) as pool:
        yield {(row.id, debug): pool.submit(run, row, paths, debug) for row, debug in wanted}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_a_mistake_ends_in_one_line_that_says_what_to_change(row, outcomes, paths):
    outcome = outcomes[row.id, False].result()
    process = outcome.process
    assert process is not None, f"{row.id} still ran after {ROW_TIMEOUT_S} s"
    assert process.returncode != 0
    lines = error_lines(process.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"{row.script}: error: "), process.stderr
    for fragment in row.says:
        assert fragment.format(**paths) in lines[0]
    assert "Traceback" not in process.stderr
    assert SECRET not in process.stdout + process.stderr
    if "_port" in " ".join(row.args):  # nothing answers there: fail in seconds, not after minutes of retries
        assert outcome.seconds < FAIL_FAST_S
    assert_nothing_left_behind(outcome)


@pytest.mark.parametrize("row", [row for row in ROWS if row.debug], ids=[row.id for row in ROWS if row.debug])
def test_debug_mode_shows_the_traceback(row, outcomes):
    outcome = outcomes[row.id, True].result()
    assert outcome.process is not None and outcome.process.returncode != 0
    assert "Traceback (most recent call last)" in outcome.process.stderr
    assert_nothing_left_behind(outcome)


def test_no_row_left_a_run_running_in_any_experiment(outcomes):
    stores = {future.result().store for future in outcomes.values()}  # waits for every row
    for store in (store for store in stores if store.is_file()):
        client = MlflowClient(f"sqlite:///{store}")
        everything = [experiment.experiment_id for experiment in client.search_experiments()]
        running = client.search_runs(everything, "attributes.status = 'RUNNING'")
        assert not running, [(run.info.experiment_id, run.info.run_name) for run in running]


def assert_nothing_left_behind(outcome: Outcome) -> None:
    """The job's result.json (if it got that far) says failed, and its MLflow run ended FAILED keeping only its
    record (config, overrides, result.json); no .partial file in the job directory, data root or store; no
    checkpoint or model. (Rows run at once, so this looks at the row's own experiment; the last test looks at
    every experiment.)"""
    result_file = outcome.job_dir / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {"status": "failed", "mlflow_run_id": None}
    assert result["status"] == "failed"
    runs = []
    if outcome.store.is_file():
        client = MlflowClient(f"sqlite:///{outcome.store}")
        mine = client.get_experiment_by_name(outcome.experiment)
        runs = client.search_runs([mine.experiment_id]) if mine else []
        for run in runs:
            assert run.info.status == "FAILED" and run.data.tags["status"] == "failed"
            assert {a.path for a in client.list_artifacts(run.info.run_id)} <= RECORD_FILES
    assert result["mlflow_run_id"] in {run.info.run_id for run in runs} | {None}
    for folder in (outcome.job_dir, outcome.data_root, outcome.store.parent):
        assert not list(folder.rglob("*.partial")), folder
    assert not (outcome.job_dir / "checkpoint.pt").exists() and not (outcome.job_dir / "model.pt").exists()
