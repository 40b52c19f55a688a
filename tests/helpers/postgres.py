"""A throw-away PostgreSQL server for tests: Debian's binaries, a temporary data directory owned by the
postgres user (initdb refuses root), a free port on 127.0.0.1, stopped when the tests end."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def server_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*command: str) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)


@contextmanager
def postgres_server(also: tuple[str, ...] = ()) -> Iterator[str]:
    """Yields a SQLAlchemy URL to a fresh, empty database ``optuna``; ``also``: more empty databases, the same
    URL with their name in place of ``optuna``."""
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError("PostgreSQL server binaries are missing: `make setup` installs Debian's postgresql")
    folder = Path(tempfile.mkdtemp(prefix="mlplab-pg-", dir="/tmp"))
    os.chmod(folder, 0o755)
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    try:
        _as_postgres(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        _as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
                     "-o", f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off", "start")
        try:
            for name in ("optuna", *also):
                _as_postgres(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", name)
            yield f"postgresql://postgres@127.0.0.1:{port}/optuna"  # as users write it: SQLAlchemy's default driver
        finally:
            _as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        for _ in range(3):
            try:
                shutil.rmtree(folder)
                break
            except OSError:
                time.sleep(0.5)
