"""``hydra/launcher=population`` (mlplab-train's default): a multirun's jobs that can share a population
(``training/population.py``) are trained together, as one batched network; the others run one after another
as Hydra's basic launcher runs them.

Every job still gets what the basic launcher gives it: its output folder, its ``.hydra/`` configs, the
callbacks' ``on_job_start`` / ``on_job_end``, and its own ``JobReturn`` (the task's return value, or the
error that failed it). The app says how its jobs group and how a group trains through a ``Populations``
it hands to ``run_hydra_app``.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, _save_config, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict, read_write


log = logging.getLogger(__name__)


@dataclass
class LaunchedJob:
    """One job of a population, as the app's task sees it (what it would read from ``HydraConfig`` alone)."""

    cfg: DictConfig  # the job's config, without its hydra node
    out_dir: Path
    overrides: list[str]
    job_num: int
    sweep_dir: Path


class Populations(Protocol):
    def key(self, cfg: DictConfig) -> Optional[Any]:
        """Jobs of equal keys train as one population; None: this job runs alone."""

    def run(self, jobs: list[LaunchedJob]) -> list[Any]:
        """Train ``jobs`` as one population: per job its return value, or the exception that failed it."""


class PopulationLauncher(Launcher):
    def __init__(self, max_members: int = 32) -> None:
        super().__init__()
        if max_members < 1:
            raise ValueError(f"hydra.launcher.max_members={max_members} must be >= 1")
        self.max_members = max_members
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[Callable] = None
        self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = idx
                config.hydra.job.num = idx
            configs.append(config)
        populations: Optional[Populations] = getattr(self.task_function, "populations", None)
        keys = [populations.key(self._task_cfg(c)) if populations else None for c in configs]
        from ..training.population import groups  # torch: only once a sweep is launched, not for completion

        grouped = groups(keys, self.max_members)
        sizes = [len(g) for g in grouped if len(g) > 1]
        log.info(f"Launching {len(configs)} jobs locally: {len(sizes)} population(s) of {sizes or 0} members, "
                 f"{sum(len(g) == 1 for g in grouped)} alone")
        returns: list[Optional[JobReturn]] = [None] * len(configs)
        for group in grouped:
            for index in group:
                log.info(f"\t#{initial_job_idx + index} : {' '.join(filter_overrides(job_overrides[index]))}")
            if len(group) == 1:
                returns[group[0]] = run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                                            config=configs[group[0]], job_dir_key="hydra.sweep.dir",
                                            job_subdir_key="hydra.sweep.subdir")
            else:
                for index, ret in zip(group, self._run_population([configs[i] for i in group], populations)):
                    returns[index] = ret
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns  # type: ignore[return-value]

    @staticmethod
    def _task_cfg(config: DictConfig) -> DictConfig:
        task_cfg = copy.deepcopy(config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        return task_cfg

    def _run_population(self, configs: list[DictConfig], populations: Populations) -> list[JobReturn]:
        """Each job set up as ``hydra.core.utils.run_job`` sets it up, then the jobs trained together."""
        callbacks, original = self.hydra_context.callbacks, HydraConfig.instance().cfg
        jobs, returns = [], []
        try:
            for config in configs:
                HydraConfig.instance().set_config(config)
                out_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir")),
                               str(OmegaConf.select(config, "hydra.sweep.subdir"))).resolve()
                with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
                    config.hydra.runtime.output_dir = str(out_dir)
                HydraConfig.instance().set_config(config)
                ret = JobReturn()
                ret.cfg, ret.hydra_cfg = self._task_cfg(config), copy.deepcopy(HydraConfig.instance().cfg)
                ret.overrides, ret.working_dir = list(OmegaConf.to_container(config.hydra.overrides.task)), os.getcwd()
                out_dir.mkdir(parents=True, exist_ok=True)
                if config.hydra.output_subdir is not None:
                    folder = out_dir / str(config.hydra.output_subdir)
                    _save_config(ret.cfg, "config.yaml", folder)
                    _save_config(ret.hydra_cfg, "hydra.yaml", folder)
                    _save_config(config.hydra.overrides.task, "overrides.yaml", folder)
                callbacks.on_job_start(config=config, task_function=self.task_function)
                jobs.append(LaunchedJob(ret.cfg, out_dir, list(ret.overrides), int(config.hydra.job.num),
                                        Path(str(config.hydra.sweep.dir)).resolve()))
                returns.append(ret)
            HydraConfig.instance().set_config(configs[0])  # the population's log: the first member's job log
            configure_log(configs[0].hydra.job_logging, configs[0].hydra.verbose)
            outcomes = populations.run(jobs)
        finally:
            HydraConfig.instance().cfg = original
        for config, ret, outcome in zip(configs, returns, outcomes):
            ret.status = JobStatus.FAILED if isinstance(outcome, BaseException) else JobStatus.COMPLETED
            ret.return_value = outcome
            ret.task_name = JobRuntime.instance().get("name")
            callbacks.on_job_end(config=config, job_return=ret)
        return returns
