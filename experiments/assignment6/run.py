"""Assignment 6 end to end: every run tracked in MLflow, then REPORT.md written from those runs.

    .venv/bin/python experiments/assignment6/run.py            # the full study on real Fashion-MNIST
    .venv/bin/python experiments/assignment6/run.py --fast     # a subset and two epochs: the pipeline only

Options name where the data, the store and the report go (tests point them at temporary folders).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mlplab import interrupts  # noqa: E402
from mlplab.apps.hydra_app import EXIT_SIGINT, EXIT_SIGTERM  # noqa: E402
from report import Report  # noqa: E402
from study import Settings, Study  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a fifth of the images, two epochs per run")
    parser.add_argument("--data-root", help="where the IDX files are (default: mlplab's usual search)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: the project's sqlite:///mlruns/mlflow.db)")
    parser.add_argument("--optuna-storage", help="Optuna storage (default: the project's mlruns/optuna.db)")
    parser.add_argument("--report-dir", type=Path, default=HERE, help="where REPORT.md and figures/ go")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every training job (repeatable), e.g. --set trainer.device=cuda")
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/assignment6"), help="job folders (models, results)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mlplab").setLevel(logging.WARNING)  # the study logs one line per run instead:
    logging.getLogger("mlplab.assignment6").setLevel(logging.INFO)

    settings = Settings(fast=args.fast, data_root=args.data_root, tracking_uri=args.tracking_uri,
                        out_dir=args.work_dir, optuna_storage=args.optuna_storage, extra=args.set)
    if args.fast:
        settings.q2_rates = [0.01, 0.1, 1.0]
    study = Study(settings)
    manifest = study.run_all()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    (args.work_dir / "manifest.json").write_text(json.dumps(dataclasses.asdict(manifest), indent=2, default=str))
    path = Report(manifest, study.uri, args.report_dir).write()
    print(f"report: {path}")
    return path


if __name__ == "__main__":
    # Ctrl-C and SIGTERM end every open run KILLED (a background job inherits SIGINT ignored: re-arm it).
    interrupts.install()
    try:
        main()
    except interrupts.Terminated:
        sys.exit(EXIT_SIGTERM)
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
