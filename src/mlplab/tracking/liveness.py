"""Where each run's process lives, and ending the runs whose process died without closing them.

A process killed outright (``kill -9``, the OOM killer, a pre-empted node) cannot end its MLflow run. Every
run records its host, pid and the pid's start time (so a reused pid is not mistaken for it) and, at each
write, when it was last heard of. The next mlplab command on the same store ends KILLED, tagged
``status=process_lost``, the RUNNING runs of this host whose process is gone; ``mlplab-runs --close-stale``
does it on demand, and with ``--other-hosts-after HOURS`` also ends other hosts' runs not heard of for that
long (a host's processes cannot be seen from another: silence is the only proof there).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Optional

import mlplab.slurm as slurm

HOST, PID, STARTED, ALIVE = "mlplab.host", "mlplab.pid", "mlplab.pid_started", "mlplab.alive_ms"
LOST = "process_lost"
log = logging.getLogger("mlplab")


def process_started(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux), "" where that cannot be read, or None when
    no such process exists."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[19]  # field 22; the name in (…) may hold spaces
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        os.kill(pid, 0)
        return ""
    except ProcessLookupError:
        return None
    except PermissionError:
        return ""


def where_tags() -> dict[str, str]:
    """The tags a run opened (or reopened) by this process carries."""
    pid = os.getpid()
    return {HOST: socket.gethostname(), PID: str(pid), STARTED: process_started(pid) or "", **slurm_tags(), **alive_tag()}


def slurm_tags() -> dict[str, str]:
    """In a SLURM job: its id (``<array job>_<task>`` for an array task), for ``sacct -j`` and ``scancel``, and
    how many times SLURM has requeued it."""
    job = slurm.job_id()
    if job is None:
        return {}
    return {"slurm_job_id": job, **({"slurm_restarts": str(slurm.restarts())} if slurm.restarts() else {})}


def alive_tag() -> dict[str, str]:
    """Written with each of a run's writes: when it was last heard of."""
    return {ALIVE: str(int(time.time() * 1000))}


def is_dead_here(tags: dict[str, str]) -> bool:
    """A run of this host whose process has ended (or whose pid now belongs to a later process)."""
    if tags.get(HOST) != socket.gethostname() or not tags.get(PID, "").isdigit():
        return False
    started = process_started(int(tags[PID]))
    return started is None or bool(started and tags.get(STARTED) and started != tags[STARTED])


@dataclass
class Lost:
    run_id: str
    run_name: str
    host: str
    pid: str


def close_stale(client, other_hosts_after_s: Optional[float] = None) -> list[Lost]:
    """End KILLED (``status=process_lost``) every RUNNING run of the store whose process is proven gone: on this
    host, by its pid; on another host, only when ``other_hosts_after_s`` is given and it has not been heard of
    for that long. Runs without these tags (made by other tools) are left alone."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    now, lost = time.time() * 1000, []
    for run in client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=50000):
        tags = run.data.tags
        if HOST not in tags:
            continue
        if tags[HOST] == socket.gethostname():
            dead = is_dead_here(tags)
        else:
            heard = int(tags[ALIVE]) if tags.get(ALIVE, "").isdigit() else run.info.start_time or 0
            dead = other_hosts_after_s is not None and now - heard > other_hosts_after_s * 1000
        if not dead:
            continue
        from mlflow.entities import RunTag

        detail = (f"process {tags.get(PID)} on {tags[HOST]} ended without closing its run "
                  f"(found by {socket.gethostname()}:{os.getpid()})")
        client.log_batch(run.info.run_id, tags=[RunTag("status", LOST), RunTag("status_detail", detail)])
        client.set_terminated(run.info.run_id, "KILLED")
        lost.append(Lost(run.info.run_id, run.info.run_name or "", tags[HOST], tags.get(PID, "")))
    return lost


@functools.lru_cache(maxsize=8)
def close_stale_once(client) -> None:
    """The automatic clean-up, once per store and process, before its first run opens."""
    lost = close_stale(client)
    if lost:
        log.warning("ended %d run(s) whose process had died, KILLED with status=%s: %s", len(lost), LOST,
                    ", ".join(f"{run.run_id[:8]} (pid {run.pid})" for run in lost))
