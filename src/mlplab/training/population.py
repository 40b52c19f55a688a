"""A population: K training jobs of one shape trained in lockstep as one batched network (``nn/population.py``).

Each member is a whole ``loop.Job`` — its own config, output folder, recorder, schedule, early stopping,
callbacks (a search's pruner), checkpoint, ``result.json`` and model — and only the mini-batch step is taken
together, on stacked weights:

    for each epoch:
        every member shuffles with its own generator (members of one seed share their mini-batches)
        for each mini-batch: feed forward all K, C_k per member, backpropagate, each member's own update
        every member's weights back into its own network; its end-of-epoch hooks, as when it runs alone

A member that stops — diverged, early stopped, pruned, failed, or through with its epochs — is concluded and
its run closed at once; the others go on without it. Ctrl-C or SIGTERM ends every member still training.
On an accelerator a diverged member is only marked on the device and leaves at the epoch's end (see
``COSTS_READ_EACH_STEP_ON``), with the same weights and the same record.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..data.batches import mini_batches
from ..keys import dotted, matches
from ..nn.population import StackedMLP
from .device import resolve_device, training_threads
from .evaluate import evaluate_stacked
from .loop import EpochHook, Job, Stop, diverged_at
from .optim import StackedOptimizer
from .recorder import NoRecorder, Recorder
from .result import Result

log = logging.getLogger("mlplab")

# What members of one population may set each on their own: the numbers a sweep varies, and what each job
# does around its training. Everything else — the data, the network's shape, the cost, the optimiser's rule,
# the mini-batch size, the engine, the device — they share.
MAY_DIFFER = ("optimizer.lr", "optimizer.momentum", "regularization.l2", "regularization.l1",
              "regularization.dropout", "trainer.seed", "initializer.*", "schedule.*", "trainer.epochs",
              "trainer.early_stopping_patience", "trainer.keep_best", "trainer.checkpoint", "trainer.validate_every",
              "trainer.evaluate_test", "trainer.progress", "trainer.diagnostics", "trainer.threads", "tracking.*",
              "name")


# Where the host reads every step's costs to stop a diverging member at once. On a CPU the read costs only
# itself; on an accelerator it would wait for the queue of launched work to drain, every step. There the step
# keeps to the device instead: a member whose cost is not finite is marked and its parameters put back as they
# were before the step, and it leaves at the epoch's end — its weights and its record as if it had left then.
COSTS_READ_EACH_STEP_ON = ("cpu",)


# On a CPU, a network whose widest layer costs more multiply-adds per mini-batch than this trains no faster in
# a population: its GEMMs are the limit and a batched GEMM is no faster than its parts (bench/RESULTS.md,
# 2026-12-02: 0.97× at 300·784·1000; the Q3 final's 128·784·1024, three seeds, 0.8×), so it trains alone there.
CPU_ALONE_ABOVE_MACS = 50_000_000


def population_key(cfg) -> Optional[tuple]:
    """What a job shares with the other members of its population (equal keys: one population), or None when
    it trains alone: when it cannot share (``shape_key``), or on a CPU a network wide enough to be bound by
    its GEMMs."""
    sizes = cfg.model.sizes
    widest = max(cfg.trainer.batch_size * n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    if widest > CPU_ALONE_ABOVE_MACS and resolve_device(cfg.trainer.device).type == "cpu":
        return None
    return shape_key(cfg)


def shape_key(cfg) -> Optional[tuple]:
    """What members of one population must share, or None when the job cannot join one: a prelu network
    (each member would learn its own slope), or a resumed run."""
    if cfg.model.activation == "prelu" or cfg.trainer.resume:
        return None
    augmented = cfg.data.random_shift or cfg.data.random_flip  # one variant of the images per seed: share it
    return tuple(sorted((key, repr(value)) for key, value in dotted(asdict(cfg)).items()
                        if not matches(key, MAY_DIFFER) or (augmented and key == "trainer.seed")))


def groups(keys: Sequence[Optional[object]], max_members: int) -> list[list[int]]:
    """Job indices grouped by key, in the order of each group's first job, at most ``max_members`` a group;
    a job without a key is a group of its own."""
    filling: dict[object, list[int]] = {}  # key → its group still taking members
    ordered: list[list[int]] = []
    for index, key in enumerate(keys):
        group = filling.get(key) if key is not None else None
        if group is None or len(group) >= max_members:
            group = [index]
            ordered.append(group)
            if key is not None:
                filling[key] = group
        else:
            group.append(index)
    return ordered


@dataclass
class Member:
    """How a member ended: its ``Result``, and the error that ended it, if one did."""

    result: Result
    error: Optional[BaseException] = None


def train_population(cfgs: Sequence, out_dirs: Sequence[Path], *, recorders: Optional[Sequence[Recorder]] = None,
                     callbacks: Optional[Sequence[Optional[EpochHook]]] = None, splits=None) -> list[Member]:
    """Train the jobs ``cfgs`` (``config.TrainConfig``s of one ``shape_key``) as one population; each
    writes its ``result.json`` into its ``out_dirs`` entry and tells its recorder, as ``loop.train`` does.
    ``callbacks[k]`` runs after each of member k's epochs (a pruner raises ``Pruned`` from it). A member's
    failure ends that member; Ctrl-C / SIGTERM ends them all, killed, and is raised."""
    keys = {shape_key(cfg) for cfg in cfgs}
    if None in keys or len(keys) != 1:
        raise ValueError("train_population needs jobs that share a shape_key")
    recorders = recorders or [NoRecorder() for _ in cfgs]
    callbacks = callbacks or [None for _ in cfgs]
    jobs = [Job(cfg, Path(out_dir), recorder, [hook] if hook else [], splits, quiet=True)
            for cfg, out_dir, recorder, hook in zip(cfgs, out_dirs, recorders, callbacks)]
    population = None
    try:
        with training_threads(cfgs[0], members=len(cfgs)):
            for job in jobs:
                job.out_dir.mkdir(parents=True, exist_ok=True)
                job.recorder.start()
                job.result.mlflow_run_id = job.recorder.run_id
            for job in jobs:
                job.splits = job.splits or jobs[0].splits  # loaded once, by the first
                job.prepare()
                job.dropout_generator = dropout_generator(job)
                # One set of one-hot targets serves all; z^L as trained is kept in the population's stack.
                job.targets, job.trained_z = jobs[0].targets, jobs[0].trained_z[:0]
            population = Population(jobs)
            population.fit()
    except BaseException as error:
        if population is not None and population.deferred and population.jobs:
            with contextlib.suppress(Exception):  # those that diverged before it end diverged, as on a CPU
                population.leave_diverged_on_device(population.epoch)
        for job in jobs:
            if not job.closed:
                job.result.end_by(error)
                job.close(stopped_by=error)
        raise
    return [Member(job.result, population.errors.get(id(job))) for job in jobs]


def dropout_generator(job: Job) -> torch.Generator:
    """The generator member ``job`` draws its dropout masks from: on the CPU the global one's state right after
    its network was built (where its solo run's masks begin); on a GPU that device's, seeded as its solo run's."""
    device = job.net.layers[0].weight.device
    if device.type == "cpu":
        generator = torch.Generator()
        generator.set_state(torch.get_rng_state())
        return generator
    return torch.Generator(device=device).manual_seed(job.cfg.trainer.seed)


class Population:
    """The members still training, row k of every stacked tensor being ``jobs[k]``."""

    def __init__(self, jobs: list[Job]):
        first = jobs[0]
        self.jobs, self.splits, self.cost = list(jobs), first.splits, first.cost
        self.errors: dict[int, BaseException] = {}  # id(job) → what ended it
        self.autograd = first.cfg.trainer.engine == "autograd"
        self.fused = not self.autograd and first.cfg.optimizer.name == "sgd"  # the update inside backpropagation
        self.shared = len({job.cfg.trainer.seed for job in jobs}) == 1  # one permutation: one batch for all
        self.net = StackedMLP([job.net for job in jobs], first.cfg.loss.name, requires_grad=self.autograd,
                              dropout=[job.cfg.regularization.dropout for job in jobs],
                              dropout_rngs=[job.dropout_generator for job in jobs])
        self.optimizer = StackedOptimizer(first.cfg.optimizer, [job.cfg.optimizer.momentum for job in jobs])
        device, n = first.net.layers[0].weight.device, len(self.splits.train)
        self.l2_over_n = torch.tensor([job.cfg.regularization.l2 / n for job in jobs], device=device)
        self.l1_over_n = torch.tensor([job.cfg.regularization.l1 / n for job in jobs], device=device)
        self.trained_z = torch.empty((len(jobs), n, self.splits.num_classes), device=device)  # as Job.trained_z
        self.cost_sums = torch.zeros(len(jobs), device=device)
        self.penalised = (bool(self.l2_over_n.any()), bool(self.l1_over_n.any()))  # known once: no sync per step
        self.permutations: Optional[torch.Tensor] = None  # (K, n) when the members shuffle apart
        self.checking = any(job.next_check for job in jobs)  # some member validates every k images
        self.uncounted = 0  # images every member trained on since its count was last brought up to date
        # Divergence kept on the device (COSTS_READ_EACH_STEP_ON); validating every k images reads anyway.
        self.deferred = device.type not in COSTS_READ_EACH_STEP_ON and not self.checking
        self.going = torch.ones(len(jobs), dtype=torch.bool, device=device)  # no non-finite cost yet
        self.last_cost = torch.zeros(len(jobs), device=device)  # while going, its latest; then its first non-finite
        self.images_going = torch.zeros(len(jobs), dtype=torch.long, device=device)  # this epoch, while going
        self.before: Optional[list[torch.Tensor]] = None  # the parameters before the step, to put back
        self.epoch = 1

    # ---- the epochs -------------------------------------------------------------------------------------
    def fit(self) -> None:
        while self.jobs:
            epoch = self.epoch
            clock = time.perf_counter()
            self.lr = torch.tensor([job.optimizer.param_groups[0]["lr"] for job in self.jobs],
                                   device=self.cost_sums.device)
            self.step_m, self.penalty_factors = 0, self.penalties()
            self.cost_sums.zero_()
            self.images_going.zero_()
            for start, end, x, y, y_onehot in self.batches():
                if not self.step(epoch, x, y, y_onehot, self.trained_z[:, start:end]):
                    return  # every member diverged
                self.advance(end - start)
            self.end_epoch(epoch, clock)
            self.epoch += 1

    def batches(self):
        """Each member's epoch order from its own generator, exactly as alone. Members of one seed draw the same
        order, so the first draws it and the others take its permutation and generator state; members of
        different seeds get their rows gathered per mini-batch, (K, m, …)."""
        first, train_set = self.jobs[0], self.splits.train
        images = first.start_epoch()
        batch_size = first.cfg.trainer.batch_size
        for job in self.jobs[1:]:
            if self.shared:
                job.net.train()
                job.cost_sum, job.done, job.permutation = 0.0, 0, first.permutation
                job.shuffle.set_state(first.shuffle.get_state())
            else:
                job.start_epoch()
        if self.shared:
            yield from mini_batches(first.permutation, batch_size, images, train_set.y, first.targets)
            return
        self.permutations = torch.stack([job.permutation for job in self.jobs])
        n = len(train_set)
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            rows = self.permutations[:, start:end]  # read each time: members may have left
            flat = rows.reshape(-1)
            yield (start, end, images.index_select(0, flat).view(*rows.shape, -1), train_set.y[rows],
                   first.targets.index_select(0, flat).view(*rows.shape, -1))

    def step(self, epoch: int, x: torch.Tensor, y: torch.Tensor, y_onehot: torch.Tensor, z_out: torch.Tensor) -> bool:
        """Every member's step on its mini-batch; a member whose cost is not finite stops (diverged) with the
        weights it had. False when no member is left."""
        delta, grads = None, None
        if self.autograd:
            with torch.enable_grad():
                fwd = self.net.feedforward(x)
                costs = self.cost.means(fwd.z[-1], fwd.a[-1], y_onehot, self.net.output)
            values = costs.detach()
        else:  # the four equations: no autograd bookkeeping in any op (about a tenth of a tiny step)
            with torch.inference_mode():
                fwd = self.net.feedforward(x)
                values, delta = self.net.output_error(fwd, y_onehot)
        z_out.copy_(fwd.z[-1].detach())
        if self.deferred:
            self.step_on_device(x, fwd, costs if self.autograd else None, values, delta)
            return True
        all_finite = math.isfinite(values.sum())  # one reduction and one read per step (inf/nan stay so in a sum)
        finite = torch.isfinite(values) if not all_finite else None
        if self.autograd:  # of the members as they are now: a diverged one's gradient is dropped below
            grads = self.autograd_gradients(costs if all_finite else torch.where(finite, costs, 0.0))
        if not all_finite:  # rare: those members leave before any weight moves
            kept = self.leave_diverged(epoch, values, finite)
            if not kept:
                return False
            index = torch.tensor(kept, device=values.device)
            values = values.index_select(0, index)
            if grads is not None:
                grads = [g.index_select(0, index) for g in grads]
            if delta is not None:
                delta = delta.index_select(0, index)
            fwd = fwd.keep(index)
        self.move(x.shape[-2], fwd, delta, grads)
        self.cost_sums.add_(values, alpha=x.shape[-2])
        return True

    def step_on_device(self, x: torch.Tensor, fwd, costs: Optional[torch.Tensor], values: torch.Tensor,
                       delta: Optional[torch.Tensor]) -> None:
        """``step`` with no read from the device: a member whose cost is not finite stops going, every member
        moves, and those not going get their parameters back (whatever their step computed, inf and nan
        included: ``where`` picks, it does not multiply). The marks are set last, so a member is marked only
        once its parameters are back (Ctrl-C may come between any two lines)."""
        m = x.shape[-2]
        finite = torch.isfinite(values)
        going = self.going & finite
        grads = self.autograd_gradients(torch.where(finite, costs, 0.0)) if self.autograd else None
        params = self.net.parameters()
        if self.before is None:
            self.before = [torch.empty_like(p, requires_grad=False) for p in params]
        with torch.no_grad():
            torch._foreach_copy_(self.before, [p.detach() for p in params])
            self.move(m, fwd, delta, grads)
            for p, before in zip(params, self.before):
                torch.where(going.view((-1,) + (1,) * (p.dim() - 1)), p, before, out=p)
        self.cost_sums.add_(values, alpha=m)
        torch.where(self.going, values, self.last_cost, out=self.last_cost)
        self.images_going.add_(going, alpha=m)
        self.going = going

    def move(self, m: int, fwd, delta: Optional[torch.Tensor], grads: Optional[list[torch.Tensor]]) -> None:
        """Every member's update from its gradients (autograd's, or the four equations' from δᴸ)."""
        with torch.inference_mode(not self.autograd):
            if self.fused:
                if m != self.step_m:  # −η/m per member: new each epoch, and for a shorter last mini-batch
                    self.step_m, self.step_size = m, self.lr / -m
                self.net.descend(fwd, delta, self.step_size, *self.penalty_factors)
            else:
                self.descend(grads if grads is not None else self.net.gradients(fwd, delta))

    @torch.no_grad()
    def descend(self, grads: list[torch.Tensor]) -> None:
        """The optimiser's step on every member, L2's λ/n·W and L1's λ₁/n·sign W added to the weights' gradients."""
        for W, gW in zip(self.net.W, grads[0::2]):
            if self.penalised[0]:
                gW.addcmul_(W, self.l2_over_n.view(-1, 1, 1))
            if self.penalised[1]:
                gW.addcmul_(torch.sign(W), self.l1_over_n.view(-1, 1, 1))
        self.optimizer.step(self.net.parameters(), grads, self.lr)

    def autograd_gradients(self, costs: torch.Tensor) -> list[torch.Tensor]:
        params = self.net.parameters()
        for p in params:
            p.grad = None
        costs.sum().backward()  # members are independent: each gets the gradient of its own C
        return [p.grad for p in params]

    def penalties(self) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Fused SGD's 1 − ηλ/n and −ηλ₁/n per member (None where no member has that penalty)."""
        return (1 - self.lr * self.l2_over_n if self.penalised[0] else None,
                -self.lr * self.l1_over_n if self.penalised[1] else None)

    def leave_diverged(self, epoch: int, costs: torch.Tensor, finite: torch.Tensor) -> list[int]:
        """The members of non-finite cost end diverged, with their weights before this step; returns the rows
        of those who stay."""
        self.count_up()
        return self.end_diverged(epoch, [row for row, ok in enumerate(finite.tolist()) if not ok], costs.tolist())

    def leave_diverged_on_device(self, epoch: int) -> None:
        """The members marked diverged in ``step_on_device`` end as they would have at once: their weights from
        before the step whose cost was not finite, their count of images up to it, that cost in their record."""
        going = self.going.tolist()
        if not all(going):
            # their images up to that step are not counted yet: the others' are brought up to date after
            self.end_diverged(epoch, [row for row, ok in enumerate(going) if not ok], self.last_cost.tolist(),
                              uncounted=self.images_going.tolist())

    def end_diverged(self, epoch: int, rows: list[int], costs: list[float],
                     uncounted: Optional[list[int]] = None) -> list[int]:
        """The members at ``rows`` end diverged, with the weights they have and their non-finite cost in their
        record (``uncounted``: images each trained on that its count lacks); returns the rows of those who stay."""
        for row in rows:
            job = self.jobs[row]
            if job.closed:  # already ended, when Ctrl-C came while they were being ended
                continue
            if uncounted is not None:
                job.advance(uncounted[row])
            self.net.write_member(row, job.net)
            self.end_member(job, "diverged", diverged_at(costs[row], epoch, job.images_seen))
        return self.drop(rows)

    def advance(self, images: int) -> None:
        """``images`` more trained on by every member. Without every-k-images validations the members' counts
        are brought up to date only when read (``count_up``): a Python loop over K members per step is
        measurable at Nielsen's mini-batch of 10."""
        self.uncounted += images
        if self.checking:
            self.count_up()

    def count_up(self) -> None:
        images, self.uncounted = self.uncounted, 0
        for row, job in enumerate(self.jobs):
            if job.next_check and job.images_seen + images >= job.next_check:
                self.net.write_member(row, job.net)  # its every-k-images validation measures its own network
            job.advance(images)

    def end_epoch(self, epoch: int, clock: float) -> None:
        """Every member's figures (one stacked validation pass), its weights and state back in its own network
        and optimiser, then its end-of-epoch hooks; the members that stop leave the population."""
        if self.deferred:
            self.leave_diverged_on_device(epoch)
            if not self.jobs:
                return
        self.count_up()
        train_set, validation, done = self.splits.train, self.splits.validation, self.jobs[0].done
        order = self.jobs[0].permutation[:done] if self.permutations is None else self.permutations[:, :done]
        correct = (self.trained_z[:, :done].argmax(dim=-1) == train_set.y[order]).sum(dim=-1).tolist()
        K = len(self.jobs)
        val_loss, val_accuracy = evaluate_stacked(self.net, validation, self.cost) if validation is not None else ([None] * K, [None] * K)
        # A member's epoch time is its share of the population's: summed over members (a sweep's total, the
        # training time of an ensemble) it is the wall time the epoch took.
        seconds, cost_sums = (time.perf_counter() - clock) / K, self.cost_sums.tolist()
        stopped = []
        for row, job in enumerate(self.jobs):
            self.net.write_member(row, job.net)
            if job.cfg.trainer.checkpoint:
                self.optimizer.write_member(row, job.optimizer)
            job.cost_sum = cost_sums[row]
            try:
                job.end_epoch(job.epoch_metrics(epoch, seconds, correct[row], val_loss[row], val_accuracy[row]))
                if epoch >= job.cfg.trainer.epochs:
                    self.end_member(job, "finished", "")
            except Stop as stop:
                self.end_member(job, stop.status, stop.detail)
            except Exception as error:  # noqa: BLE001 - pruned, or failed: this member ends, the others go on
                self.end_member(job, error=error)
            if job.closed:
                stopped.append(row)
        self.drop(stopped)

    # ---- members leaving ---------------------------------------------------------------------------------
    def end_member(self, job: Job, status: str = "", detail: str = "", error: Optional[Exception] = None) -> None:
        """``job`` is done: concluded (measured, model.pt) and closed as ``status``, or ended by ``error``."""
        if error is None:
            try:
                job.conclude(status, detail)
            except Exception as failure:  # noqa: BLE001 - e.g. a full disk for model.pt: this member fails
                error = failure
        if error is not None:
            if not isinstance(error, Exception) or getattr(error, "status", "failed") == "failed":
                log.warning("population member %s failed: %s: %s", job.out_dir, type(error).__name__, error)
            job.result.end_by(error)
        try:
            job.close(stopped_by=error)
        except Exception as failure:  # noqa: BLE001 - the run is closed; the member's error is what it reports
            error = error or failure
        if error is not None and getattr(error, "status", "failed") == "failed":
            self.errors[id(job)] = error

    def drop(self, rows: list[int]) -> list[int]:
        """The members at ``rows`` leave; returns the rows (before the drop) of those who stay."""
        kept = [row for row in range(len(self.jobs)) if row not in set(rows)]
        if not rows:
            return kept
        self.jobs = [self.jobs[row] for row in kept]
        if kept:
            index = torch.tensor(kept, device=self.cost_sums.device)
            self.net.keep(kept)
            self.optimizer.keep(kept)
            for name in ("l2_over_n", "l1_over_n", "trained_z", "cost_sums", "lr", "going", "last_cost", "images_going"):
                setattr(self, name, getattr(self, name).index_select(0, index))
            self.before = None
            self.step_m, self.penalty_factors = 0, self.penalties()
            if self.permutations is not None:
                self.permutations = self.permutations.index_select(0, index)
        return kept
