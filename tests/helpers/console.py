"""Console scripts run as a user runs them: in their own process, optionally signalled mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def script(name: str) -> Path:
    """A console script installed beside the interpreter running the tests."""
    return Path(sys.executable).parent / name


CONSOLE_SCRIPT = script("mlplab-train")


def run_cli(args: list[str], cwd: Path, env_extra: dict | None = None, timeout: float = 300,
            command: str = "mlplab-train") -> subprocess.CompletedProcess:
    """Run a console script (``mlplab-train`` unless ``command`` names another) as a user would, in its own process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [str(script(command)), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def signal_when(command: list[str], cwd: Path, ready: Path, signum: int, timeout: float = 120) -> subprocess.CompletedProcess:
    """Start ``command``, wait until ``ready`` exists (e.g. a first checkpoint), send ``signum``, collect it."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while not ready.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signum)
    stdout, stderr = collect(process, timeout)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def collect(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """``process.communicate``; one still running after ``timeout`` has every thread's stack dumped (SIGUSR1,
    ``interrupts.install``) and is killed — it must not outlive the test — and the test fails with the stacks."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(2)
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"still running {timeout:.0f} s after the signal; its stacks and log:\n"
                             f"{stderr[-12000:]}") from None
