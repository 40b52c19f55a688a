"""Optuna studies over training configs: the search space (``space``), storages, budget locks and
heartbeats (``storage``, the one module that touches Optuna's internals), samplers and pruners
(``samplers``), and the study with its workers (``study``)."""
