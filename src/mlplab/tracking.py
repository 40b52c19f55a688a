"""Recording runs in MLflow.

A training job talks to a ``Recorder`` (the no-op base class when ``tracking=off``); ``MlflowRecorder``
turns its calls into one MLflow run: the flattened config as params, provenance as tags, one
``log_batch`` per epoch (finer values are buffered until then: a sqlite write costs ~2 ms), and at the
end the final metrics, figures, ``result.json`` and the model. Whatever happens, the run is terminated
FINISHED, FAILED or KILLED — never left RUNNING.

A Hydra multirun gets a parent run from ``SweepCallback``; every job's run is its nested child, and the
parent records the best child when the sweep ends. The default store is the project's
``sqlite:///<project>/mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # this harness never phones home

from hydra.experimental.callback import Callback  # noqa: E402

from .cli import CONF_DIR  # noqa: E402
from .config import TrackingConfig, TrainConfig  # noqa: E402
from .masking import mask_secrets  # noqa: E402,F401 - also what tracking's callers import

log = logging.getLogger("mlplab")
PROJECT_ROOT = CONF_DIR.parent
PARENT_RUN_FILE = ".mlflow_parent_run_id"  # written into a sweep's directory for its jobs to find
SELECTION_METRIC = "final_val_accuracy"  # what a sweep's parent ranks its children by
MAX_PARAMS_PER_BATCH, MAX_METRICS_PER_BATCH, MAX_PARAM_CHARS = 100, 1000, 6000  # MLflow's limits
FLUSH_INTERVAL_S = 10.0  # a write costs ~10 ms of MLflow's Python: a short run's epochs go in one batch at its
# end, a long run's reach the UI every 10 s
RUN_STATUS = {"finished": "FINISHED", "early_stopped": "FINISHED", "diverged": "FAILED", "failed": "FAILED",
              "killed": "KILLED", "pruned": "KILLED"}  # a pruned trial was stopped on purpose: tag status=pruned


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message names the fix."""


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"


def resolve_uri(cfg: TrackingConfig) -> str:
    return cfg.uri or default_uri()


def _sqlite_path(uri: str) -> Optional[Path]:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def artifact_location(uri: str) -> Optional[str]:
    """Artifacts beside a sqlite store (``<dir>/artifacts``); a server decides for itself."""
    db = _sqlite_path(uri)
    return (db.parent / "artifacts").as_uri() if db else None


class _RetryingClient:
    """An MlflowClient whose calls wait out sqlite's 'database is locked' (parallel jobs, one file)."""

    ATTEMPTS, FIRST_DELAY_S = 8, 0.05

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args, **kwargs):
            delay = self.FIRST_DELAY_S
            for attempt in range(self.ATTEMPTS):
                try:
                    return attribute(*args, **kwargs)
                except Exception as error:  # noqa: BLE001 - only lock contention is retried
                    if "database is locked" not in str(error) or attempt == self.ATTEMPTS - 1:
                        raise
                    time.sleep(delay)
                    delay *= 2

        return call


@functools.lru_cache(maxsize=8)
def client_for(uri: str) -> _RetryingClient:
    """A client whose store exists: a new sqlite store's schema is created once, under a file lock; a server
    must answer first (MLflow itself retries an unreachable one for ~4 minutes)."""
    from mlflow.tracking import MlflowClient

    db = _sqlite_path(uri)
    if db is None:
        if uri.startswith(("http://", "https://")):
            _check_reachable(uri)
        elif uri.startswith(("postgresql", "mysql", "mssql")):
            _check_database(uri)
        try:
            return _RetryingClient(MlflowClient(uri))
        except Exception as error:  # noqa: BLE001 - MLflow's message lists every scheme it knows, over lines
            raise TrackingError(f"tracking.uri={mask_secrets(uri)} is not a store MLflow can open: use "
                                "sqlite:////absolute/path/mlflow.db, http://host:port, or tracking=off") from error
    # The schema migration of a new store logs at INFO on stderr: the user asked for a run, not for that.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(db.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not db.exists():
                _create_store(db)
            client = MlflowClient(uri)
            client.search_experiments(max_results=1)  # migrates an older schema while we hold the lock
    except OSError as error:
        raise TrackingError(f"cannot write the MLflow store {db} ({error.strerror}): "
                            "fix its permissions or set tracking.uri / tracking=off") from error
    return _RetryingClient(client)


def _create_store(db: Path) -> None:
    """Build the schema in a side file and move it into place: a process killed mid-migration (even by
    kill -9) leaves a stray ``.partial``, never a half-made store every later run would fail on."""
    from mlflow.tracking import MlflowClient

    for stray in db.parent.glob(f"{db.name}.partial-*"):  # left by a creator that was killed (we hold the lock)
        stray.unlink(missing_ok=True)
    # A name never used before: MLflow caches a store per URI, and a cached one would not rebuild the file.
    partial = db.with_name(f"{db.name}.partial-{os.getpid()}-{time.monotonic_ns()}")
    MlflowClient(f"sqlite:///{partial}").search_experiments(max_results=1)
    os.replace(partial, db)


CONNECT_TIMEOUT_S = 10  # a database host that drops packets fails in seconds, not at the kernel's TCP timeout


def engine_options(url: str) -> dict:
    """SQLAlchemy engine options for a storage URL: liveness checks, and libpq's connect_timeout for
    PostgreSQL unless the URL sets its own."""
    options: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql") and "connect_timeout=" not in url:
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return options


def _check_database(uri: str) -> None:
    """One connection, with a timeout: MLflow itself retries an unreachable database for minutes, and waits
    forever on a host that takes the connection and never answers."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, **engine_options(uri))
        try:
            engine.connect().close()
        finally:
            engine.dispose()
    except Exception as error:  # noqa: BLE001 - any failure to connect is the user's URL or server
        raise TrackingError(f"cannot reach the tracking database {mask_secrets(uri)} ({type(error).__name__}): start "
                            "it or fix tracking.uri; tracking=local needs no server") from None


def _check_reachable(uri: str, timeout_s: float = 10) -> None:
    """One request, no retries: any HTTP answer will do, no answer is the user's to fix."""
    import requests

    try:
        requests.head(uri, timeout=timeout_s, allow_redirects=False)
    except requests.exceptions.SSLError:
        return  # it answered; TLS settings (MLFLOW_TRACKING_INSECURE_TLS, …) are MLflow's to apply
    except requests.RequestException as error:
        raise TrackingError(f"cannot reach the MLflow server {mask_secrets(uri)} ({type(error).__name__}): start it "
                            "(`make ui` serves the project's store) or fix tracking.uri; tracking=local needs no server"
                            ) from None


def experiment_id(client: _RetryingClient, name: str, uri: str) -> str:
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri))
    except Exception:  # noqa: BLE001 - another process created it first
        existing = client.get_experiment_by_name(name)
        if existing is None:
            raise
        return existing.experiment_id


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """``{"optimizer": {"lr": 0.1}}`` → ``{"optimizer.lr": "0.1"}``, secrets masked, cut to MLflow's limit."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = mask_secrets(str(value))[:MAX_PARAM_CHARS]
    return flat


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, str]:
    """(commit, "true"/"false" for uncommitted changes to tracked files), or ("unknown", "unknown")."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()

        return git("rev-parse", "HEAD"), str(bool(git("status", "--porcelain", "--untracked-files=no"))).lower()
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"


def run_name(cfg: TrainConfig) -> str:
    if cfg.tracking.run_name:
        return cfg.tracking.run_name
    from .model import layer_string

    return f"{layer_string(cfg.model.sizes)} {cfg.model.activation} {cfg.optimizer.name} lr={cfg.optimizer.lr:g}"


class Recorder:
    """What a training job reports as it goes; this base class records nothing (``tracking=off``)."""

    run_id: Optional[str] = None

    def start(self) -> None: ...

    def on_data(self, splits, device) -> None: ...

    def on_epoch(self, metrics: dict) -> None: ...

    def on_check(self, check: dict) -> None: ...

    def end(self, result, out_dir: Path, net=None, splits=None) -> None: ...


class MlflowRecorder(Recorder):
    def __init__(self, cfg: TrainConfig, overrides: list[str], parent_run_id: Optional[str] = None,
                 sweep_id: Optional[str] = None, job_num: Optional[int] = None):
        self.cfg, self.overrides = cfg, overrides
        self.uri = resolve_uri(cfg.tracking)
        self.parent_run_id, self.sweep_id, self.job_num = parent_run_id, sweep_id, job_num
        self.pending_checks: list[dict] = []  # every-k-images validations since the last epoch ended
        self.pending_metrics: list = []  # written at most every FLUSH_INTERVAL_S, and at the end
        self.last_flush = time.monotonic()

    def start(self) -> None:
        from mlflow.entities import Param
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        import torch

        self.client = client_for(self.uri)
        experiment = experiment_id(self.client, self.cfg.tracking.experiment, self.uri)
        commit, dirty = git_state()
        tags = {"git_commit": commit, "git_dirty": dirty, "overrides": mask_secrets(" ".join(self.overrides)),
                "torch_version": torch.__version__, "mlplab.kind": "train"}
        if self.parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        if self.sweep_id is not None:
            tags.update({"sweep_id": self.sweep_id, "job_num": str(self.job_num)})
        run = self.client.create_run(experiment, run_name=run_name(self.cfg), tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k, v) for k, v in flatten(dataclasses.asdict(self.cfg)).items()]
        for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + MAX_PARAMS_PER_BATCH])

    def on_data(self, splits, device) -> None:
        from mlflow.entities import RunTag

        from .data import checksum

        self.client.log_batch(self.run_id, tags=[
            RunTag("dataset", self.cfg.data.name), RunTag("dataset_sha256", checksum(splits.source)),
            RunTag("dataset_sizes", f"train={len(splits.train)} val={len(splits.validation or [])} test={len(splits.test)}"),
            RunTag("device", str(device))])

    def on_check(self, check: dict) -> None:
        self.pending_checks.append(check)  # buffered with the epoch's metrics

    def on_epoch(self, metrics: dict) -> None:
        from mlflow.entities import Metric

        now, epoch = int(time.time() * 1000), metrics["epoch"]
        self.pending_metrics += [Metric(key, float(metrics[key]), now, epoch)
                                 for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")
                                 if metrics[key] is not None]
        self.pending_metrics.append(Metric("epoch_seconds", float(metrics["seconds"]), now, epoch))
        self.pending_metrics += [Metric(f"slowdown/{key}", value, now, epoch)
                                 for key, value in metrics.get("diagnostics", {}).items()]
        self._flush_checks()
        if time.monotonic() - self.last_flush >= FLUSH_INTERVAL_S:
            self.flush()

    def _flush_checks(self) -> None:
        """Move the every-k-images validations into the metric buffer, stepped by images seen."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for check in self.pending_checks:
            self.pending_metrics += [Metric("check_val_loss", float(check["val_loss"]), now, check["images_seen"]),
                                     Metric("check_val_accuracy", float(check["val_accuracy"]), now, check["images_seen"])]
        self.pending_checks = []

    def flush(self, tags: Sequence = ()) -> None:
        """One synchronous write for everything buffered (and ``tags``). (MLflow's async writer thread
        competes with training for 2 cores and the GIL: it measured ~1.2 s slower over a 30-epoch run.)"""
        metrics, tags, size = self.pending_metrics, list(tags), MAX_METRICS_PER_BATCH - len(tags)  # ≤ 1000 entities
        batches = [metrics[start : start + size] for start in range(0, len(metrics), size)]
        for number, batch in enumerate(batches or ([[]] if tags else [])):
            self.client.log_batch(self.run_id, metrics=batch, tags=tags if number == 0 else [])
        self.pending_metrics, self.last_flush = [], time.monotonic()

    def end(self, result, out_dir: Path, net=None, splits=None) -> None:
        from mlflow.entities import RunTag

        status = RUN_STATUS[result.status]
        tags = [RunTag("status", result.status)]
        if result.detail:
            tags.append(RunTag("status_detail", mask_secrets(result.detail)[:5000]))
        model = None
        try:
            try:
                self._log_artifacts(result, out_dir, net, splits)
                if net is not None and splits is not None and self.cfg.tracking.log_model and status == "FINISHED":
                    model = self._log_model(net, splits)
                    tags.append(RunTag("model_uri", model.model_uri))
            finally:  # the metrics are written whatever became of the artifacts
                self._flush_checks()
                self.pending_metrics += final_metrics(result, model.model_id if model is not None else None)
                self.flush(tags)
        finally:
            self.client.set_terminated(self.run_id, status)  # also when logging failed: never left RUNNING

    def _log_artifacts(self, result, out_dir: Path, net, splits) -> None:
        from omegaconf import OmegaConf

        from . import run_figures

        folder = out_dir / "mlflow"
        folder.mkdir(exist_ok=True)
        config_yaml = mask_secrets(OmegaConf.to_yaml(OmegaConf.structured(self.cfg)))
        (folder / "config.yaml").write_text(config_yaml)
        (folder / "overrides.yaml").write_text(mask_secrets(OmegaConf.to_yaml(OmegaConf.create(list(self.overrides)))))
        (folder / "result.json").write_text(json.dumps(dataclasses.asdict(result), indent=2, default=str))
        title = run_name(self.cfg)
        if self.cfg.tracking.plots and result.history:
            run_figures.learning_curves(result.history, folder / "learning_curves.png", title)
            if result.history[0].get("diagnostics"):
                from . import plots  # matplotlib: imported only where a run asked for diagnostics

                plots.slowdown(result.history, folder / "slowdown.png", title)
        if net is not None and splits is not None and result.status in ("finished", "early_stopped"):
            from .train import predict

            # On the test split only when the run evaluates it: a search trial or a model still being chosen
            # must not look at the test images, so its matrix is drawn on validation.
            split_name, split = ("test", splits.test) if self.cfg.trainer.evaluate_test else ("validation", splits.validation)
            if self.cfg.tracking.plots and split is not None:
                counts = run_figures.confusion_counts(predict(net, split.x), split.y, splits.num_classes)
                run_figures.confusion_matrix(counts, splits.class_names, folder / "confusion_matrix.png", title, split_name)
        self.client.log_artifacts(self.run_id, str(folder))

    def _log_model(self, net, splits):
        """The model, its signature and an input example, with ``mlflow.pytorch.log_model``: given the run's id,
        it needs no run active in MLflow's fluent API (whose start and end cost ~20 ms a run)."""
        import importlib.metadata

        import mlflow
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        net = net.cpu().eval()
        example = splits.test.x[:5].cpu().numpy()
        with torch.inference_mode():
            signature = infer_signature(example, net(torch.from_numpy(example)).numpy())
        mlflow.set_tracking_uri(self.uri)
        # Its warning about pickle is for models from strangers; this one is ours, loaded by our own code.
        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
        # Explicit requirements: inferring them costs ~6 s a model. Pickle format loads with mlplab installed.
        return mlflow.pytorch.log_model(
            net, name="model", run_id=self.run_id, input_example=example, signature=signature,
            serialization_format="pickle", pip_requirements=[f"torch=={importlib.metadata.version('torch')}", "mlplab"])


def final_metrics(result, model_id: Optional[str]) -> list:
    """A run's closing metrics, at step 0. They are the model's too: linked to it here, in the run's last batch.
    (The model is logged before them, so MLflow's own linking, which reads back every metric's history,
    ~30 ms, finds nothing to do.)"""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    finals = {"test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
              SELECTION_METRIC: result.val_accuracy, "best_val_accuracy": result.best_val_accuracy,
              "train_seconds": result.train_seconds, "epochs_run": result.epochs_run}
    return [Metric(key, float(value), now, 0, model_id=model_id) for key, value in finals.items() if _finite(value)]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


# ---- the small apps (mlplab-perceptron, mlplab-gd) -------------------------------------------------------

class AppRun:
    """One MLflow run for a small app: params, metric series in few ``log_batch`` calls, final metrics, tags
    and artifacts. With ``tracking.mode=off`` (or before ``start``) every call records nothing."""

    def __init__(self, tracking: TrackingConfig, name: str, kind: str, overrides: Sequence[str] = ()):
        self.tracking, self.name, self.kind, self.overrides = tracking, name, kind, list(overrides)
        self.run_id: Optional[str] = None
        self.client = None

    def start(self, config) -> None:
        """Create the run and log ``config`` (a dataclass) flattened as params."""
        if self.tracking.mode == "off":
            return
        from mlflow.entities import Param

        import torch

        uri = resolve_uri(self.tracking)
        self.client = client_for(uri)
        commit, dirty = git_state()
        tags = {"git_commit": commit, "git_dirty": dirty, "overrides": mask_secrets(" ".join(self.overrides)),
                "torch_version": torch.__version__, "mlplab.kind": self.kind}
        run = self.client.create_run(experiment_id(self.client, self.tracking.experiment, uri),
                                     run_name=self.tracking.run_name or self.name, tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k, v) for k, v in flatten(dataclasses.asdict(config)).items()]
        for first in range(0, len(params), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[first : first + MAX_PARAMS_PER_BATCH])

    def log_series(self, series: dict[str, Sequence[float]]) -> None:
        """Each key's values as steps 0, 1, 2, …; non-finite values are skipped (MLflow stores them badly)."""
        self.log_metrics({key: dict(enumerate(values)) for key, values in series.items()})

    def log_metrics(self, metrics: dict[str, float | None | dict[int, float]]) -> None:
        """``{key: value}`` at step 0, or ``{key: {step: value}}``; None and non-finite values are left out."""
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = []
        for key, values in metrics.items():
            for step, value in (values.items() if isinstance(values, dict) else [(0, values)]):
                if value is not None and abs(float(value)) != float("inf") and value == value:
                    batch.append(Metric(key, float(value), now, int(step)))
        for first in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[first : first + MAX_METRICS_PER_BATCH])

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.run_id is not None:
            from mlflow.entities import RunTag

            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_artifact(self, path: Path) -> None:
        if self.run_id is not None:
            self.client.log_artifact(self.run_id, str(path))

    def terminate(self, status: str) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status)


@contextlib.contextmanager
def recorded_run(tracking: TrackingConfig, name: str, kind: str, config, overrides: Sequence[str] = ()) -> Iterator[AppRun]:
    """An ``AppRun`` that is always terminated: FINISHED, FAILED on an exception, KILLED on Ctrl-C / SIGTERM."""
    run = AppRun(tracking, name, kind, overrides)
    status = "FAILED"
    try:
        run.start(config)
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        run.terminate(status)


def recorder_for(cfg: TrainConfig, overrides: list[str], sweep_dir: Optional[Path] = None,
                 job_num: Optional[int] = None) -> Recorder:
    """The recorder a job's config asks for; in a sweep, its run becomes the sweep's child."""
    if cfg.tracking.mode == "off":
        return Recorder()
    parent = None
    if sweep_dir is not None and (sweep_dir / PARENT_RUN_FILE).is_file():
        parent = (sweep_dir / PARENT_RUN_FILE).read_text().strip()
    return MlflowRecorder(cfg, overrides, parent, str(sweep_dir) if sweep_dir else None, job_num)


# ---- sweeps --------------------------------------------------------------------------------------------

_open_sweeps: list[tuple[str, str]] = []  # (uri, parent run id) of sweeps this process has started


class SweepCallback(Callback):
    """Hydra callback (conf/train.yaml): one parent run per multirun, closed with the best child."""

    def on_multirun_start(self, config, **kwargs) -> None:
        from omegaconf import OmegaConf

        tracking = TrackingConfig(**OmegaConf.to_container(config.tracking, resolve=True))
        if tracking.mode == "off":
            return
        uri = resolve_uri(tracking)
        client = client_for(uri)
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        overrides = mask_secrets(" ".join(config.hydra.overrides.task))
        run = client.create_run(experiment_id(client, tracking.experiment, uri),
                                run_name=f"sweep {config.name}: {overrides}"[:250],
                                tags={"mlplab.kind": "sweep", "sweep_id": str(sweep_dir), "overrides": overrides,
                                      "git_commit": git_state()[0], "git_dirty": git_state()[1]})
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_RUN_FILE).write_text(run.info.run_id)
        _open_sweeps.append((uri, run.info.run_id))

    def on_multirun_end(self, config, **kwargs) -> None:
        close_open_sweeps("FINISHED")


def close_open_sweeps(status: str) -> None:
    """Record each open sweep's best child on its parent run and terminate the parent."""
    while _open_sweeps:
        uri, parent = _open_sweeps.pop()
        client = client_for(uri)
        try:
            summarize_sweep(client, parent)
        finally:
            client.set_terminated(parent, status)


def summarize_sweep(client, parent_run_id: str) -> Optional[Any]:
    from mlflow.entities import Metric, RunTag

    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                  order_by=[f"metrics.{SELECTION_METRIC} DESC"], max_results=5000)
    ranked = [c for c in children if SELECTION_METRIC in c.data.metrics]
    tags = [RunTag("children", str(len(children)))]
    metrics = []
    if ranked:
        best, now = ranked[0], int(time.time() * 1000)
        metrics = [Metric(f"best_{SELECTION_METRIC}", best.data.metrics[SELECTION_METRIC], now, 0)]
        if "test_accuracy" in best.data.metrics:
            metrics.append(Metric("best_test_accuracy", best.data.metrics["test_accuracy"], now, 0))
        tags += [RunTag("best_run_id", best.info.run_id), RunTag("best_run_name", best.info.run_name or ""),
                 RunTag("best_overrides", best.data.tags.get("overrides", ""))]
    client.log_batch(parent_run_id, metrics=metrics, tags=tags)
    return ranked[0] if ranked else None
