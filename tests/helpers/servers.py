"""MLflow's tracking server for tests, started as users start it (scripts/tracking-server.sh) on a free
127.0.0.1 port, and stopped (its whole process group) when the test ends."""

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
def tracking_server(backend_uri: str, artifacts: Path, start_s: float = 120) -> Iterator[str]:
    """Yields the server's URL once ``/health`` answers."""
    port = free_port()
    log = artifacts.parent / f"tracking-server-{port}.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([str(SCRIPT), "--backend-store-uri", backend_uri, "--artifacts-destination",
                                   str(artifacts), "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + start_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError(f"mlflow server did not start: {log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
