"""Where the project's own folders are: the configs, and the default stores beside them."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = Path(os.environ.get("MLPLAB_CONF", PROJECT_ROOT / "conf"))
MLRUNS = PROJECT_ROOT / "mlruns"  # the embedded MLflow store (mlflow.db) and Optuna's (optuna.db)
