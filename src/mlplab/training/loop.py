"""Mini-batch stochastic gradient descent, as on the slides:

    for each epoch:
        shuffle the training images
        for each mini-batch B:
            feed forward, C = (1/|B|) Σ_{i∈B} Cᵢ
            backpropagate ∂C/∂w, ∂C/∂b (plus λ/n·w for L2, λ/n·sign w for L1)
            w ← w − η ∂C/∂w,  b ← b − η ∂C/∂b
        then the end-of-epoch hooks: record, keep the best, adapt η, checkpoint, callbacks, stopping rules

``train`` is the whole job: it returns a ``Result`` and writes it as ``result.json`` in ``out_dir``, and
its ``recorder`` hears of the data, every epoch and the end, whatever the ending.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm import tqdm

from ..data.augment import random_variants
from ..data.batches import mini_batches
from ..data.idx import checksum
from ..data.splits import Splits, load
from ..errors import ConfigError
from ..nn import initializers
from ..nn.costs import COSTS
from ..nn.model import build
from ..nn.regularization import WeightPenalty
from .checkpoint import load_checkpoint, save_checkpoint, save_tensors
from .device import resolve_device, training_threads
from .diagnostics import diagnostic_batch, slowdown
from .engines import make_engine
from .evaluate import evaluate
from .optim import Schedule, build_optimizer, replayed, set_lr
from .recorder import NoRecorder, Outcome, Recorder
from .result import EpochMetrics, Result, epoch_line, monitored_accuracy

log = logging.getLogger("mlplab")
EpochHook = Callable[[EpochMetrics], None]


class Pruned(Exception):
    """Raised by an epoch-end callback (a search's pruner) to stop a run that is not worth finishing."""

    status = "pruned"


class Stop(Exception):
    """Ends training before the last epoch; the weights trained so far are kept."""

    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def train(cfg, out_dir: Path, *, quiet: bool = False, on_epoch: Optional[EpochHook] = None,
          splits: Optional[Splits] = None, recorder: Optional[Recorder] = None) -> Result:
    """Train one network as ``cfg`` (a ``config.TrainConfig``) says. ``on_epoch`` runs after every epoch
    (a pruner raises ``Pruned`` from it); ``splits`` replaces loading ``cfg.data``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    job = Job(cfg, out_dir, recorder or NoRecorder(), [on_epoch] if on_epoch else [], splits, quiet)
    try:
        with training_threads(cfg):
            job.recorder.start()
            job.result.mlflow_run_id = job.recorder.run_id
            job.run()
    except BaseException as error:
        job.result.end_by(error)
        job.close(stopped_by=error)
        raise
    job.close()
    return job.result


class Job:
    """One training run's state: built by ``prepare``, trained by ``fit``, evaluated by ``finish``."""

    def __init__(self, cfg, out_dir: Path, recorder: Recorder, callbacks: list[EpochHook],
                 splits: Optional[Splits], quiet: bool):
        self.cfg, self.out_dir, self.recorder, self.callbacks, self.quiet = cfg, out_dir, recorder, callbacks, quiet
        self.splits, self.net = splits, None
        self.result = Result(status="failed")
        self.closed = False  # close() has begun: the run's ending is being (or was) written
        self.dropout_generator: Optional[torch.Generator] = None  # a population member's; None: torch's global one

    def outcome(self) -> Outcome:
        return Outcome(self.net, self.splits, "test" if self.cfg.trainer.evaluate_test else "validation")

    def run(self) -> None:
        self.prepare()
        self.conclude(*self.fit())

    def conclude(self, status: str, detail: str) -> None:
        """Training is over (finished, or stopped early): the final weights measured and saved, the ending said."""
        if status == "diverged":
            log.warning("diverged: %s", detail)
        self.finish(diverged=status == "diverged")
        save_tensors(self.out_dir / "model.pt", self.net.state_dict())
        self.result.end(status, detail)

    def close(self, stopped_by: Optional[BaseException] = None) -> None:
        """``result.json``, then the recorder's end, whatever stopped the job. Either may fail (a full disk, a
        signal): a completed job then ends failed or killed, and its run is closed all the same. The first such
        error is raised when nothing else stopped the job."""
        self.closed = True
        failures: list[BaseException] = []
        written = None
        try:
            self.result.write(self.out_dir)
            written = self.result.status
        except BaseException as error:
            failures.append(error)
            if self.result.completed:
                self.result.end_by(error, "writing result.json")
        if self.recorder.run_id is not None:
            try:
                self.recorder.end(self.result, self.out_dir, self.outcome())
            except BaseException as error:
                failures.append(error)
        if written is not None and written != self.result.status:  # the closing failed after result.json
            with contextlib.suppress(Exception):
                self.result.write(self.out_dir)
        if failures and stopped_by is None:
            raise failures[0]
        for error in failures:  # what stopped the job is the one line the user sees; these are its consequences
            log.debug("while closing the run: %s: %s", type(error).__name__, error)

    # ---- before the first epoch -------------------------------------------------------------------------
    def prepare(self) -> None:
        cfg, t = self.cfg, self.cfg.trainer
        device = resolve_device(t.device)
        self.result.device = str(device)
        if self.splits is None:
            self.splits = load(cfg.data, device)
        check_against_data(cfg, self.splits)
        self.recorder.on_data(self.splits, device)
        train_set = self.splits.train

        torch.manual_seed(t.seed)  # dropout masks
        self.net = build(cfg.model, cfg.loss.name, cfg.regularization.dropout).to(device)
        initializers.initialize(self.net, cfg.initializer, t.seed)
        self.cost = COSTS[cfg.loss.name]
        self.optimizer = build_optimizer(self.net.parameters(), cfg.optimizer)
        self.engine = make_engine(t.engine, self.net, self.cost, cfg.model.activation,
                                  WeightPenalty(cfg.regularization, len(train_set)), self.optimizer,
                                  plain_sgd=cfg.optimizer.name == "sgd")
        self.schedule = Schedule(cfg.schedule, cfg.optimizer.lr, t.epochs)
        self.shuffle = torch.Generator().manual_seed(t.seed)
        # Per image, gathered and written with its mini-batch: the one-hot target e_y (for δ^L), and z^L as the
        # image was trained on (the epoch's training accuracy, counted once the epoch is done).
        self.targets = torch.eye(self.splits.num_classes, dtype=train_set.x.dtype, device=device)[train_set.y]
        self.trained_z = train_set.x.new_empty((len(train_set), self.splits.num_classes))

        self.history: list[dict] = []
        self.best_state, self.first_epoch = None, 1
        self.data_sha256 = checksum(self.splits.source) if t.checkpoint or t.resume else ""  # what a resume must match
        if t.resume:
            state = load_checkpoint(Path(t.resume), self.net, self.optimizer, self.schedule, self.shuffle,
                                    asdict(cfg), self.data_sha256)
            self.history, self.best_state, self.first_epoch = state["history"], state["best_state"], state["epoch"] + 1
            self.result.validation_checks = state["validation_checks"]
        self.result.history = self.history
        self.best = replayed((h["epoch"], monitored_accuracy(h)) for h in self.history)  # for early stopping
        self.images_seen = self.history[-1]["images_seen"] if self.history else 0
        self.next_check = 0  # the images seen at which the next every-k-images validation is due (0: none)
        if t.validate_every and self.splits.validation is not None:
            self.next_check = (self.images_seen // t.validate_every + 1) * t.validate_every
        self.train_seconds = sum(h["seconds"] for h in self.history)
        self.end_of_epoch: list[EpochHook] = [self.record, self.keep_best, self.adapt_lr,
                                              *([self.save_checkpoint] if t.checkpoint else []),
                                              *self.callbacks, self.stopping_rules]

    # ---- the epochs -----------------------------------------------------------------------------------
    def fit(self) -> tuple[str, str]:
        """The slide's loop; returns (status, detail): finished, or why it stopped early."""
        try:
            for epoch in range(self.first_epoch, self.cfg.trainer.epochs + 1):
                clock = time.perf_counter()
                with self.progress_bar(epoch) as bar:
                    for start, end, x, y, y_onehot in self.shuffled_batches():
                        # feedforward, C = (1/|B|) Σ_{i∈B} Cᵢ; backpropagate; w ← w − η ∂C/∂w, b ← b − η ∂C/∂b
                        _, cost = self.engine.step(x, y, y_onehot, z_out=self.trained_z[start:end])
                        self.count(epoch, cost, end - start)
                        bar.update(end - start)
                self.end_epoch(self.measure(epoch, clock))
        except Stop as stop:
            return stop.status, stop.detail
        return "finished", ""

    def shuffled_batches(self):
        """The epoch's mini-batches: a fresh permutation, of this epoch's variant of every image when the data
        config draws random shifts or flips."""
        images = self.start_epoch()
        return mini_batches(self.permutation, self.cfg.trainer.batch_size, images, self.splits.train.y, self.targets)

    def start_epoch(self) -> torch.Tensor:
        """A fresh permutation (``self.permutation``) and the images it orders: this epoch's variant of every
        image when the data config draws random shifts or flips."""
        data, train_set = self.cfg.data, self.splits.train
        self.net.train()
        self.cost_sum, self.done = 0.0, 0
        self.permutation = torch.randperm(len(train_set), generator=self.shuffle).to(train_set.x.device)
        if data.random_shift or data.random_flip:
            return random_variants(train_set.x, data.random_shift, data.random_flip, self.splits.background, self.shuffle)
        return train_set.x

    def end_epoch(self, metrics: EpochMetrics) -> None:
        for hook in self.end_of_epoch:
            hook(metrics)

    def progress_bar(self, epoch: int) -> tqdm:
        t = self.cfg.trainer
        return tqdm(total=len(self.splits.train), desc=f"epoch {epoch}/{t.epochs}", unit="img", leave=False,
                    disable=True if self.quiet or not t.progress else None, mininterval=0.5)

    def count(self, epoch: int, cost: float, images: int) -> None:
        """A mini-batch's share of the epoch's figures; a non-finite cost ends the run (the engine left the
        weights alone), and every ``trainer.validate_every`` images the validation split is measured."""
        if not math.isfinite(cost):
            raise Stop("diverged", diverged_at(cost, epoch, self.images_seen))
        self.cost_sum += cost * images
        self.advance(images)

    def advance(self, images: int) -> None:
        """``images`` more trained on; every ``trainer.validate_every`` images the validation split is measured."""
        self.images_seen += images
        self.done += images
        if self.check_due:
            loss, accuracy = evaluate(self.net, self.splits.validation, self.cost)
            check = {"images_seen": self.images_seen, "val_loss": loss, "val_accuracy": accuracy}
            self.result.validation_checks.append(check)
            self.recorder.on_check(check)
            self.next_check += self.cfg.trainer.validate_every

    @property
    def check_due(self) -> bool:
        return bool(self.next_check) and self.images_seen >= self.next_check

    def measure(self, epoch: int, clock: float) -> EpochMetrics:
        validation = self.splits.validation
        val_loss, val_accuracy = evaluate(self.net, validation, self.cost) if validation is not None else (None, None)
        correct = int((self.trained_z[: self.done].argmax(dim=1) == self.splits.train.y[self.permutation[: self.done]]).sum())
        return self.epoch_metrics(epoch, time.perf_counter() - clock, correct, val_loss, val_accuracy)

    def epoch_metrics(self, epoch: int, seconds: float, correct: int, val_loss: Optional[float],
                      val_accuracy: Optional[float]) -> EpochMetrics:
        """The epoch's figures from what was counted while training (``correct``: images trained on whose
        z^L named their class) and the validation pass."""
        train_set, n = self.splits.train, len(self.splits.train)
        metrics = EpochMetrics(epoch, self.optimizer.param_groups[0]["lr"], self.cost_sum / n, correct / n,
                               val_loss, val_accuracy, seconds, self.images_seen)
        if self.cfg.trainer.diagnostics:  # measured after the epoch's clock stopped: it is not training time
            metrics.diagnostics = slowdown(self.net, self.cfg.loss.name, self.cfg.model.activation,
                                           *diagnostic_batch(train_set.x, train_set.y))
        return metrics

    # ---- the end-of-epoch hooks, in order ---------------------------------------------------------------
    def record(self, metrics: EpochMetrics) -> None:
        self.train_seconds += metrics.seconds
        self.history.append(asdict(metrics))
        self.recorder.on_epoch(self.history[-1])
        self.result.train_seconds, self.result.epochs_run = self.train_seconds, len(self.history)
        log.info(epoch_line(metrics, self.cfg.trainer.epochs))

    def keep_best(self, metrics: EpochMetrics) -> None:
        if self.best.update(metrics.epoch, metrics.monitored) and self.cfg.trainer.keep_best:
            self.best_state = copy.deepcopy(self.net.state_dict())

    def adapt_lr(self, metrics: EpochMetrics) -> None:
        set_lr(self.optimizer, self.schedule.after_epoch(metrics.epoch, metrics.monitored))

    def save_checkpoint(self, metrics: EpochMetrics) -> None:
        save_checkpoint(self.out_dir / "checkpoint.pt", self.net, self.optimizer, self.schedule, self.shuffle,
                        metrics.epoch, self.history, self.best_state, self.result.validation_checks,
                        asdict(self.cfg), self.data_sha256, self.dropout_generator)

    def stopping_rules(self, metrics: EpochMetrics) -> None:
        patience = self.cfg.trainer.early_stopping_patience
        if patience and self.best.epochs_since_best >= patience:
            raise Stop("early_stopped", f"no better validation accuracy in {self.best.epochs_since_best} epochs")
        if self.schedule.stop:
            raise Stop("early_stopped", f"learning rate fell to η₀·{self.cfg.schedule.min_lr_ratio:g}")

    # ---- after the last epoch -------------------------------------------------------------------------
    def finish(self, diverged: bool) -> None:
        """The final weights (the best epoch's with ``trainer.keep_best``), measured on validation and test."""
        t, result, validation = self.cfg.trainer, self.result, self.splits.validation
        kept_best = t.keep_best and self.best_state is not None
        if kept_best:
            self.net.load_state_dict(self.best_state)
        if self.history and validation is not None:
            result.best_epoch = self.best.best_epoch
            result.best_val_accuracy = self.history[self.best.best_epoch - 1]["val_accuracy"]
        if validation is not None:
            # The last epoch already measured these weights, unless keep_best swapped them or divergence cut it short.
            same_weights = self.history and not kept_best and not diverged
            result.val_accuracy = self.history[-1]["val_accuracy"] if same_weights else evaluate(self.net, validation, self.cost)[1]
        if t.evaluate_test:
            result.test_loss, result.test_accuracy = evaluate(self.net, self.splits.test, self.cost)


def diverged_at(cost: float, epoch: int, images_seen: int) -> str:
    return f"non-finite cost {cost} in epoch {epoch} at image {images_seen}"


def check_against_data(cfg, splits: Splits) -> None:
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
