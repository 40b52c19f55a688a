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
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlplab")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
