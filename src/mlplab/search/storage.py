"""Optuna storages, and what keeps a study's count honest across processes and hosts: the budget lock
around "count, then ask", heartbeats that let a dead worker's trial be found, and the count itself. This
is the one module that reaches into Optuna's internals (a study's storage, a trial's id).

A storage is sqlite beside the MLflow store by default, a journal file for several processes on one host,
or PostgreSQL for several hosts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

import optuna

import mlplab.slurm as slurm
from ..errors import ConfigError
from ..masking import mask_secrets
from ..paths import MLRUNS
from ..tracking.store import engine_options

INTERRUPTED = "interrupted"  # user attr of a trial stopped by Ctrl-C/SIGTERM: it does not use up the budget
WORKER = "worker"  # user attr: host:pid of the process running the trial


def this_worker(pid: int | None = None) -> str:
    """``host:pid`` of this process, or of the worker process ``pid`` it started on this host; in a SLURM job,
    ``slurm:<job id>``, so that the command that submitted the job can fail its trials should it die."""
    if pid is None and (job := slurm.job_id()) is not None:
        return f"slurm:{job}"
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def fail_trials_of(study: optuna.Study, worker: str, interrupted: bool = False) -> set[int]:
    """FAIL the trials a dead worker (``host:pid``) left RUNNING; their numbers. ``interrupted``: it was stopped
    by Ctrl-C / SIGTERM (killed before it could say so itself): like a trial it ended, it uses no budget."""
    failed = set()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get(WORKER) == worker:
            study._storage.set_trial_user_attr(trial._trial_id, "failure", f"worker {worker} died")
            if interrupted:
                study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            failed.add(trial.number)
    return failed


def default_storage() -> str:
    return f"sqlite:///{MLRUNS / 'optuna.db'}"


def storage_url(cfg) -> str:
    """``search.storage``, else the default."""
    return cfg.storage or default_storage()


def is_journal(url: str) -> bool:
    return not ("://" in url) or url.startswith("journal:")


def make_storage(cfg):
    url = storage_url(cfg)
    if is_journal(url):  # a plain path (or journal:PATH): Optuna's journal file, safe for processes on one host
        path = Path(url.removeprefix("journal:")).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        # Heartbeats let a later run find trials whose worker died, fail them and retry them once.
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=cfg.heartbeat_seconds, grace_period=2 * cfg.heartbeat_seconds,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
            engine_kwargs=engine_options(url))
    except Exception as error:  # noqa: BLE001 - any failure to open it is the user's URL or server
        raise ConfigError(f"cannot open the Optuna storage {mask_secrets(url)} ({type(error).__name__}): "
                          "check search.storage (a path, sqlite:///…, or postgresql://user:pw@host/db)") from error


def counted(study: optuna.Study) -> int:
    """Trials that used up the budget: started ones, except failed ones that were retried or stopped by
    Ctrl-C. (Waiting trials — enqueued, or retries — are taken first by ``ask`` and count once started.)"""
    trials = study.get_trials(deepcopy=False)
    retried = {optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials} - {None}
    return sum(1 for t in trials if t.state != optuna.trial.TrialState.WAITING
               and t.number not in retried and not t.user_attrs.get(INTERRUPTED))


@contextlib.contextmanager
def budget_lock(url: str, study_name: str) -> Iterator[None]:
    """Makes "count the trials, then ask for one" atomic across processes, so a study ends with exactly
    n_trials: an advisory lock in PostgreSQL, a file lock beside a sqlite or journal file."""
    if url.startswith("postgresql"):
        import sqlalchemy

        key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:7], "big")
        engine = _engine(url)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    path = Path(url.removeprefix("sqlite:///").removeprefix("journal:"))
    with open(path.with_name(path.name + f".{study_name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


_engines: dict[str, Any] = {}


def _engine(url: str):
    if url not in _engines:
        import sqlalchemy

        _engines[url] = sqlalchemy.create_engine(url, **engine_options(url))
    return _engines[url]


def heartbeat_enabled(study: optuna.Study) -> bool:
    """RDB storages made by ``make_storage`` (Optuna wraps them in a cache, hence no isinstance check)."""
    get_interval = getattr(study._storage, "get_heartbeat_interval", None)
    return callable(get_interval) and get_interval() is not None


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial, seconds: int) -> Iterator[None]:
    """Record the trial's heartbeat while it runs (RDB storages), as ``study.optimize`` would."""
    storage = study._storage
    if not heartbeat_enabled(study):
        yield
        return
    done = threading.Event()
    # The first beat before any work: a trial that never beat is never found stale, so a worker killed while
    # a background thread was still about to record it would leave its trial RUNNING for good.
    storage.record_heartbeat(trial._trial_id)

    def beat() -> None:
        while not done.wait(seconds):
            storage.record_heartbeat(trial._trial_id)

    thread = threading.Thread(target=beat, daemon=True, name="optuna-heartbeat")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def stored_study_attr(study: optuna.Study, key: str) -> Any:
    """A study's user attribute as the storage holds it now (another process may have set it since)."""
    return study._storage.get_study_user_attrs(study._study_id).get(key)


def join(study: optuna.Study, url: str, study_name: str) -> tuple[int, int]:
    """(this worker's number among all that ever joined the study, on any host or rerun; the trials it held
    then): what a worker's sampler stream is derived from."""
    with budget_lock(url, f"{study_name}.workers"):
        number = stored_study_attr(study, "workers_joined") or 0
        study.set_user_attr("workers_joined", number + 1)
        return number, len(study.get_trials(deepcopy=False))


def fail_stale_trials(study: optuna.Study) -> None:
    """A dead worker's trial (no heartbeat for the grace period): FAIL, and retried once."""
    if heartbeat_enabled(study):
        optuna.storages.fail_stale_trials(study)
