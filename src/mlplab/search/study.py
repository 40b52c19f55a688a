"""A study: Bayesian (and grid, random, QMC) search over training configs with Optuna.

The slides end hyper-parameter tuning with "grid search, Bayesian optimization". A study composes the
training config, samples the keys of ``search.space`` per trial, trains with the trial's values, reports
validation accuracy every epoch so a pruner can stop a hopeless trial at once, and records each trial as a
child MLflow run of one parent run per study. Rerunning the command continues the same study up to
``n_trials``. At the end the best configuration is retrained once, evaluated once on the test set, and
written as a Hydra experiment file.
"""

from __future__ import annotations

import contextlib
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
from typing import Any, Optional, Sequence

import optuna
from omegaconf import OmegaConf

import mlplab.interrupts as interrupts
import mlplab.slurm as slurm
from ..errors import ConfigError
from ..figures.study import study_figures
from ..files import write_text
from ..keys import short_names
from ..masking import MaskingStream, mask_secrets
from ..paths import CONF_DIR
from ..tracking import study as records
from ..tracking.recorder import MlflowRecorder
from ..training.loop import Pruned, train
from ..training.population import groups, population_key, train_population
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
    overrides: list = dataclasses.field(default_factory=list)  # the user's command-line training overrides


# ---- one worker's trials -------------------------------------------------------------------------------

def load_study(ctx: Context) -> optuna.Study:
    """Create the study, or load it if it exists. Processes starting together race to create the storage's
    tables and the study itself: the loser sees a duplicate and simply tries again, then loads."""
    for attempt in range(5):
        try:
            study = optuna.create_study(storage=make_storage(ctx.search), study_name=ctx.study_name,
                                       sampler=make_sampler(ctx.search),
                                       pruner=make_pruner(ctx.search, ctx.base.trainer.epochs),
                                       direction=ctx.search.direction, load_if_exists=True)
            if study.metric_names is None:  # optuna-dashboard then says "val_accuracy", not "Objective 0"
                study.set_metric_names([ctx.search.metric])
            return study
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


@dataclasses.dataclass
class TrialJob:
    """A trial with its sampled config, on its way to being trained and told."""

    trial: optuna.Trial
    cfg: Any = None
    overrides: list = dataclasses.field(default_factory=list)
    recorder: Any = dataclasses.field(default_factory=NoRecorder)
    state: Any = optuna.trial.TrialState.FAIL
    value: Optional[float] = None

    @property
    def out_dir_name(self) -> str:
        return f"trial_{self.trial.number:04d}"


def start_trial(trial: optuna.Trial, ctx: Context) -> TrialJob:
    """The trial's values sampled and applied (a refused value raises: the trial then fails)."""
    job = TrialJob(trial)
    trial.set_user_attr(WORKER, this_worker())  # so that its death can be pinned on it at once
    values = suggest(trial, ctx.search.space)
    job.overrides = [f"{k}={v}" for k, v in values.items()]
    job.cfg = apply(ctx.base, values)
    job.cfg.trainer.evaluate_test = False  # selection on validation only; the test set waits for the best
    job.cfg.trainer.checkpoint = False
    if ctx.parent_run_id:
        job.recorder = MlflowRecorder(job.cfg, with_user_overrides(ctx.overrides, job.overrides), ctx.parent_run_id,
                                      ctx.study_name, trial.number, name=trial_run_name(trial.number, values),
                                      tags={"mlplab.role": "trial", "trial_number": str(trial.number)})
    return job


def trial_run_name(number: int, values: dict[str, Any]) -> str:
    """``trial 3 · lr=0.25 width=500``: each key by its last part (unless two share it), numbers in 3 figures."""
    shown = short_names(list(values))
    return f"trial {number} · " + " ".join(
        f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}" for name, value in zip(shown, values.values()))


def with_user_overrides(user: list[str], trial: list[str]) -> list[str]:
    """What trained a trial, as one command line: the user's overrides, then the trial's values (which win)."""
    keys = {item.split("=", 1)[0] for item in trial}
    return [item for item in user if item.split("=", 1)[0].lstrip("+~") not in keys] + trial


def pruning_report(trial: optuna.Trial, ctx: Context):
    """The epoch-end callback that reports the metric to Optuna and raises ``Pruned`` when it says so."""
    def report(metrics) -> None:
        value = metrics.val_accuracy if ctx.search.metric == "val_accuracy" else metrics.val_loss
        trial.report(value, metrics.epoch)
        if trial.should_prune():
            raise Pruned(f"pruned by {ctx.search.pruner} after epoch {metrics.epoch} ({ctx.search.metric} {value:.4f})")

    return report


def judge(job: TrialJob, result, ctx: Context) -> None:
    """The state and value a trained trial is told: COMPLETE with its metric, PRUNED, or FAIL with why."""
    if result.status in ("finished", "early_stopped"):
        job.value, job.state = objective(result, ctx.search.metric), optuna.trial.TrialState.COMPLETE
    elif result.status == "pruned":
        job.state = optuna.trial.TrialState.PRUNED
    else:
        job.trial.set_user_attr("failure", f"{result.status}: {result.detail}")
    log.info("trial %d %s %s → %s", job.trial.number, " ".join(job.overrides), result.status,
             "n/a" if job.value is None else f"{job.value:.4f}")


def finish_trial(study: optuna.Study, job: TrialJob, ctx: Context) -> None:
    # The trial's link to its run and its ending are written together: a signal waits for both (milliseconds),
    # and a link that cannot be written never keeps the trial from being told.
    with interrupts.deferred():
        if job.recorder.run_id:  # optuna-dashboard shows it beside the trial: the way back to its MLflow run
            try:
                job.trial.set_user_attr("mlflow_run_id", job.recorder.run_id)
            except Exception as error:  # noqa: BLE001 - the ending below is what must be written
                log.warning("trial %d: its MLflow run id was not stored: %s", job.trial.number, error)
        tell(study, job.trial, job.value if job.state == optuna.trial.TrialState.COMPLETE else None, job.state)
    if job.recorder.run_id:
        records.tag_trial_run(ctx.base.tracking, job.recorder.run_id, job.trial.number, job.state.name)


def failed(job: TrialJob, error: BaseException) -> None:
    """A trial that raised: interrupted (and re-raised by the caller) or failed with the error's line."""
    if isinstance(error, KeyboardInterrupt):
        job.trial.set_user_attr(INTERRUPTED, True)
        return
    job.trial.set_user_attr("failure", f"{type(error).__name__}: {error}")
    log.warning("trial %d %s failed: %s", job.trial.number, " ".join(job.overrides), error)


def run_trial(study: optuna.Study, trial: optuna.Trial, ctx: Context) -> None:
    """One trial, told COMPLETE, PRUNED or FAIL whatever happens — also when its sampled values are refused."""
    job = start_or_fail(study, trial, ctx)
    if job is not None:
        run_trial_job(study, job, ctx)


def start_or_fail(study: optuna.Study, trial: optuna.Trial, ctx: Context) -> Optional[TrialJob]:
    """``start_trial``, or the trial told FAIL (its values refused) and None."""
    try:
        return start_trial(trial, ctx)
    except BaseException as error:  # noqa: BLE001 - refused values fail this trial only
        job = TrialJob(trial)
        failed(job, error)
        finish_trial(study, job, ctx)
        if isinstance(error, KeyboardInterrupt):
            raise
        return None


def run_trials(study: optuna.Study, trials: list[optuna.Trial], ctx: Context) -> None:
    """``search.batch`` trials at once: those whose configs share a population train as one (each pruned on
    its own), the others one after another; each told COMPLETE, PRUNED or FAIL whatever happens."""
    jobs: list[TrialJob] = []
    try:
        for trial in trials:
            job = start_or_fail(study, trial, ctx)
            if job is not None:
                jobs.append(job)
        jobs_started = list(jobs)  # ``jobs`` shrinks as each is told
        for rows in groups([population_key(job.cfg) for job in jobs], ctx.search.batch):
            group = [jobs_started[row] for row in rows]
            if len(group) == 1:
                jobs.remove(group[0])
                run_trial_job(study, group[0], ctx)
                continue
            for member, job in enumerate(group):
                if isinstance(job.recorder, MlflowRecorder):  # not started yet: its run opens with these tags
                    job.recorder.tags.update({"population": f"{ctx.study_name}:" + ",".join(str(j.trial.number) for j in group),
                                              "population_size": str(len(group)), "population_member": str(member)})
            with contextlib.ExitStack() as beats:
                for job in group:
                    beats.enter_context(heartbeat(study, job.trial, ctx.search.heartbeat_seconds))
                members = train_population([job.cfg for job in group], [ctx.out_dir / job.out_dir_name for job in group],
                                           recorders=[job.recorder for job in group],
                                           callbacks=[pruning_report(job.trial, ctx) for job in group])
            for job, member in zip(group, members):
                judge(job, member.result, ctx)
                if member.error is not None:
                    failed(job, member.error)
                jobs.remove(job)
                finish_trial(study, job, ctx)
    except BaseException as error:
        for job in jobs:  # those not yet told: interrupted, or failed by what stopped their population
            failed(job, error)
            finish_trial(study, job, ctx)
        if isinstance(error, KeyboardInterrupt):
            raise
        log.warning("a population of trials failed: %s: %s", type(error).__name__, error)


def run_trial_job(study: optuna.Study, job: TrialJob, ctx: Context) -> None:
    """``run_trial`` for a trial already started."""
    try:
        with heartbeat(study, job.trial, ctx.search.heartbeat_seconds):
            result = train(job.cfg, ctx.out_dir / job.out_dir_name, quiet=True,
                           on_epoch=pruning_report(job.trial, ctx), recorder=job.recorder)
        judge(job, result, ctx)
    except Pruned as pruned:
        job.state = optuna.trial.TrialState.PRUNED
        log.info("trial %d %s %s", job.trial.number, " ".join(job.overrides), pruned)
    except BaseException as error:  # noqa: BLE001 - a failing trial is recorded and the study goes on
        failed(job, error)
        if isinstance(error, KeyboardInterrupt):
            raise
    finally:
        finish_trial(study, job, ctx)


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
    while trials := next_trials(study, ctx):
        if len(trials) == 1:
            run_trial(study, trials[0], ctx)
        else:
            run_trials(study, trials, ctx)


def next_trials(study: optuna.Study, ctx: Context) -> list[optuna.Trial]:
    """Up to ``search.batch`` new trials, as the budget allows: asked one after another, each sampled with the
    ones before it pending (TPE's constant liar keeps them apart)."""
    trials: list[optuna.Trial] = []
    while len(trials) < ctx.search.batch and (trial := next_trial(study, ctx)) is not None:
        trials.append(trial)
    return trials


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
        lost_worker(ctx, study, process, interrupted=True)


def lost_worker(ctx: Context, study: optuna.Study, process, interrupted: bool = False) -> None:
    """A worker's trials still RUNNING after it ended: FAIL, and their MLflow runs KILLED (``worker_lost``)."""
    fail_lost_trials(ctx, study, this_worker(process.pid), f"worker pid {process.pid} ended (exit {process.exitcode})",
                     interrupted)


def fail_lost_trials(ctx: Context, study: optuna.Study, worker: str, how: str, interrupted: bool = False) -> None:
    failed = fail_trials_of(study, worker, interrupted)
    if failed:
        log.warning("%s during trial %s: failed, its run ended KILLED", how, ", ".join(map(str, sorted(failed))))
        if ctx.parent_run_id:
            records.close_lost_trial_runs(ctx.base.tracking, ctx.parent_run_id, failed)


# ---- workers as SLURM jobs -----------------------------------------------------------------------------

def slurm_worker(ctx: Context) -> None:
    """A worker as a SLURM job: trials until the study has n_trials; ``scancel`` (SIGTERM) fails its running
    trial, interrupted (not counted), and ends its run KILLED."""
    interrupts.install(once=True)
    sys.stdout, sys.stderr = MaskingStream(sys.stdout), MaskingStream(sys.stderr)  # the job's log
    worker(ctx)


def run_slurm_workers(ctx: Context, study: optuna.Study) -> None:
    """``search.workers`` SLURM jobs (one array) share the study through its storage and the MLflow store, both
    of which the nodes must reach (PostgreSQL and an MLflow server on a cluster). This command waits for them;
    a worker that dies has its running trial failed at once, or, with an RDB storage, found stale by the
    others' heartbeat check and retried; Ctrl-C cancels them all."""
    folder = ctx.out_dir / ".submitit" / "%j"
    params = {**dataclasses.asdict(ctx.search.slurm), "name": f"mlplab-search-{ctx.study_name}"}
    jobs = slurm.submit_array(slurm.executor(str(folder), params), slurm_worker, [ctx] * ctx.search.workers)
    log.info("study %s: %d workers as SLURM job %s (squeue to follow; logs in %s)", ctx.study_name, len(jobs),
             jobs[0].job_id.split("_")[0], folder.parent)

    def ended(index: int, job) -> None:
        if slurm.completed(job):
            return
        state, word = slurm.state_of(job)
        how = f"worker {index} (SLURM job {job.job_id}) ended {state}"
        if heartbeat_enabled(study):  # its trial goes stale: the next worker to ask fails it and retries it
            log.warning("%s: its running trial is retried once its heartbeat is stale", how)
        else:
            fail_lost_trials(ctx, study, f"slurm:{job.job_id}", how)

    try:
        slurm.wait_all(jobs, ended)
    except KeyboardInterrupt:
        with interrupts.deferred():  # a second signal must not leave the workers running on their own
            gone = slurm.cancel(jobs, 2 * STOP_GRACE_S)  # they close their own trials and runs on SIGTERM
            log.info("cancelled the study's %d SLURM workers%s", len(jobs), "" if gone else " (some still completing)")
            for job in jobs:
                fail_lost_trials(ctx, study, f"slurm:{job.job_id}", f"SLURM worker {job.job_id} cancelled", interrupted=True)
        raise
    if heartbeat_enabled(study):  # no worker is left to retry a dead one's trial: it fails, and a rerun does it
        time.sleep(0 if all(slurm.completed(job) for job in jobs) else 2 * ctx.search.heartbeat_seconds)
        fail_stale_trials(study)
        failed = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))}
        if ctx.parent_run_id:
            records.close_lost_trial_runs(ctx.base.tracking, ctx.parent_run_id, failed)
    if counted(study) < budget(ctx.search) and (ctx.deadline is None or time.time() < ctx.deadline):
        log.warning("study %s has %d of its %d trials: run the same command again to complete it", ctx.study_name,
                    counted(study), budget(ctx.search))


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


def run_study(base, search, out_dir: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``search`` (a ``config.SearchConfig``) over the training config ``base``: ``search.workers``
    processes on this machine share the study; then the summary (and the best configuration retrained).
    ``overrides``: the user's command line, recorded with each trial's own values."""
    check_space(base, search.space)
    if not base.data.validation_size:
        raise ConfigError("data.validation_size=0 leaves a search nothing to choose on: keep a validation split, "
                          "e.g. data.validation_size=10000")
    study_name = search.study_name or search.name
    deadline = time.time() + search.timeout if search.timeout else None
    ctx = Context(base, search, study_name, out_dir, None, deadline,
                  [o for o in overrides if not o.lstrip("+~").startswith(("search.", "search=", "hydra."))])
    study = load_study(ctx)
    ctx.parent_run_id = open_parent_run(ctx, study)
    status = "FAILED"
    try:
        if search.executor == "slurm":
            run_slurm_workers(ctx, study)
        elif search.workers == 1:
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
        recorder = (MlflowRecorder(best_cfg, with_user_overrides(ctx.overrides, [f"{k}={v}" for k, v in best.params.items()]),
                                   ctx.parent_run_id, ctx.study_name, best.number,
                                   name=f"best of {ctx.study_name} (trial {best.number}, retrained)",
                                   tags={"mlplab.role": "retrain", "retrain_of_trial": str(best.number)})
                    if ctx.parent_run_id else NoRecorder())
        final = train(best_cfg, ctx.out_dir / "best", quiet=True, recorder=recorder)
        summary.update({"best_test_accuracy": final.test_accuracy, "best_retrained_val_accuracy": final.val_accuracy})
        log.info("best configuration retrained once: %s", summary_line(best_cfg, final, ctx.out_dir / "best"))
    if ctx.search.write_experiment:
        summary["experiment_file"] = str(write_experiment(best_cfg, ctx, best))
    if ctx.parent_run_id:
        figures = study_figures(study, list(ctx.search.space), ctx.out_dir / "study-figures")
        records.record_study(records.existing(ctx.base.tracking, ctx.parent_run_id), summary, figures,
                             best_so_far(study))
    return summary


def best_so_far(study: optuna.Study) -> list[tuple[int, float]]:
    """(trial number, the best value up to it) after each completed trial: the study's history, as steps."""
    sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
    history, best = [], None
    for trial in sorted(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)),
                        key=lambda t: t.number):
        if best is None or sign * trial.value > sign * best:
            best = trial.value
        history.append((trial.number, best))
    return history


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
