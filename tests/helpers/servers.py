"""Servers for tests — MLflow's tracking server, started as users start it (scripts/tracking-server.sh), and
mlplab-serve's model server — each on a free 127.0.0.1 port, stopped (its whole process group) when the test ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "tracking-server.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def http_server(command: list[str], port: int, ready_path: str, log: Path, start_s: float = 120,
                env: dict | None = None) -> Iterator[str]:
    """Start ``command`` in its own process group; yield its URL once ``ready_path`` answers 200; stop the group."""
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + start_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}{ready_path}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{command[0]} did not start: {log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def tracking_server(backend_uri: str, artifacts: Path, start_s: float = 120):
    """MLflow's tracking server over ``backend_uri``; yields its URL once ``/health`` answers."""
    port = free_port()
    return http_server([str(SCRIPT), "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts),
                        "--port", str(port)], port, "/health", artifacts.parent / f"tracking-server-{port}.log", start_s)
