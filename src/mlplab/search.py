"""``mlplab-search``: Bayesian (and grid, random, QMC) search over training configs with Optuna.

The slides end hyper-parameter tuning with "grid search, Bayesian optimization". A study composes the
training config, samples the keys of ``search.space`` per trial, trains with the trial's values,
reports validation accuracy every epoch so a pruner can stop a hopeless trial at once, and records
each trial as a child MLflow run of one parent run per study. Studies live in an Optuna storage
(sqlite beside the MLflow store by default, a journal file for several processes on one host, or
PostgreSQL for several hosts), so rerunning the command continues the same study up to ``n_trials``.
At the end the best configuration is retrained once, evaluated once on the test set, and written as a
Hydra experiment file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import math
import multiprocessing
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import optuna
from omegaconf import OmegaConf

from .cli import CONF_DIR
from .config import ConfigError, SearchConfig, TrainConfig, to_typed
from .tracking import (PROJECT_ROOT, MlflowRecorder, Recorder, client_for, engine_options, experiment_id, git_state,
                       mask_secrets, resolve_uri)
from .train import Pruned, summary_line, train

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
log = logging.getLogger("mlplab")
DERIVED_KEYS = ("model.width", "model.depth")  # not config keys: they rebuild model.sizes
INTERRUPTED = "interrupted"  # user attr of a trial stopped by Ctrl-C/SIGTERM: it does not use up the budget


# ---- the parts of a study ------------------------------------------------------------------------------

def default_storage() -> str:
    return f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'optuna.db'}"


def storage_url(cfg: SearchConfig) -> str:
    return cfg.storage or default_storage()


def is_journal(url: str) -> bool:
    return not ("://" in url) or url.startswith("journal:")


def make_storage(cfg: SearchConfig):
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


def grid_space(space: dict[str, Any]) -> dict[str, list]:
    return {key: list(spec["choices"]) for key, spec in space.items()}


def startup_trials(cfg: SearchConfig) -> int:
    """Random trials before the model-based sampler takes over: a quarter of the budget, 5 to 10. (With
    only 2, a 10-trial Q3 study kept the activation its two random trials happened to draw.)"""
    if cfg.startup_trials is not None:
        return cfg.startup_trials
    return min(10, max(5, cfg.n_trials // 4))


def make_sampler(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    if cfg.sampler == "tpe":
        # multivariate: rate and width interact (wider layers want other rates), so model them jointly
        return optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=startup_trials(cfg), multivariate=True)
    if cfg.sampler == "gp":
        return optuna.samplers.GPSampler(seed=cfg.seed, n_startup_trials=startup_trials(cfg))
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    if cfg.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=cfg.seed, scramble=True, warn_independent_sampling=False)
    return optuna.samplers.GridSampler(grid_space(cfg.space), seed=cfg.seed)


def make_pruner(cfg: SearchConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials,
                                           n_warmup_steps=cfg.pruner_warmup_epochs)
    if cfg.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=cfg.min_epochs)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=cfg.min_epochs, max_resource=max_epochs)
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, space: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for key, spec in space.items():
        if spec["type"] == "float":
            values[key] = trial.suggest_float(key, spec["low"], spec["high"], log=bool(spec.get("log")),
                                              step=spec.get("step"))
        elif spec["type"] == "int":
            values[key] = trial.suggest_int(key, spec["low"], spec["high"], log=bool(spec.get("log")),
                                            step=spec.get("step") or 1)
        else:
            values[key] = trial.suggest_categorical(key, list(spec["choices"]))
    return values


_MISSING = object()


def check_keys(base: TrainConfig, space: dict[str, Any]) -> None:
    """Every key of the space must be a training config key (or model.width / model.depth)."""
    if not space:
        raise ConfigError("search.space is empty: choose a search (search=q2_lr) or give a key, e.g. optimizer.lr")
    node = OmegaConf.structured(base)
    for key in space:
        if key not in DERIVED_KEYS and OmegaConf.select(node, key, default=_MISSING) is _MISSING:
            raise ConfigError(f"search.space.{key} is not a training config key: check its spelling "
                              "(`mlplab-train --cfg job` lists the keys; model.width and model.depth also work)")


def apply(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """The training config of one trial: ``base`` with the sampled values (re-validated)."""
    node = OmegaConf.structured(base)
    sizes = list(base.model.sizes)
    width = values.get("model.width", sizes[1] if len(sizes) > 2 else None)
    depth = values.get("model.depth", len(sizes) - 2)
    if ("model.width" in values or "model.depth" in values) and width is not None:
        sizes = [sizes[0], *[int(width)] * int(depth), sizes[-1]]
    for key, value in values.items():
        if key not in DERIVED_KEYS:
            OmegaConf.update(node, key, value, merge=False)
    OmegaConf.update(node, "model.sizes", sizes, merge=False)
    return OmegaConf.to_object(node)


def budget(cfg: SearchConfig) -> int:
    """n_trials, or the grid's size if that is smaller (a grid point is never tried twice)."""
    if cfg.sampler != "grid":
        return cfg.n_trials
    return min(cfg.n_trials, math.prod(len(choices) for choices in grid_space(cfg.space).values()))


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


# ---- running trials ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Context:
    """What every worker needs to run trials: picklable, so it crosses into spawned processes."""

    base: TrainConfig
    search: SearchConfig
    study_name: str
    out_dir: Path
    parent_run_id: Optional[str]
    deadline: Optional[float]


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
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial: FAIL, and retried once
        close_lost_runs(study, ctx)
    with budget_lock(storage_url(ctx.search), ctx.study_name):
        if counted(study) >= budget(ctx.search):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "heartbeat is meant for optimize": ``heartbeat`` beats
            return study.ask()


def close_lost_runs(study: optuna.Study, ctx: Context) -> None:
    """A worker killed outright (kill -9) cannot end its trial's MLflow run: whoever finds the trial failed
    ends the run KILLED, tagged ``status=worker_lost``, so no run stays RUNNING."""
    if not ctx.parent_run_id:
        return
    client = client_for(resolve_uri(ctx.base.tracking))
    running = client.search_runs([client.get_run(ctx.parent_run_id).info.experiment_id],
                                 filter_string=f"tags.mlflow.parentRunId = '{ctx.parent_run_id}' and attributes.status = 'RUNNING'")
    failed = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))}
    for run in running:
        if run.data.tags.get("job_num", "").isdigit() and int(run.data.tags["job_num"]) in failed:
            client.set_tag(run.info.run_id, "status", "worker_lost")
            client.set_tag(run.info.run_id, "trial_state", "FAIL")
            client.set_terminated(run.info.run_id, "KILLED")


def run_trial(study: optuna.Study, trial: optuna.Trial, ctx: Context) -> None:
    values = suggest(trial, ctx.search.space)
    cfg = apply(ctx.base, values)
    cfg.trainer.evaluate_test = False  # selection on validation only; the test set waits for the best
    cfg.trainer.checkpoint = False
    overrides = [f"{k}={v}" for k, v in values.items()]
    recorder = (MlflowRecorder(cfg, overrides, ctx.parent_run_id, ctx.study_name, trial.number)
                if ctx.parent_run_id else Recorder())

    def report(metrics) -> None:
        value = metrics.val_accuracy if ctx.search.metric == "val_accuracy" else metrics.val_loss
        trial.report(value, metrics.epoch)
        if trial.should_prune():
            raise Pruned(f"pruned by {ctx.search.pruner} after epoch {metrics.epoch} ({ctx.search.metric} {value:.4f})")

    state, value = optuna.trial.TrialState.FAIL, None
    try:
        with heartbeat(study, trial, ctx.search.heartbeat_seconds):
            result = train(cfg, ctx.out_dir / f"trial_{trial.number:04d}", quiet=True, on_epoch=report, recorder=recorder)
        if result.status in ("finished", "early_stopped"):
            value = result.val_accuracy if ctx.search.metric == "val_accuracy" else result.history[-1]["val_loss"]
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
            client = client_for(resolve_uri(cfg.tracking))
            client.set_tag(recorder.run_id, "trial_number", str(trial.number))
            client.set_tag(recorder.run_id, "trial_state", state.name)


def tell(study: optuna.Study, trial: optuna.Trial, value: Optional[float], state) -> None:
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as error:
        # GridSampler calls study.stop() once the grid is used up, which Optuna only allows inside
        # study.optimize; the trial's state is stored before that, and our own budget ends the loop.
        if "Study.stop" not in str(error):
            raise


def worker(ctx: Context) -> None:
    """Run trials until the study has n_trials (or the deadline passes)."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][worker][%(levelname)s] - %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(ctx)
    while (trial := next_trial(study, ctx)) is not None:
        run_trial(study, trial, ctx)


# ---- the study as a whole ------------------------------------------------------------------------------

def open_parent_run(ctx: Context, study: optuna.Study) -> Optional[str]:
    """One MLflow parent run per study, found again when the study is resumed."""
    if ctx.base.tracking.mode == "off":
        return None
    uri = resolve_uri(ctx.base.tracking)
    client = client_for(uri)
    known = study.user_attrs.get("mlflow_parent_run_id")
    if known:
        client.update_run(known, status="RUNNING")
        return known
    run = client.create_run(experiment_id(client, ctx.base.tracking.experiment, uri),
                            run_name=f"study {ctx.study_name}",
                            tags={"mlplab.kind": "study", "optuna_study": ctx.study_name,
                                  "optuna_storage": mask_secrets(storage_url(ctx.search)),
                                  "sampler": ctx.search.sampler, "pruner": ctx.search.pruner,
                                  "git_commit": git_state()[0], "git_dirty": git_state()[1]})
    study.set_user_attr("mlflow_parent_run_id", run.info.run_id)
    # Two machines may have raced to create it: the value the storage holds now wins.
    winner = study._storage.get_study_user_attrs(study._study_id)["mlflow_parent_run_id"]
    if winner != run.info.run_id:
        client.delete_run(run.info.run_id)
        client.update_run(winner, status="RUNNING")
    return winner


def run_study(base: TrainConfig, search: SearchConfig, out_dir: Path) -> dict[str, Any]:
    check_keys(base, search.space)
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
            spawn = multiprocessing.get_context("spawn")
            processes = [spawn.Process(target=worker, args=(ctx,), name=f"search-worker-{i}") for i in range(search.workers)]
            for process in processes:
                process.start()
            for process in processes:
                process.join()
        summary = summarize(study, ctx)
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if ctx.parent_run_id:
            client_for(resolve_uri(base.tracking)).set_terminated(ctx.parent_run_id, status)


def summarize(study: optuna.Study, ctx: Context) -> dict[str, Any]:
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    summary: dict[str, Any] = {"study": ctx.study_name, "trials": counted(study),
                               **{s.lower(): states.count(s) for s in ("COMPLETE", "PRUNED", "FAIL")}}
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        log.warning("no trial completed: nothing to report as best")
        return summary
    best = study.best_trial
    summary.update({"best_trial": best.number, "best_value": best.value, "best_params": best.params})
    best_cfg = apply(ctx.base, best.params)
    if ctx.search.final_test:
        final = train(best_cfg, ctx.out_dir / "best", quiet=True,
                      recorder=MlflowRecorder(best_cfg, [f"{k}={v}" for k, v in best.params.items()], ctx.parent_run_id,
                                              ctx.study_name, best.number) if ctx.parent_run_id else Recorder())
        summary.update({"best_test_accuracy": final.test_accuracy, "best_retrained_val_accuracy": final.val_accuracy})
        log.info("best configuration retrained once: %s", summary_line(best_cfg, final, ctx.out_dir / "best"))
    if ctx.search.write_experiment:
        summary["experiment_file"] = str(write_experiment(best_cfg, ctx, best))
    if ctx.parent_run_id:
        record_on_parent(study, ctx, summary)
    return summary


def write_experiment(cfg: TrainConfig, ctx: Context, best: optuna.trial.FrozenTrial) -> Path:
    """conf/experiment/search_<study>.yaml: the whole best training config, for `mlplab-train experiment=…`."""
    node = OmegaConf.structured(cfg)
    node.tracking.uri = None  # the store is the user's choice at rerun time
    node.name = f"search-{ctx.study_name}"
    header = (f"# @package _global_\n# Best of Optuna study {ctx.study_name!r}: trial {best.number}, "
              f"{ctx.search.metric} {best.value:.4f} with {best.params}.\n# Written by mlplab-search; "
              f"rerun with: mlplab-train experiment=search_{ctx.study_name}\n")
    folder = Path(ctx.search.experiment_dir).expanduser() if ctx.search.experiment_dir else CONF_DIR / "experiment"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"search_{ctx.study_name}.yaml"
    partial = path.with_suffix(".partial")
    partial.write_text(header + OmegaConf.to_yaml(node))
    partial.replace(path)
    return path


def record_on_parent(study: optuna.Study, ctx: Context, summary: dict[str, Any]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    client = client_for(resolve_uri(ctx.base.tracking))
    now = int(time.time() * 1000)
    metrics = [Metric(key, float(summary[key]), now, 0) for key in
               ("best_value", "best_test_accuracy", "best_retrained_val_accuracy", "trials", "complete", "pruned", "fail")
               if isinstance(summary.get(key), (int, float))]
    params = [Param(f"best.{k}", str(v)) for k, v in summary["best_params"].items()]
    existing = client.get_run(ctx.parent_run_id).data.params
    params = [p for p in params if p.key not in existing]  # a resumed study keeps its first record of a param
    tags = [RunTag("best_trial", str(summary["best_trial"]))]
    client.log_batch(ctx.parent_run_id, metrics=metrics, params=params, tags=tags)
    figures = ctx.out_dir / "study-figures"
    for path in study_figures(study, ctx, figures):
        client.log_artifact(ctx.parent_run_id, str(path))


def study_figures(study: optuna.Study, ctx: Context, folder: Path) -> list[Path]:
    """Optimisation history, parameter importances, and slice / contour plots of the searched keys."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from optuna.visualization import matplotlib as plots

    folder.mkdir(parents=True, exist_ok=True)
    keys = list(ctx.search.space)
    wanted = [("optimization_history", lambda: plots.plot_optimization_history(study)),
              ("slice", lambda: plots.plot_slice(study))]
    if len(keys) >= 2:
        wanted += [("param_importances", lambda: plots.plot_param_importances(study)),
                   ("contour", lambda: plots.plot_contour(study, params=keys[:2]))]
    written = []
    for name, draw in wanted:
        try:
            axes = draw()
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.set_size_inches(max(figure.get_size_inches()[0], 8), max(figure.get_size_inches()[1], 5))
            figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
            pyplot.close(figure)
            written.append(folder / f"{name}.png")
        except Exception as error:  # noqa: BLE001 - a figure Optuna cannot draw (too few trials) is skipped
            log.info("no %s figure: %s", name, error)
    return written


# ---- the command ---------------------------------------------------------------------------------------

def cli() -> None:
    from .cli import run_hydra_app

    run_hydra_app(_hydra_task, config_name="search")


def _hydra_task(cfg) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig

    app = to_typed(cfg)
    search = app.search
    base = TrainConfig(**{f.name: getattr(app, f.name) for f in dataclasses.fields(TrainConfig)})
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    summary = run_study(base, search, out_dir)
    best = summary.get("best_value")
    line = (f"study {summary['study']}: {summary['trials']} trials ({summary.get('complete', 0)} complete, "
            f"{summary.get('pruned', 0)} pruned, {summary.get('fail', 0)} failed)")
    if best is not None:
        line += f"; best {search.metric} {best:.4f} (trial {summary['best_trial']}: {summary['best_params']})"
        if "best_test_accuracy" in summary:
            line += f"; retrained once: test accuracy {100 * summary['best_test_accuracy']:.2f}%"
        if "experiment_file" in summary:
            line += f"; rerun with mlplab-train experiment=search_{summary['study']}"
    print(line, flush=True)
    return best
