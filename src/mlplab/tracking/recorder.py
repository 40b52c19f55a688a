"""A training job's MLflow run: the trainer's ``Recorder`` (``training/recorder.py``) written to MLflow.

The flattened config as params, provenance as tags, the epochs' metrics buffered and written in one
``log_batch`` at most every ``FLUSH_INTERVAL_S`` (a sqlite write costs ~2 ms, MLflow's Python ~10 ms), and at
the end the job's ``result.json``, its config, figures and the model, then the final metrics. Whatever
happens, the run is closed FINISHED, FAILED or KILLED — never left RUNNING.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Optional

import mlplab.interrupts as interrupts
from . import liveness
from ..data.idx import DATASETS, checksum
from ..masking import mask_secrets
from ..nn.model import layer_string
from ..training.result import describe, percent
from .run import RUN_STATUS, TrackedRun, finite, now_ms, provenance
from .store import resolve_uri

MLFLOW_RUN_NOTE = "mlflow.note.content"  # the run's description in MLflow's UI
SELECTION_METRIC = "final_val_accuracy"  # what a sweep's parent ranks its children by
FLUSH_INTERVAL_S = 10.0  # a short run's epochs go in one batch at its end, a long run's reach the UI every 10 s
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")


def run_name(cfg) -> str:
    return cfg.tracking.run_name or describe(cfg)


class MlflowRecorder:
    def __init__(self, cfg, overrides: list[str], parent_run_id: Optional[str] = None,
                 sweep_id: Optional[str] = None, job_num: Optional[int] = None, tags: Optional[dict] = None,
                 name: Optional[str] = None):
        self.cfg, self.overrides, self.tags = cfg, overrides, dict(tags or {})
        self.name = name or run_name(cfg)  # the run's name in MLflow
        self.parent_run_id, self.sweep_id, self.job_num = parent_run_id, sweep_id, job_num
        self.run = TrackedRun()
        self.pending_metrics: list = []  # written at most every FLUSH_INTERVAL_S, and at the end
        self.sizes: Optional[dict] = None  # the splits' sizes, once the data is loaded
        self.last_flush = time.monotonic()

    @property
    def run_id(self) -> Optional[str]:
        return self.run.run_id

    def start(self) -> None:
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        tags = {**provenance("train", self.overrides), **self.tags}
        if self.parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        if self.sweep_id is not None:
            tags.update({"sweep_id": self.sweep_id, "job_num": str(self.job_num)})
        self.run = TrackedRun.open(self.cfg.tracking, self.name, tags)
        self.run.log_config(self.cfg)  # the run exists now: whatever stops this, end() closes it

    def on_data(self, splits, device) -> None:
        digest = checksum(splits.source)
        self.sizes = {"train": len(splits.train), "validation": len(splits.validation or []), "test": len(splits.test)}
        self.run.set_tags({
            "dataset": self.cfg.data.name, "dataset_sha256": digest,
            "dataset_sizes": f"train={self.sizes['train']} val={self.sizes['validation']} test={self.sizes['test']}",
            "device": str(device)})
        self.run.log_dataset(DATASETS[self.cfg.data.name].title, digest, splits.source, self.sizes)

    def on_check(self, check: dict) -> None:
        from mlflow.entities import Metric

        now, step = now_ms(), check["images_seen"]
        self.pending_metrics += [Metric("check_val_loss", float(check["val_loss"]), now, step),
                                 Metric("check_val_accuracy", float(check["val_accuracy"]), now, step)]

    def on_epoch(self, metrics: dict) -> None:
        from mlflow.entities import Metric

        now, epoch = now_ms(), metrics["epoch"]
        self.pending_metrics += [Metric(key, float(metrics[key]), now, epoch)
                                 for key in EPOCH_METRICS if metrics[key] is not None]
        self.pending_metrics.append(Metric("epoch_seconds", float(metrics["seconds"]), now, epoch))
        self.pending_metrics += [Metric(f"slowdown/{key}", value, now, epoch)
                                 for key, value in metrics.get("diagnostics", {}).items()]
        if time.monotonic() - self.last_flush >= FLUSH_INTERVAL_S:
            self.flush()

    def flush(self, tags: Optional[dict] = None) -> None:
        """One synchronous write for everything buffered (and ``tags``). (MLflow's async writer thread
        competes with training for 2 cores and the GIL: it measured ~1.2 s slower over a 30-epoch run.)"""
        self.run.log_batch(self.pending_metrics, {**(tags or {}), **liveness.alive_tag()})
        self.pending_metrics, self.last_flush = [], time.monotonic()

    def end(self, result, out_dir: Path, outcome) -> None:
        """The artifacts and the model first, then the status they allow: FINISHED only when everything a
        completed run promises was written. A failure or a signal while logging them ends the run FAILED or
        KILLED with the reason; the closing writes themselves are never cut short by a signal."""
        model, failure = None, None
        try:
            self._log_artifacts(result, out_dir, outcome)
            if self.cfg.tracking.log_model and result.completed and outcome.net is not None and outcome.splits is not None:
                model = self._log_model(outcome.net, outcome.splits)
        except BaseException as error:
            failure = error
            if result.completed:
                result.end_by(error, "while logging the run's artifacts")
        with interrupts.deferred():
            if failure is not None:
                with contextlib.suppress(Exception):  # the store may be what failed: the status matters more
                    self._fail_unfinished_models()
            try:
                tags = {"status": result.status, **({"status_detail": result.detail} if result.detail else {}),
                        **({"model_uri": model.model_uri} if model is not None else {}),
                        MLFLOW_RUN_NOTE: description(self.cfg, result, self.sizes)}
                self.pending_metrics += final_metrics(result, model.model_id if model is not None else None)
                self.flush(tags)
            except Exception as error:  # noqa: BLE001 - the run is closed below all the same, never FINISHED
                failure = failure or error
                if result.completed:
                    result.end_by(error, "while writing the run's metrics")
            finally:
                self.run.close(RUN_STATUS[result.status])
        if failure is not None:  # a model or artifact MLflow could not write is said like the client's failures
            said = self.run.client.cannot_write(failure)
            if said is None:
                raise failure
            raise said from failure

    def _fail_unfinished_models(self) -> None:
        """A model whose logging was cut short stays PENDING in MLflow: say FAILED instead."""
        from mlflow.entities import LoggedModelStatus

        client = self.run.client
        for model in client.search_logged_models(experiment_ids=[self.run.experiment_id],
                                                 filter_string=f"source_run_id = '{self.run_id}'"):
            if model.status == LoggedModelStatus.PENDING:
                client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)

    def _log_artifacts(self, result, out_dir: Path, outcome) -> None:
        from omegaconf import OmegaConf

        from ..figures import run as run_figures

        folder = out_dir / "mlflow"
        folder.mkdir(exist_ok=True)
        (folder / "config.yaml").write_text(mask_secrets(OmegaConf.to_yaml(OmegaConf.structured(self.cfg))))
        (folder / "overrides.yaml").write_text(mask_secrets(OmegaConf.to_yaml(OmegaConf.create(list(self.overrides)))))
        title = self.name
        if self.cfg.tracking.plots and result.history:
            run_figures.learning_curves(result.history, folder / "learning_curves.png", title)
            if result.history[0].get("diagnostics"):
                from ..figures import mpl  # matplotlib: imported only where a run asked for diagnostics

                mpl.slowdown(result.history, folder / "slowdown.png", title)
        if self.cfg.tracking.plots and result.status in ("finished", "early_stopped"):
            confusion = outcome.confusion()
            if confusion is not None:
                counts, split_name, class_names = confusion
                run_figures.confusion_matrix(counts, class_names, folder / "confusion_matrix.png", title, split_name)
        self.run.log_artifacts(folder)
        if (out_dir / "result.json").is_file():  # the job's own record (non-finite numbers written as null)
            self.run.log_artifact(out_dir / "result.json")

    def _log_model(self, net, splits):
        """The network as a ``Classifier`` (raw pixels in [0, 1] → class probabilities, the run's standardisation
        inside), named after what it is, with its signature, an input example and the class names; mlplab's
        few modules it needs travel with it (``code_paths``), so any client with torch and MLflow loads it."""
        import importlib.metadata
        import shutil
        import tempfile

        import mlflow
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        from ..nn import classifier as classifier_module

        model = classifier_module.Classifier(net.cpu().eval(), splits.pixel_mean, splits.pixel_std, splits.class_names)
        example = (splits.test.x[:2].cpu() * splits.pixel_std + splits.pixel_mean).clamp(0, 1).numpy()
        with torch.inference_mode():
            signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
        mlflow.set_tracking_uri(resolve_uri(self.cfg.tracking))
        # The model goes to the run's experiment, under the store's artifact root: MLflow would otherwise
        # put it in the active (by default the "Default") experiment, under the cwd of its creation.
        mlflow.set_experiment(experiment_id=self.run.experiment_id)
        # Its warning about pickle is for models from strangers; this one is ours, its classes shipped beside it.
        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
        package = Path(classifier_module.__file__).resolve().parents[1]
        with tempfile.TemporaryDirectory(prefix="mlplab-model-code-") as code:
            for name in classifier_module.SHIPPED_MODULES:
                (Path(code) / "mlplab" / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(package / name, Path(code) / "mlplab" / name)
            torch_version = importlib.metadata.version("torch").split("+")[0]  # a local "+cpu" is on no index
            # Explicit requirements: inferring them costs ~6 s a model. MLflow adds its own pin.
            return mlflow.pytorch.log_model(
                model, name=model_name(self.cfg), run_id=self.run_id, input_example=example, signature=signature,
                serialization_format="pickle", code_paths=[str(Path(code) / "mlplab")],
                pip_requirements=[f"torch=={torch_version}"],
                metadata={"class_names": splits.class_names, "input": INPUT_SCHEMA,
                          "output": "class probabilities, one column per class name",
                          "standardization": {"mean": splits.pixel_mean, "std": splits.pixel_std},
                          "layers": layer_string(net.sizes), "activation": net.activation, "output_layer": net.output})


INPUT_SCHEMA = "float32 pixels in [0, 1], shape (N, 784): each 28x28 image row by row, as the IDX files hold it"


def model_name(cfg) -> str:
    """What MLflow lists the model as: ``mlplab-784-100-10-sigmoid``."""
    return f"mlplab-{layer_string(cfg.model.sizes)}-{cfg.model.activation}"


def description(cfg, result, sizes: Optional[dict]) -> str:
    """The run's description in MLflow's UI: what was trained, on what, and how it ended."""
    data = DATASETS[cfg.data.name].title
    if sizes:
        data += f" ({sizes['train']:,} training / {sizes['validation']:,} validation / {sizes['test']:,} test images)"
    ending = f"{result.status} after {result.epochs_run} of {cfg.trainer.epochs} epochs"
    if result.completed:
        ending += f": validation {percent(result.val_accuracy)}, test {percent(result.test_accuracy)}"
    elif result.detail:
        ending += f" ({result.detail})"
    return (f"A {layer_string(cfg.model.sizes)} {cfg.model.activation} network ({cfg.loss.name} cost, {cfg.optimizer.name} "
            f"lr={cfg.optimizer.lr:g}, mini-batches of {cfg.trainer.batch_size}) trained on {data}. "
            f"It ended {ending}.")


def final_metrics(result, model_id: Optional[str]) -> list:
    """A run's closing metrics, at step 0. They are the model's too: linked to it here, in the run's last batch.
    (The model is logged before them, so MLflow's own linking, which reads back every metric's history,
    ~30 ms, finds nothing to do.)"""
    from mlflow.entities import Metric

    now = now_ms()
    finals = {"test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
              SELECTION_METRIC: result.val_accuracy, "best_val_accuracy": result.best_val_accuracy,
              "train_seconds": result.train_seconds, "epochs_run": result.epochs_run}
    return [Metric(key, float(value), now, 0, model_id=model_id) for key, value in finals.items() if finite(value)]
