"""mlplab: a research harness for the neural-network course material (perceptrons, sigmoid networks,
backpropagation, SGD, costs, regularisation, initialisation, hyper-parameter search).

The package is layered; imports point down only:

    apps/        the console scripts (mlplab-train, -search, -runs, -perceptron, -gd) and the Hydra-app helper
    search/      Optuna: the search space, storages, the study and its workers
    tracking/    MLflow: stores, runs, the training recorder, sweeps, study records, dead processes' runs
    config.py    the typed configs; their choices come from the registries below
    training/    engines, optimisers and schedules, the epoch loop, evaluation, checkpoints, results
    nn/ data/    activations, costs, the MLP, initialisers, penalties, backpropagation; IDX data as tensors
    figures/ course/   the figures; the perceptron and gradient descent on f(x)
    errors.py paths.py files.py masking.py keys.py interrupts.py (signals as exceptions, held while a run closes)

From Python (a notebook, a script):

    import mlplab
    cfg = mlplab.compose("experiment=q2_shallow", "trainer.epochs=5")   # the CLI's overrides
    result = mlplab.train(cfg)                                            # recorded in MLflow as the CLI records it
    summary = mlplab.study("search=q2_lr", "search.n_trials=10")                 # as mlplab-search runs it

``compose``, ``train`` and ``study`` (``apps/api.py``) are imported on first use: ``import mlplab`` stays
light, and a logged model, which carries this file, needs nothing beyond torch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlplab")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    if name in ("compose", "train", "study"):
        from .apps import api

        return getattr(api, name)
    raise AttributeError(f"module 'mlplab' has no attribute {name!r}")
