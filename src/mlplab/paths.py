"""Where the project's own folders are: the configs, the default stores beside them, and mlplab's cache."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# A source checkout (or an editable install of one) reads the project's conf/ in place and keeps its stores in
# the project's mlruns/; an installed wheel carries a copy of conf/ in the package (setup.py) and keeps its
# stores in ./mlruns of the directory it runs in, as MLflow's own default does.
IN_CHECKOUT = (PROJECT_ROOT / "conf" / "train.yaml").is_file() and (PROJECT_ROOT / "pyproject.toml").is_file()
CONF_DIR = Path(os.environ.get("MLPLAB_CONF") or (PROJECT_ROOT / "conf" if IN_CHECKOUT else Path(__file__).parent / "conf"))
MLRUNS = PROJECT_ROOT / "mlruns" if IN_CHECKOUT else Path.cwd() / "mlruns"  # the embedded MLflow store (mlflow.db) and Optuna's (optuna.db)


def cache_dir() -> Path:
    """mlplab's own folder ($MLPLAB_CACHE, else ~/.cache/mlplab): the default data root, unpacked copies of a
    user's files, checksums, an empty MLflow store to start new ones from."""
    return Path(os.environ.get("MLPLAB_CACHE") or "~/.cache/mlplab").expanduser().resolve()
