"""Mini-batch stochastic gradient descent, as on the slides, composed from the other modules.

    for each epoch:
        shuffle the training images
        for each mini-batch B:
            feed forward, C = (1/|B|) Σ_{i∈B} Cᵢ
            backpropagate ∂C/∂w, ∂C/∂b (plus λ/n·w for L2, λ/n·sign w for L1)
            w ← w − η ∂C/∂w,  b ← b − η ∂C/∂b
        monitor validation accuracy; adapt η; stop early when it has saturated

``train`` is the whole job: it returns a ``Result`` and writes it as ``result.json`` in ``out_dir``.
``cli`` is the ``mlplab-train`` Hydra app over ``conf/train.yaml``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm import tqdm

from . import data as data_module
from . import initializers, losses, model as model_module
from .augment import random_variants
from .backprop import make_engine
from .diagnostics import diagnostic_batch, slowdown
from .checkpoint import load_checkpoint, save_checkpoint
from .cli import write_json
from .config import ConfigError, TrainConfig, to_typed
from .optim import Schedule, build_optimizer, set_lr
from .regularization import WeightPenalty
from .tracking import Recorder

log = logging.getLogger("mlplab")
EVAL_BATCH = 10_000  # evaluation runs in a few large batches: fast, and bounded in memory
SMALL_BATCH = 64  # below this, one CPU thread is faster: per-op overhead dominates and a second thread only waits
SHUFFLE_CHUNK = 8192  # images gathered per shuffled block: mini-batches are then views, not a gather each


class Pruned(Exception):
    """Raised by an ``on_epoch`` callback (a search's pruner) to stop a run that is not worth finishing."""


@dataclass
class EpochMetrics:
    epoch: int
    lr: float
    train_loss: float  # mean data cost over the epoch's mini-batches (the weights move during the epoch)
    train_accuracy: float
    val_loss: Optional[float]
    val_accuracy: Optional[float]
    seconds: float  # wall time of the epoch, its validation pass included
    images_seen: int
    diagnostics: dict = field(default_factory=dict)  # trainer.diagnostics: diagnostics.slowdown per layer


@dataclass
class Result:
    status: str  # finished | diverged | early_stopped | killed | failed | pruned
    val_accuracy: Optional[float] = None  # of the final model (the best epoch's with trainer.keep_best)
    best_val_accuracy: Optional[float] = None
    best_epoch: Optional[int] = None
    test_accuracy: Optional[float] = None
    test_loss: Optional[float] = None
    train_seconds: float = 0.0
    epochs_run: int = 0
    mlflow_run_id: Optional[str] = None
    detail: str = ""
    device: str = ""
    history: list[dict] = field(default_factory=list)
    validation_checks: list[dict] = field(default_factory=list)  # the every-k-images values

    def write(self, out_dir: Path) -> Path:
        return write_json(out_dir / "result.json", asdict(self))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is visible: use trainer.device=auto or cpu")
    return torch.device(name)


@torch.inference_mode()
def evaluate(model: model_module.MLP, split: data_module.Split, cost: losses.Cost) -> tuple[float, float]:
    """(mean cost, accuracy) of ``model`` on a whole split, in inference mode."""
    was_training = model.training
    model.eval()
    total_cost = torch.zeros((), device=split.x.device)
    correct = torch.zeros((), device=split.x.device, dtype=torch.int64)
    for start in range(0, len(split), EVAL_BATCH):
        x, y = split.x[start : start + EVAL_BATCH], split.y[start : start + EVAL_BATCH]
        z = model(x)
        total_cost += cost(z, y, model.output) * len(y)
        correct += (z.argmax(dim=1) == y).sum()
    model.train(was_training)
    return float(total_cost) / len(split), int(correct) / len(split)


@torch.inference_mode()
def predict(model: model_module.MLP, x: torch.Tensor) -> torch.Tensor:
    """The class each image is assigned: argmax of a^L (the same as argmax of z^L)."""
    was_training = model.training
    model.eval()
    predicted = torch.cat([model(x[start : start + EVAL_BATCH]).argmax(dim=1) for start in range(0, len(x), EVAL_BATCH)])
    model.train(was_training)
    return predicted


def mini_batches(permutation: torch.Tensor, batch_size: int, *tensors: torch.Tensor):
    """(start, end, *batches) of each mini-batch of the epoch's ``permutation``, one batch from each of
    ``tensors`` (rows aligned: images, labels, …). The rows are gathered a block at a time (a multiple of the
    batch size) into reused buffers, so a tiny batch costs a slice, not an index operation, and no fresh
    memory is touched. A batch is a view: valid until the next one is drawn."""
    block = batch_size * max(1, SHUFFLE_CHUNK // batch_size)
    buffers = [t.new_empty((min(block, len(permutation)), *t.shape[1:])) for t in tensors]
    for block_start in range(0, len(permutation), block):
        indices = permutation[block_start : block_start + block]
        count = indices.shape[0]
        blocks = [buffer[:count] for buffer in buffers]
        for source, gathered in zip(tensors, blocks):
            torch.index_select(source, 0, indices, out=gathered)
        for start in range(0, count, batch_size):
            end = min(start + batch_size, count)
            yield (block_start + start, block_start + end, *[gathered[start:end] for gathered in blocks])


def check_against_data(cfg: TrainConfig, splits: data_module.Splits) -> None:
    sizes = cfg.model.sizes
    if sizes[0] != splits.input_size:
        raise ConfigError(f"model.sizes starts with {sizes[0]} but the images have {splits.input_size} pixels: "
                          f"use model.sizes=[{splits.input_size},...]")
    if sizes[-1] != splits.num_classes:
        raise ConfigError(f"model.sizes ends with {sizes[-1]} but the data has {splits.num_classes} classes: "
                          f"use model.sizes=[...,{splits.num_classes}]")
    if cfg.trainer.batch_size > len(splits.train):
        raise ConfigError(f"trainer.batch_size={cfg.trainer.batch_size} exceeds the {len(splits.train)} "
                          "training images: lower it")


def train(
    cfg: TrainConfig,
    out_dir: Path,
    *,
    quiet: bool = False,
    on_epoch: Optional[Callable[[EpochMetrics], None]] = None,
    splits: Optional[data_module.Splits] = None,
    recorder: Optional[Recorder] = None,
) -> Result:
    """Train one network as ``cfg`` says; the result is also written to ``out_dir/result.json``.

    ``recorder`` (e.g. an MLflow run) hears of every epoch and of the end, whatever the ending."""
    out_dir.mkdir(parents=True, exist_ok=True)
    recorder = recorder or Recorder()
    threads = cfg.trainer.threads or (1 if cfg.trainer.batch_size < SMALL_BATCH else None)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    result = Result(status="failed")
    job = _Job()
    try:
        recorder.start()
        result.mlflow_run_id = recorder.run_id
        _train(cfg, out_dir, result, quiet, on_epoch, splits, recorder, job)
    except KeyboardInterrupt:
        result.status, result.detail = "killed", "interrupted (SIGINT/SIGTERM)"
        raise
    except Pruned as pruned:
        result.status, result.detail = "pruned", str(pruned)
        raise
    except Exception as error:
        result.status, result.detail = "failed", f"{type(error).__name__}: {error}"
        raise
    finally:
        torch.set_num_threads(previous_threads)
        result.write(out_dir)
        if recorder.run_id is not None:
            recorder.end(result, out_dir, job.net, job.splits)
    return result


@dataclass
class _Job:
    """What the recorder needs at the end, if training got that far."""

    net: Optional[model_module.MLP] = None
    splits: Optional[data_module.Splits] = None


def _train(cfg, out_dir, result, quiet, on_epoch, splits, recorder, job) -> None:
    t = cfg.trainer
    device = resolve_device(t.device)
    result.device = str(device)
    if splits is None:
        splits = data_module.load(cfg.data, device)
    check_against_data(cfg, splits)
    recorder.on_data(splits, device)
    train_set, validation, test = splits.train, splits.validation, splits.test

    torch.manual_seed(t.seed)  # dropout masks
    net = model_module.build(cfg.model, cfg.loss.name, cfg.regularization.dropout).to(device)
    initializers.initialize(net, cfg.initializer, t.seed)
    job.net, job.splits = net, splits
    cost = losses.COSTS[cfg.loss.name]
    penalty = WeightPenalty(cfg.regularization, len(train_set))
    optimizer = build_optimizer(net.parameters(), cfg.optimizer)
    engine = make_engine(t.engine, net, cfg.loss.name, cost, cfg.model.activation, penalty, optimizer,
                         plain_sgd=cfg.optimizer.name == "sgd")
    schedule = Schedule(cfg.schedule, cfg.optimizer.lr, t.epochs)
    shuffle = torch.Generator().manual_seed(t.seed)

    # Per image, gathered and written with its mini-batch: the one-hot target e_y (for δ^L), and z^L as the
    # image was trained on (the epoch's training accuracy, counted once the epoch is done).
    targets = torch.eye(splits.num_classes, dtype=train_set.x.dtype, device=device)[train_set.y]
    trained_z = train_set.x.new_empty((len(train_set), splits.num_classes))

    history: list[dict] = []
    best_state, start_epoch = None, 1
    if t.resume:
        state = load_checkpoint(Path(t.resume), net, optimizer, schedule, shuffle, cfg.model.sizes)
        history, best_state, start_epoch = state["history"], state["best_state"], state["epoch"] + 1
        result.validation_checks = state["validation_checks"]
    result.history = history

    n, batch_size = len(train_set), t.batch_size
    images_seen = history[-1]["images_seen"] if history else 0
    next_check = (images_seen // t.validate_every + 1) * t.validate_every if t.validate_every else 0
    train_seconds = sum(h["seconds"] for h in history)
    status, detail = "finished", ""

    for epoch in range(start_epoch, t.epochs + 1):
        started = time.perf_counter()
        net.train()
        lr = optimizer.param_groups[0]["lr"]
        permutation = torch.randperm(n, generator=shuffle).to(device)
        images = train_set.x
        if cfg.data.random_shift or cfg.data.random_flip:  # this epoch's variant of every image
            images = random_variants(images, cfg.data.random_shift, cfg.data.random_flip, splits.background, shuffle)
        cost_sum, done = 0.0, 0
        bar = tqdm(total=n, desc=f"epoch {epoch}/{t.epochs}", unit="img", disable=True if quiet or not t.progress else None,
                   leave=False, mininterval=0.5)
        for start, end, x, y, y_onehot in mini_batches(permutation, batch_size, images, train_set.y, targets):
            # feedforward, C = (1/|B|) Σ_{i∈B} Cᵢ; backpropagate; w ← w − η ∂C/∂w, b ← b − η ∂C/∂b
            _, loss_value = engine.step(x, y, y_onehot, z_out=trained_z[start:end])
            if not math.isfinite(loss_value):  # the engine left the weights alone
                status, detail = "diverged", f"non-finite cost {loss_value} in epoch {epoch} at image {images_seen}"
                break
            cost_sum += loss_value * (end - start)
            images_seen += end - start
            done = end
            bar.update(end - start)
            if t.validate_every and validation is not None and images_seen >= next_check:
                check_loss, check_accuracy = evaluate(net, validation, cost)
                check = {"images_seen": images_seen, "val_loss": check_loss, "val_accuracy": check_accuracy}
                result.validation_checks.append(check)
                recorder.on_check(check)
                next_check += t.validate_every
        bar.close()
        if status == "diverged":
            log.warning("diverged: %s", detail)
            break

        val_loss, val_accuracy = evaluate(net, validation, cost) if validation is not None else (None, None)
        correct = int((trained_z[:done].argmax(dim=1) == train_set.y[permutation[:done]]).sum())
        metrics = EpochMetrics(epoch, lr, cost_sum / n, correct / n,
                               val_loss, val_accuracy, time.perf_counter() - started, images_seen)
        if t.diagnostics:  # measured after the epoch's clock stopped: it is not training time
            metrics.diagnostics = slowdown(net, cfg.loss.name, cfg.model.activation, *diagnostic_batch(train_set.x, train_set.y))
        train_seconds += metrics.seconds
        history.append(asdict(metrics))
        recorder.on_epoch(history[-1])
        result.train_seconds, result.epochs_run = train_seconds, len(history)
        log.info(_epoch_line(metrics, t.epochs))

        best_epoch, epochs_without_better = best_so_far(history)
        if t.keep_best and best_epoch == epoch:
            best_state = copy.deepcopy(net.state_dict())
        set_lr(optimizer, schedule.after_epoch(epoch, monitored_accuracy(metrics)))
        if t.checkpoint:
            save_checkpoint(out_dir / "checkpoint.pt", net, optimizer, schedule, shuffle, epoch, history,
                            best_state, result.validation_checks)
        if on_epoch is not None:
            on_epoch(metrics)
        if t.early_stopping_patience and epochs_without_better >= t.early_stopping_patience:
            status, detail = "early_stopped", f"no better validation accuracy in {epochs_without_better} epochs"
            break
        if schedule.stop:
            status, detail = "early_stopped", f"learning rate fell to η₀·{cfg.schedule.min_lr_ratio:g}"
            break

    if t.keep_best and best_state is not None:
        net.load_state_dict(best_state)
    if history and validation is not None:
        best_epoch, _ = best_so_far(history)
        result.best_epoch, result.best_val_accuracy = best_epoch, history[best_epoch - 1]["val_accuracy"]
    if validation is not None:
        # The last epoch already measured these weights, unless keep_best swapped them or divergence cut it short.
        same_weights = history and status != "diverged" and not (t.keep_best and best_state is not None)
        result.val_accuracy = history[-1]["val_accuracy"] if same_weights else evaluate(net, validation, cost)[1]
    if t.evaluate_test:
        result.test_loss, result.test_accuracy = evaluate(net, test, cost)
    result.status, result.detail = status, detail
    torch.save(net.state_dict(), out_dir / "model.pt")


def monitored_accuracy(metrics: EpochMetrics | dict) -> float:
    """What early stopping and the plateau schedules watch: validation accuracy, else training accuracy."""
    m = metrics if isinstance(metrics, dict) else asdict(metrics)
    return m["val_accuracy"] if m["val_accuracy"] is not None else m["train_accuracy"]


def best_so_far(history: list[dict]) -> tuple[int, int]:
    """(the epoch with the best monitored accuracy — the first one on ties, epochs since then)."""
    accuracies = [monitored_accuracy(h) for h in history]
    best_index = max(range(len(accuracies)), key=lambda i: (accuracies[i], -i))
    return history[best_index]["epoch"], len(history) - 1 - best_index


def _epoch_line(m: EpochMetrics, epochs: int) -> str:
    line = (f"epoch {m.epoch:>3}/{epochs}  lr {m.lr:.4g}  train loss {m.train_loss:.4f} "
            f"acc {100 * m.train_accuracy:.2f}%")
    if m.val_accuracy is not None:
        line += f"  val loss {m.val_loss:.4f} acc {100 * m.val_accuracy:.2f}%"
    return line + f"  {m.seconds:.2f}s"


def summary_line(cfg: TrainConfig, result: Result, out_dir: Path) -> str:
    def pct(x: Optional[float]) -> str:
        return "n/a" if x is None else f"{100 * x:.2f}%"

    what = f"{cfg.name} {model_module.layer_string(cfg.model.sizes)} {cfg.model.activation} {cfg.optimizer.name} lr={cfg.optimizer.lr:g}"
    return (f"{what}: {result.status} after {result.epochs_run} epochs in {result.train_seconds:.1f}s"
            f" — val {pct(result.val_accuracy)}, test {pct(result.test_accuracy)}"
            f"{'' if result.test_loss is None else f' (loss {result.test_loss:.4f})'} → {out_dir / 'result.json'}")


def cli() -> None:
    from .cli import run_hydra_app

    run_hydra_app(_hydra_task, config_name="train")


def _hydra_task(cfg) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .tracking import recorder_for

    typed: TrainConfig = to_typed(cfg)  # runs the range checks in config.py
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    recorder = recorder_for(typed, list(hydra_cfg.overrides.task),
                            sweep_dir=Path(hydra_cfg.sweep.dir).resolve() if multirun else None,
                            job_num=hydra_cfg.job.num if multirun else None)
    result = train(typed, out_dir, quiet=multirun, recorder=recorder)
    print(summary_line(typed, result, out_dir), flush=True)
    return result.val_accuracy  # what a sweep optimises
