"""The samplers and pruners a search config can name. The config takes its choices from ``SAMPLERS`` and
``PRUNERS``.

Every worker, and every rerun that continues a study, draws from a stream of its own: its seed is derived
from ``search.seed``, the worker's number and the trials the study held when the worker joined, so no two
of them propose the same sequence. TPE also lies about running trials (Optuna's ``constant_liar``), so
workers running side by side do not crowd one point.
"""

from __future__ import annotations

import hashlib

import optuna

from .space import grid_space

SAMPLERS = ("tpe", "gp", "random", "qmc", "grid")
PRUNERS = ("median", "successive_halving", "hyperband", "none")


def startup_trials(cfg) -> int:
    """Random trials before the model-based sampler takes over: a quarter of the budget, 5 to 10. (With
    only 2, a 10-trial Q3 study kept the activation its two random trials happened to draw.)"""
    if cfg.startup_trials is not None:
        return cfg.startup_trials
    return min(10, max(5, cfg.n_trials // 4))


def stream_seed(seed: int, worker: int, trials_before: int) -> int:
    """The seed of one worker's stream: ``search.seed`` for the first worker of a new study (so a one-worker
    study is what it always was), a hash of all three otherwise."""
    if worker == 0 and trials_before == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}/{worker}/{trials_before}".encode()).digest()[:4], "big")


def make_sampler(cfg, worker: int = 0, trials_before: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler ``search.sampler`` names, for worker number ``worker`` joining a study of ``trials_before``
    trials."""
    seed = stream_seed(cfg.seed, worker, trials_before)
    if cfg.sampler == "tpe":
        # multivariate: rate and width interact (wider layers want other rates), so model them jointly
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(cfg), multivariate=True,
                                          constant_liar=True)
    if cfg.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(cfg))
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
    return optuna.samplers.GridSampler(grid_space(cfg.space), seed=seed)


def make_pruner(cfg, max_epochs: int) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials,
                                           n_warmup_steps=cfg.pruner_warmup_epochs)
    if cfg.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=cfg.min_epochs)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=cfg.min_epochs, max_resource=max_epochs)
    return optuna.pruners.NopPruner()
