"""``mlplab-serve``: a run's logged model behind MLflow's scoring server, on 127.0.0.1.

    mlplab-serve <run id>               # POST {"inputs": [[784 pixels in [0, 1]], …]} to :5001/invocations
    mlplab-serve <run id> --port 5002   # → {"predictions": [[one probability per class], …]}
    make serve RUN=<run id>

It is ``mlflow models serve --env-manager local`` on the run's ``model_uri``, started so that it works from any
shell: MLflow starts its server by the bare name ``uvicorn``, which is only found when this environment's
``bin`` folder is on the PATH (``.venv/bin/mlflow models serve`` alone fails with "exec: uvicorn: not found").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from ..errors import MlplabError, debugging
from ..masking import mask_secrets
from ..tracking.store import client_for, default_uri
from .hydra_app import explain


class ServeError(MlplabError):
    pass


def model_uri(uri: str, run_id: str) -> str:
    """The run's logged model (its ``model_uri`` tag), or one line saying why there is none."""
    client = client_for(uri)
    try:
        run = client.get_run(run_id)
    except Exception as error:  # noqa: BLE001 - MLflow raises its own type for an unknown id
        raise ServeError(f"no run {run_id!r} in {mask_secrets(uri)}: copy an id from `mlplab-runs`") from error
    found = run.data.tags.get("model_uri")
    if not found:
        status = run.data.tags.get("status", run.info.status.lower())
        raise ServeError(f"run {run_id} ({status}) logged no model: serve a finished run trained with "
                         "tracking.log_model=true (the default)")
    return found


def command(model: str, host: str, port: int) -> tuple[list[str], dict]:
    """The command and environment that serve ``model``: this interpreter's MLflow, its bin folder first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    return ([sys.executable, "-m", "mlflow", "models", "serve", "-m", model, "--env-manager", "local",
             "-h", host, "-p", str(port)], env)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="mlplab-serve", description="Serve a run's logged model over HTTP.")
    parser.add_argument("run_id", help="the run whose model to serve (ids: `mlplab-runs`)")
    parser.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI or the project store)")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (the default) keeps it off the network")
    args = parser.parse_args(argv)
    uri = args.uri or default_uri()
    try:
        model = model_uri(uri, args.run_id)
    except Exception as error:  # noqa: BLE001 - every error ends in one line (or a traceback when debugging)
        if debugging():
            raise
        print(f"mlplab-serve: error: {explain(error)}", file=sys.stderr)
        sys.exit(2)
    argv_, env = command(model, args.host, args.port)
    env["MLFLOW_TRACKING_URI"] = uri
    print(f"mlplab-serve: {model} (run {args.run_id}) on http://{args.host}:{args.port}/invocations", flush=True)
    os.execve(sys.executable, argv_, env)  # the server is this process: a signal to it stops the server
