"""One MLflow run, whoever opens it (a training job, a small app, a sweep's or a study's parent): provenance
tags and the flattened config as params when it opens, writes batched within MLflow's limits, and a true
status when it closes. A ``TrackedRun`` with no run id records nothing (``tracking=off``)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import getpass
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from ..keys import dotted
from ..masking import mask_secrets
from . import liveness
from ..paths import PROJECT_ROOT
from ..errors import TrackingError
from .store import RetryingClient, client_for, experiment_id, resolve_uri

log = logging.getLogger("mlplab")
MAX_PARAMS_PER_BATCH, MAX_ENTITIES_PER_BATCH, MAX_PARAM_CHARS, MAX_TAG_CHARS = 100, 1000, 6000, 5000  # MLflow's
# A job's status → its MLflow run's. A pruned trial was stopped on purpose: KILLED, tagged status=pruned.
RUN_STATUS = {"finished": "FINISHED", "early_stopped": "FINISHED", "diverged": "FAILED", "failed": "FAILED",
              "killed": "KILLED", "pruned": "KILLED"}


def flatten(config: dict) -> dict[str, str]:
    """``{"optimizer": {"lr": 0.1}}`` → ``{"optimizer.lr": "0.1"}``, secrets masked, cut to MLflow's limit."""
    return {key: mask_secrets(str(value))[:MAX_PARAM_CHARS] for key, value in dotted(config).items()}


NOISY_PARAMS = ("tracking.", "trainer.progress", "trainer.resume", "data.root")  # never what tells runs apart


def distinguishing_params(runs) -> list[str]:
    """The params whose values differ between ``runs`` (MLflow runs), in a stable order."""
    keys = sorted({k for run in runs for k in run.data.params})
    return [k for k in keys if not k.startswith(NOISY_PARAMS)
            and len({run.data.params.get(k) for run in runs}) > 1]


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


def source_name() -> str:
    """The command that made a run, as MLflow's Source column shows it: ``mlplab-train``, ``mlplab-search``, …"""
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] not in ("", "-c") else "python"


def provenance(kind: str, overrides: Optional[Sequence[str]] = None, with_torch: bool = True) -> dict[str, str]:
    """The tags every run carries: what made it (``mlplab.kind``), from which commit, with which overrides; and
    the same in MLflow's own tags, which its UI shows as Source, Git commit and Created by."""
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

    commit, dirty = git_state()
    tags = {"mlplab.kind": kind, "git_commit": commit, "git_dirty": dirty,
            MLFLOW_SOURCE_NAME: source_name(), MLFLOW_SOURCE_TYPE: "LOCAL", MLFLOW_USER: user()}
    if commit != "unknown":
        tags[MLFLOW_GIT_COMMIT] = commit
    if overrides is not None:
        tags["overrides"] = mask_secrets(" ".join(overrides))
    if with_torch:  # runs that train have torch imported already; a sweep's parent need not import it
        import torch

        tags["torch_version"] = torch.__version__
    return tags


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        return f"uid {os.getuid()}"


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def now_ms() -> int:
    return int(time.time() * 1000)


class TrackedRun:
    def __init__(self, client: Optional[RetryingClient] = None, run_id: Optional[str] = None,
                 experiment_id: Optional[str] = None):
        self.client, self.run_id, self._experiment_id = client, run_id, experiment_id

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self.client.get_run(self.run_id).info.experiment_id
        return self._experiment_id

    @classmethod
    def open(cls, tracking, name: str, tags: dict[str, str]) -> "TrackedRun":
        """A new run in ``tracking.experiment`` of the store ``tracking`` names. From here on the caller owns
        it and must close it: whatever it logs next may fail."""
        uri = resolve_uri(tracking)
        client = client_for(uri)
        liveness.close_stale_once(client)
        experiment = experiment_id(client, tracking.experiment, uri)
        run = client.create_run(experiment, run_name=name[:250], tags={**tags, **liveness.where_tags()})
        return cls(client, run.info.run_id, experiment)

    def log_config(self, config: Any) -> None:
        """A config dataclass, flattened, as the run's params."""
        self.log_params(flatten(dataclasses.asdict(config)))

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        entries = [Param(k, v) for k, v in params.items()]
        for first in range(0, len(entries), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=entries[first : first + MAX_PARAMS_PER_BATCH])

    def log_batch(self, metrics: Sequence = (), tags: dict[str, str] | None = None) -> None:
        """``metrics`` (mlflow ``Metric`` entities) and ``tags`` in as few writes as MLflow allows."""
        if self.run_id is None:
            return
        from mlflow.entities import RunTag

        tag_entities = [RunTag(k, mask_secrets(str(v))[:MAX_TAG_CHARS]) for k, v in (tags or {}).items()]
        size = MAX_ENTITIES_PER_BATCH - len(tag_entities)
        batches = [metrics[first : first + size] for first in range(0, len(metrics), size)]
        for number, batch in enumerate(batches or ([[]] if tag_entities else [])):
            self.client.log_batch(self.run_id, metrics=list(batch), tags=tag_entities if number == 0 else [])

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        """``{key: value}`` at step 0, or ``{key: {step: value}}``; None and non-finite values are left out."""
        from mlflow.entities import Metric

        now = now_ms()
        self.log_batch([Metric(key, float(value), now, int(step))
                        for key, values in metrics.items()
                        for step, value in (values.items() if isinstance(values, dict) else [(0, values)])
                        if finite(value)])

    def log_series(self, series: dict[str, Sequence[float]]) -> None:
        """Each key's values as steps 0, 1, 2, …"""
        self.log_metrics({key: dict(enumerate(values)) for key, values in series.items()})

    def log_dataset(self, name: str, sha256: str, source: Path, profile: dict, context: str = "training") -> None:
        """The data as an MLflow dataset input (the UI's Datasets column). MLflow's digest column holds 36
        characters: the SHA-256's first 36 are the digest, the whole of it is in the profile."""
        if self.run_id is None:
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=name, digest=sha256[:36], source_type="local", source=json.dumps({"uri": str(source)}),
                          profile=json.dumps({**profile, "sha256": sha256}))
        inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])]
        for attempt in range(3):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except TrackingError:
                raise  # a full disk or a read-only store: said as for every other write
            except Exception as error:  # noqa: BLE001 - see below
                # Two runs logging the same new dataset at once (a sweep's or a study's first jobs) race to create
                # its row in the experiment: the loser's insert fails on the store's unique key (seen on a server
                # over PostgreSQL), and a second try links the row the winner made.
                if attempt == 2:
                    log.warning("the run's dataset input was not recorded: %s", str(error).splitlines()[0])
                    return
                time.sleep(0.2 * (attempt + 1))

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.log_batch(tags=tags)

    def log_artifact(self, path: Path) -> None:
        if self.run_id is not None:
            self.client.log_artifact(self.run_id, str(path))

    def log_artifacts(self, folder: Path) -> None:
        if self.run_id is not None:
            self.client.log_artifacts(self.run_id, str(folder))

    def close(self, status: str) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status)


def close_running_children(tracking, parent_run_id: str, job_nums: set[int], status: str,
                           tags: dict[str, str]) -> list[str]:
    """The children of ``parent_run_id`` for jobs ``job_nums`` still RUNNING, ended ``status`` with ``tags``:
    for a job whose process was killed outright (kill -9, a cancelled or requeued SLURM job), ended by whoever
    notices. Returns their run ids."""
    client = client_for(resolve_uri(tracking))
    running = client.search_runs([client.get_run(parent_run_id).info.experiment_id],
                                 filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'")
    closed = []
    for run in running:
        if run.data.tags.get("job_num", "").isdigit() and int(run.data.tags["job_num"]) in job_nums:
            lost = TrackedRun(client, run.info.run_id)
            lost.set_tags(tags)
            lost.close(status)
            closed.append(run.info.run_id)
    return closed


@contextlib.contextmanager
def recorded_run(tracking, name: str, kind: str, config, overrides: Sequence[str] = ()) -> Iterator[TrackedRun]:
    """A run for a small app (``tracking.mode=off``: one that records nothing), always closed: FINISHED,
    FAILED on an exception, KILLED on Ctrl-C / SIGTERM."""
    if tracking.mode == "off":
        yield TrackedRun()
        return
    run = TrackedRun.open(tracking, tracking.run_name or name, provenance(kind, overrides))
    status = "FAILED"
    try:
        run.log_config(config)
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        run.close(status)
