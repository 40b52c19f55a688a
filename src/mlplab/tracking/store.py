"""MLflow stores: which one a config means, a client that waits out sqlite's locks, and a check that a
server or database answers before MLflow's minutes of retries. The default store is the project's
``sqlite:///<project>/mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts`` (MLflow 3 refuses a plain
file store)."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # this harness never phones home

import mlplab.interrupts as interrupts  # noqa: E402
from ..errors import TrackingError, debugging, is_write_failure  # noqa: E402
from ..files import write_atomic  # noqa: E402
from ..masking import mask_secrets  # noqa: E402
from ..paths import MLRUNS, cache_dir  # noqa: E402


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{MLRUNS / 'mlflow.db'}"


def resolve_uri(tracking) -> str:
    """The store a tracking config names (``tracking.uri``), else the default."""
    return tracking.uri or default_uri()


def _sqlite_path(uri: str) -> Optional[Path]:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def artifact_location(uri: str) -> Optional[str]:
    """Artifacts beside a sqlite store (``<dir>/artifacts``); a server decides for itself."""
    db = _sqlite_path(uri)
    return (db.parent / "artifacts").as_uri() if db else None


STORE_FULL = ("database or disk is full", "readonly database", "No space left on device", "disk I/O error")


class RetryingClient:
    """An MlflowClient whose calls wait out sqlite's 'database is locked' (parallel jobs, one file), and whose
    failures to write (a full disk, a read-only store) are one ``TrackingError`` line. On a database store a
    Ctrl-C or SIGTERM waits for the call in progress (milliseconds): raised inside SQLAlchemy's commit it
    could leave a connection holding the database's write lock, and every later write — the KILLED status
    among them — would wait on it. (Not on a server, whose calls MLflow may retry for minutes.)"""

    ATTEMPTS, FIRST_DELAY_S = 8, 0.05

    def __init__(self, client, uri: str = ""):
        self._client, self._uri = client, uri
        self._atomic = interrupts.deferred if uri.startswith(("sqlite", "postgresql", "mysql", "mssql")) else contextlib.nullcontext

    def cannot_write(self, error: BaseException) -> Optional[TrackingError]:
        if is_write_failure(error):
            reason = f"{error.strerror}: {error.filename}" if error.filename else error.strerror
        elif any(text in str(error) for text in STORE_FULL):
            reason = next(text for text in STORE_FULL if text in str(error))
        else:
            return None
        return TrackingError(f"cannot write the MLflow store {mask_secrets(self._uri)} ({reason}): free space or fix "
                             "its permissions, or set tracking.uri elsewhere (tracking=off records nothing)")

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args, **kwargs):
            delay = self.FIRST_DELAY_S
            for attempt in range(self.ATTEMPTS):
                try:
                    with self._atomic():
                        return attribute(*args, **kwargs)
                except Exception as error:  # noqa: BLE001 - only lock contention is retried
                    if (said := self.cannot_write(error)) is not None:
                        raise said from error
                    if "database is locked" not in str(error) or attempt == self.ATTEMPTS - 1:
                        raise
                    time.sleep(delay)
                    delay *= 2

        return call


@functools.lru_cache(maxsize=8)
def client_for(uri: str) -> RetryingClient:
    """A client whose store exists: a new sqlite store's schema is created once, under a file lock; a server
    must answer first (MLflow itself retries an unreachable one for ~4 minutes)."""
    db = _sqlite_path(uri)
    if db is None:  # checked before MLflow is imported (seconds): a server that is not there is said at once
        if uri.startswith(("http://", "https://")):
            _check_reachable(uri)
        elif uri.startswith(("postgresql", "mysql", "mssql")):
            _check_database(uri)
    from mlflow.tracking import MlflowClient

    if db is None:
        quiet_mlflow()
        try:
            return RetryingClient(MlflowClient(uri), uri)
        except Exception as error:  # noqa: BLE001 - MLflow's message lists every scheme it knows, over lines
            raise TrackingError(f"tracking.uri={mask_secrets(uri)} is not a store MLflow can open: use "
                                "sqlite:////absolute/path/mlflow.db, http://host:port, or tracking=off") from error
    quiet_mlflow()
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
    except Exception as error:  # noqa: BLE001 - e.g. sqlite's "file is not a database"
        if "not a database" not in str(error) and "malformed" not in str(error):
            raise
        raise TrackingError(f"{db} is not an MLflow store (sqlite says: file is not a database): point tracking.uri "
                            "(mlplab-runs --uri) at an MLflow sqlite store, or at a new file") from error
    return RetryingClient(client, uri)


def quiet_mlflow() -> None:
    """MLflow logs every failed write at ERROR with its traceback (65–700 lines for a full disk); mlplab says
    it in one line instead. ``MLPLAB_DEBUG=1`` keeps MLflow's own logs."""
    if not debugging():
        logging.getLogger("mlflow").setLevel(logging.CRITICAL)
    # The schema migration of a new store logs at INFO on stderr: the user asked for a run, not for that.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING if debugging() else logging.CRITICAL)


def _create_store(db: Path) -> None:
    """Build the schema in a side file and move it into place: a process killed mid-migration (even by
    kill -9) leaves a stray ``.partial``, never a half-made store every later run would fail on. MLflow's
    migration of a new sqlite store takes ~1.6 s; the empty store it makes is kept in mlplab's cache, one per
    MLflow version, and later new stores start as a copy of it (~10 ms)."""
    import importlib.metadata

    from mlflow.tracking import MlflowClient

    for stray in db.parent.glob(f"{db.name}.partial-*"):  # left by a creator that was killed (we hold the lock)
        stray.unlink(missing_ok=True)
    empty = cache_dir() / "mlflow-stores" / f"empty-{importlib.metadata.version('mlflow')}.db"

    def from_cache(partial: Path) -> None:
        shutil.copyfile(empty, partial)
        _own_default_experiment(partial, db)

    def migrated(partial: Path) -> None:
        # The side file's name is never used twice: MLflow caches a store per URI, and would not rebuild the file.
        MlflowClient(f"sqlite:///{partial}").search_experiments(max_results=1)
        _own_default_experiment(partial, db)

    if empty.is_file():
        try:
            write_atomic(db, from_cache)
            return
        except (OSError, sqlite3.Error):
            pass  # a cached store that cannot be read: migrate as if it were not there
    write_atomic(db, migrated)
    with contextlib.suppress(OSError):  # only a shortcut: a cache that cannot be written costs the migration
        empty.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(empty, lambda partial: shutil.copyfile(db, partial))


def _own_default_experiment(partial: Path, db: Path) -> None:
    """MLflow's "Default" experiment of a new store keeps its artifacts under the creating process's working
    directory; it is put beside the store with the rest (``artifact_location``), dated now."""
    now = int(time.time() * 1000)
    with contextlib.closing(sqlite3.connect(partial)) as connection, connection:
        connection.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                           "WHERE experiment_id = 0", (f"{artifact_location(f'sqlite:///{db}')}/0", now, now))


CONNECT_TIMEOUT_S = 10  # a database host that drops packets fails in seconds, not at the kernel's TCP timeout
CHECK_TIMEOUT_S = 5  # before a run starts: a reachable server answers in milliseconds, so say so soon


def engine_options(url: str, connect_timeout: int = CONNECT_TIMEOUT_S) -> dict:
    """SQLAlchemy engine options for a storage URL: liveness checks, and libpq's connect_timeout for
    PostgreSQL unless the URL sets its own."""
    options: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql") and "connect_timeout=" not in url:
        options["connect_args"] = {"connect_timeout": connect_timeout}
    return options


def _check_database(uri: str) -> None:
    """One connection, with a timeout: MLflow itself retries an unreachable database for minutes, and waits
    forever on a host that takes the connection and never answers."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, **engine_options(uri, CHECK_TIMEOUT_S))
        try:
            engine.connect().close()
        finally:
            engine.dispose()
    except Exception as error:  # noqa: BLE001 - any failure to connect is the user's URL or server
        raise TrackingError(f"cannot reach the tracking database {mask_secrets(uri)} ({type(error).__name__}): start "
                            "it or fix tracking.uri; tracking=local needs no server") from None


def _check_reachable(uri: str, timeout_s: float = CHECK_TIMEOUT_S) -> None:
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


def experiment_id(client: RetryingClient, name: str, uri: str) -> str:
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
