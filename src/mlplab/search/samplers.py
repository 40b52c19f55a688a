"""The samplers and pruners a search config can name. The config takes its choices from ``SAMPLERS`` and
``PRUNERS``."""

from __future__ import annotations

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


def make_sampler(cfg) -> optuna.samplers.BaseSampler:
    """The sampler ``search.sampler`` names, seeded by ``search.seed``."""
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


def make_pruner(cfg, max_epochs: int) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials,
                                           n_warmup_steps=cfg.pruner_warmup_epochs)
    if cfg.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=cfg.min_epochs)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=cfg.min_epochs, max_resource=max_epochs)
    return optuna.pruners.NopPruner()
