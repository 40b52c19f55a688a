"""A study: Bayesian (and grid, random, QMC) search over training configs with Optuna.

The slides end hyper-parameter tuning with "grid search, Bayesian optimization". A study composes the
training config, samples the keys of ``search.space`` per trial, trains with the trial's values, reports
validation accuracy every epoch so a pruner can stop a hopeless trial at once, and records each trial as a
child MLflow run of one parent run per study. Rerunning the command continues the same study up to
``n_trials``. At the end the best configuration is retrained once, evaluated once on the test set, and
written as a Hydra experiment file.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import optuna
from omegaconf import OmegaConf

from .. import interrupts
from ..errors import ConfigError
from ..figures.study import study_figures
from ..files import write_text
from ..masking import mask_secrets
from ..paths import CONF_DIR
from ..tracking import study as records
from ..tracking.recorder import MlflowRecorder
from ..training.loop import Pruned, train
from ..training.recorder import NoRecorder
from ..training.result import summary_line
from .samplers import make_pruner, make_sampler
from .space import apply, budget, check_space, suggest
from .storage import (INTERRUPTED, WORKER, budget_lock, counted, fail_stale_trials, fail_trials_of, heartbeat,
                      heartbeat_enabled, join, make_storage, storage_url, stored_study_attr, this_worker)

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
log = logging.getLogger("mlplab")
PARENT_ATTR = "mlflow_parent_run_id"  # the study's user attribute naming its MLflow parent run
STOP_GRACE_S = 10  # Ctrl-C / SIGTERM: how long workers get to close their trials before they are killed


@dataclasses.dataclass
class Context:
    """What every worker needs to run trials: picklable, so it crosses into spawned processes."""

    base: Any  # the training config every trial starts from (config.TrainConfig)
    search: Any  # config.SearchConfig
    study_name: str
    out_dir: Path
    parent_run_id: Optional[str]
    deadline: Optional[float]


# ---- one worker's trials -------------------------------------------------------------------------------

def load_study(ctx: Context) -> optuna.Study:
    """Create the study, or load it if it exists. Processes starting together race to create the storage's
    tables and the study itself: the loser sees a duplicate and simply tries again, then loads."""
    for attempt in range(5):
        try:
            return optuna.create_study(storage=make_storage(ctx.search), study_name=ctx.study_name,
                                       sampler=make_sampler(ctx.search),
                                       pruner=make_pruner(ctx.search, ctx.base.trainer.epochs),
                                       direction=ctx.search.direction, load_if_exists=True)
        except (optuna.exceptions.DuplicatedStudyError, ConfigError) as error:
            if attempt == 4 or (isinstance(error, ConfigError) and "Integrity" not in str(error)):
                raise
            time.sleep(0.2 * (attempt + 1))


def next_trial(study: optuna.Study, ctx: Context) -> Optional[optuna.Trial]:
    """A new trial if the budget allows, else None; stale trials of dead workers are failed first."""
    if ctx.deadline is not None and time.time() >= ctx.deadline:
        return None
    if heartbeat_enabled(study):
        fail_stale_trials(study)
        if ctx.parent_run_id:
            failed = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))}
            records.close_lost_trial_runs(ctx.base.tracking, ctx.parent_run_id, failed)
    with budget_lock(storage_url(ctx.search), ctx.study_name):
        if counted(study) >= budget(ctx.search):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "heartbeat is meant for optimize": ``heartbeat`` beats
            return study.ask()


def objective(result, metric: str) -> float:
    return result.val_accuracy if metric == "val_accuracy" else result.history[-1]["val_loss"]


def run_trial(study: optuna.Study, trial: optuna.Trial, ctx: Context) -> None:
    """One trial, told COMPLETE, PRUNED or FAIL whatever happens — also when its sampled values are refused."""
    state, value, overrides, recorder = optuna.trial.TrialState.FAIL, None, [], NoRecorder()

    def report(metrics) -> None:
        value = metrics.val_accuracy if ctx.search.metric == "val_accuracy" else metrics.val_loss
        trial.report(value, metrics.epoch)
        if trial.should_prune():
            raise Pruned(f"pruned by {ctx.search.pruner} after epoch {metrics.epoch} ({ctx.search.metric} {value:.4f})")

    try:
        trial.set_user_attr(WORKER, this_worker())  # so that its death can be pinned on it at once
        values = suggest(trial, ctx.search.space)
        overrides = [f"{k}={v}" for k, v in values.items()]
        cfg = apply(ctx.base, values)
        cfg.trainer.evaluate_test = False  # selection on validation only; the test set waits for the best
        cfg.trainer.checkpoint = False
        if ctx.parent_run_id:
            recorder = MlflowRecorder(cfg, overrides, ctx.parent_run_id, ctx.study_name, trial.number)
        with heartbeat(study, trial, ctx.search.heartbeat_seconds):
            result = train(cfg, ctx.out_dir / f"trial_{trial.number:04d}", quiet=True, on_epoch=report, recorder=recorder)
        if result.status in ("finished", "early_stopped"):
            value = objective(result, ctx.search.metric)
            state = optuna.trial.TrialState.COMPLETE
        else:
            trial.set_user_attr("failure", f"{result.status}: {result.detail}")
        log.info("trial %d %s %s → %s", trial.number, " ".join(overrides), result.status,
                 "n/a" if value is None else f"{value:.4f}")
    except Pruned as pruned:
        state = optuna.trial.TrialState.PRUNED
        log.info("trial %d %s %s", trial.number, " ".join(overrides), pruned)
    except KeyboardInterrupt:
        trial.set_user_attr(INTERRUPTED, True)
        raise
    except Exception as error:  # noqa: BLE001 - a failing trial is recorded and the study goes on
        trial.set_user_attr("failure", f"{type(error).__name__}: {error}")
        log.warning("trial %d %s failed: %s", trial.number, " ".join(overrides), error)
    finally:
        tell(study, trial, value if state == optuna.trial.TrialState.COMPLETE else None, state)
        if recorder.run_id:
            records.tag_trial_run(ctx.base.tracking, recorder.run_id, trial.number, state.name)


def tell(study: optuna.Study, trial: optuna.Trial, value: Optional[float], state) -> None:
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as error:
        # GridSampler calls study.stop() once the grid is used up, which Optuna only allows inside
        # study.optimize; the trial's state is stored before that, and our own budget ends the loop.
        if "Study.stop" not in str(error):
            raise


def worker(ctx: Context) -> None:
    """Run trials until the study has n_trials (or the deadline passes), from a sampler stream of its own."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][worker][%(levelname)s] - %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(ctx)
    number, trials_before = join(study, storage_url(ctx.search), ctx.study_name)
    study.sampler = make_sampler(ctx.search, number, trials_before)
    while (trial := next_trial(study, ctx)) is not None:
        run_trial(study, trial, ctx)


def worker_process(ctx: Context) -> None:
    """A spawned worker: ends quietly (exit 130) when stopped, its running trial told FAIL and its run KILLED."""
    interrupts.install(once=True)
    try:
        worker(ctx)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - one line in the log; the parent says the rest
        log.error("worker %s stopped: %s: %s", this_worker(), type(error).__name__, error)
        sys.exit(1)


def run_workers(ctx: Context, study: optuna.Study) -> None:
    """``search.workers`` processes on this machine. One that dies (kill -9, the OOM killer) has its trial
    failed and its run ended at once; Ctrl-C or SIGTERM stops them all within ``STOP_GRACE_S``."""
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=worker_process, args=(ctx,), name=f"search-worker-{i}")
                 for i in range(ctx.search.workers)]
    for process in processes:
        process.start()
    running = list(processes)
    try:
        while running:
            ended = multiprocessing.connection.wait([p.sentinel for p in running])
            for process in [p for p in running if p.sentinel in ended]:
                process.join()
                running.remove(process)
                if process.exitcode != 0:
                    lost_worker(ctx, study, process)
    except KeyboardInterrupt:
        with interrupts.deferred():  # a second signal must not leave the workers running on their own
            stop_workers(ctx, study, running)
        raise


def stop_workers(ctx: Context, study: optuna.Study, processes: list) -> None:
    for process in processes:
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
        lost_worker(ctx, study, process)


def lost_worker(ctx: Context, study: optuna.Study, process) -> None:
    """A worker's trials still RUNNING after it ended: FAIL, and their MLflow runs KILLED (``worker_lost``)."""
    failed = fail_trials_of(study, this_worker(process.pid))
    if failed:
        log.warning("worker pid %d ended (exit %s) during trial %s: failed, its run ended KILLED", process.pid,
                    process.exitcode, ", ".join(map(str, sorted(failed))))
        if ctx.parent_run_id:
            records.close_lost_trial_runs(ctx.base.tracking, ctx.parent_run_id, failed)


# ---- the study as a whole ------------------------------------------------------------------------------

def open_parent_run(ctx: Context, study: optuna.Study) -> Optional[str]:
    """One MLflow parent run per study, found again when the study is resumed."""
    tracking = ctx.base.tracking
    if tracking.mode == "off":
        return None
    # Processes on several machines may start the same study at once: one of them makes the parent.
    with budget_lock(storage_url(ctx.search), f"{ctx.study_name}.parent"):
        known = stored_study_attr(study, PARENT_ATTR)
        if known:
            return records.reopen(tracking, known).run_id
        run = records.open_study_run(tracking, ctx.study_name, {
            "optuna_study": ctx.study_name, "optuna_storage": mask_secrets(storage_url(ctx.search)),
            "sampler": ctx.search.sampler, "pruner": ctx.search.pruner})
        study.set_user_attr(PARENT_ATTR, run.run_id)
        return run.run_id


def run_study(base, search, out_dir: Path) -> dict[str, Any]:
    """Run ``search`` (a ``config.SearchConfig``) over the training config ``base``: ``search.workers``
    processes on this machine share the study; then the summary (and the best configuration retrained)."""
    check_space(base, search.space)
    if not base.data.validation_size:
        raise ConfigError("data.validation_size=0 leaves a search nothing to choose on: keep a validation split, "
                          "e.g. data.validation_size=10000")
    study_name = search.study_name or search.name
    deadline = time.time() + search.timeout if search.timeout else None
    ctx = Context(base, search, study_name, out_dir, None, deadline)
    study = load_study(ctx)
    ctx.parent_run_id = open_parent_run(ctx, study)
    status = "FAILED"
    try:
        if search.workers == 1:
            worker(ctx)
        else:
            run_workers(ctx, study)
        summary = summarize(study, ctx)
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        records.close_study_run(base.tracking, ctx.parent_run_id, status)


def summarize(study: optuna.Study, ctx: Context) -> dict[str, Any]:
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    summary: dict[str, Any] = {"study": ctx.study_name, "trials": counted(study),
                               **{s.lower(): states.count(s) for s in ("COMPLETE", "PRUNED", "FAIL")}}
    if "COMPLETE" not in states:
        log.warning("no trial completed: nothing to report as best")
        return summary
    best = study.best_trial
    summary.update({"best_trial": best.number, "best_value": best.value, "best_params": best.params})
    best_cfg = apply(ctx.base, best.params)
    if ctx.search.final_test:
        recorder = (MlflowRecorder(best_cfg, [f"{k}={v}" for k, v in best.params.items()], ctx.parent_run_id,
                                   ctx.study_name, best.number) if ctx.parent_run_id else NoRecorder())
        final = train(best_cfg, ctx.out_dir / "best", quiet=True, recorder=recorder)
        summary.update({"best_test_accuracy": final.test_accuracy, "best_retrained_val_accuracy": final.val_accuracy})
        log.info("best configuration retrained once: %s", summary_line(best_cfg, final, ctx.out_dir / "best"))
    if ctx.search.write_experiment:
        summary["experiment_file"] = str(write_experiment(best_cfg, ctx, best))
    if ctx.parent_run_id:
        figures = study_figures(study, list(ctx.search.space), ctx.out_dir / "study-figures")
        records.record_study(records.existing(ctx.base.tracking, ctx.parent_run_id), summary, figures)
    return summary


def write_experiment(cfg, ctx: Context, best: optuna.trial.FrozenTrial) -> Path:
    """conf/experiment/search_<study>.yaml: the whole best training config, for `mlplab-train experiment=…`."""
    node = OmegaConf.structured(cfg)
    node.tracking.uri = None  # the store is the user's choice at rerun time
    node.name = f"search-{ctx.study_name}"
    header = (f"# @package _global_\n# Best of Optuna study {ctx.study_name!r}: trial {best.number}, "
              f"{ctx.search.metric} {best.value:.4f} with {best.params}.\n# Written by mlplab-search; "
              f"rerun with: mlplab-train experiment=search_{ctx.study_name}\n")
    folder = Path(ctx.search.experiment_dir).expanduser() if ctx.search.experiment_dir else CONF_DIR / "experiment"
    return write_text(folder / f"search_{ctx.study_name}.yaml", header + OmegaConf.to_yaml(node))
