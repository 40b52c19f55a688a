"""The typed shape of a training config (``mlplab-train``) and of a search (``mlplab-search``).

Hydra composes YAML groups from ``conf/`` on top of these dataclasses (registered in the ConfigStore as
the ``schema`` group), so a misspelt key fails at composition time. Range checks live in ``__post_init__``:
``to_typed`` builds the dataclasses, which runs them before any data is touched. The allowed values of a
choice are the keys of the registry that implements it (an activation, a cost, an optimiser…), so adding
one there is all it takes.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from hydra.core.config_store import ConfigStore

from .data.idx import DATASETS
from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
TRACKING_MODES = ("local", "server", "off")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def one_of(key: str, value: str, choices) -> None:
    """``choices``: a tuple of names, or a registry whose keys are the names."""
    require(value in choices, f"{key}={value!r} is not known: use one of {', '.join(choices)}")


def registry(module: str, name: str) -> Callable[[], Any]:
    """A registry of mlplab's (``registry("nn.activations", "ACTIVATIONS")``), imported when first asked for."""
    return lambda: getattr(importlib.import_module(f"{__package__}.{module}"), name)


def chosen(config, field_name: str, key: str, choices: Callable[[], Any]) -> None:
    """``one_of`` for a field naming a registry entry. A field left at its default is not looked up (a test
    checks every default is in its registry): Hydra builds the default configs at every start, shell completion
    included, and the registries import torch (~1.3 s)."""
    value = getattr(config, field_name)
    if value != next(f.default for f in dataclasses.fields(config) if f.name == field_name):
        one_of(key, value, choices())


def not_a_key(key: str) -> str:
    return f"{key} is not a config key: check its spelling (`--cfg job` lists the keys)"


def to_typed(cfg) -> Any:
    """The dataclass instance of a composed config, its range checks run. A ``+key=value`` override adds a
    key even where the schema has none, and building the dataclasses would drop it without a word: such a
    key is refused instead, by name."""
    from omegaconf import DictConfig, OmegaConf

    def unknown(node, prefix: str = "") -> list[str]:
        schema = OmegaConf.get_type(node)
        if not dataclasses.is_dataclass(schema):
            return []  # a free-form mapping, such as search.space
        names = {f.name for f in dataclasses.fields(schema)}
        found = []
        for key in node.keys():
            if key not in names:
                found.append(f"{prefix}{key}")
            elif isinstance(node[key], DictConfig):
                found += unknown(node[key], f"{prefix}{key}.")
        return found

    extra = unknown(cfg)
    require(not extra, not_a_key(", ".join(extra)))
    return OmegaConf.to_object(cfg)


@dataclass
class DataConfig:
    name: str = "fashion_mnist"
    root: Optional[str] = None  # None: $MLPLAB_DATA, else ~/.cache/mlplab
    validation_size: int = 10_000  # carved from the training split, as Nielsen's 50 000 / 10 000
    split_seed: int = 0  # fixed apart from trainer.seed so every run validates on the same images
    classes: Optional[list[int]] = None  # e.g. [0, 1]; labels are re-indexed 0..k-1 in this order
    fraction: float = 1.0  # keep this share of the training images ("start with subsets")
    expand: bool = False  # add the four 1-pixel shifts of every training image (Nielsen's expand_mnist)
    random_shift: int = 0  # each epoch, move every training image by up to this many pixels each way
    random_flip: bool = False  # each epoch, mirror each training image left to right with probability ½
    standardize: bool = False  # subtract the training mean and divide by its standard deviation
    download: bool = True  # let torchvision download when the files are nowhere on disk

    def __post_init__(self) -> None:
        one_of("data.name", self.name, DATASETS)
        require(self.validation_size >= 0, "data.validation_size must be >= 0 (0 means no validation split)")
        require(0.0 < self.fraction <= 1.0, f"data.fraction={self.fraction} must lie in (0, 1]")
        require(0 <= self.random_shift <= 27, f"data.random_shift={self.random_shift} must lie in 0..27 (pixels of a 28×28 image)")
        if self.classes is not None:
            require(len(self.classes) >= 2, "data.classes needs at least two classes, e.g. data.classes=[0,1]")
            require(len(set(self.classes)) == len(self.classes), f"data.classes={self.classes} repeats a class")
            require(all(0 <= c <= 9 for c in self.classes), f"data.classes={self.classes}: classes are 0..9")


@dataclass
class ModelConfig:
    sizes: list[int] = field(default_factory=lambda: [784, 100, 10])  # input and output included
    activation: str = "sigmoid"  # hidden layers
    leaky_slope: float = 0.01  # leaky_relu's slope for z < 0, and prelu's initial slope
    output: str = "auto"  # auto: softmax for log_likelihood, sigmoid otherwise

    def __post_init__(self) -> None:
        require(len(self.sizes) >= 2, f"model.sizes={self.sizes} needs at least input and output, e.g. [784,10]")
        require(all(s > 0 for s in self.sizes), f"model.sizes={self.sizes}: every layer size must be positive")
        chosen(self, "activation", "model.activation", registry("nn.activations", "ACTIVATIONS"))
        chosen(self, "output", "model.output", lambda: ("auto", *registry("nn.costs", "OUTPUTS")()))
        require(0 <= self.leaky_slope < math.inf, f"model.leaky_slope={self.leaky_slope} must be >= 0 and finite")


@dataclass
class LossConfig:
    name: str = "cross_entropy"

    def __post_init__(self) -> None:
        chosen(self, "name", "loss.name", registry("nn.costs", "COSTS"))


@dataclass
class InitializerConfig:
    weights: str = "scaled_normal"
    biases: str = "standard_normal"

    def __post_init__(self) -> None:
        chosen(self, "weights", "initializer.weights", registry("nn.initializers", "WEIGHT_INITIALIZERS"))
        chosen(self, "biases", "initializer.biases", registry("nn.initializers", "BIAS_INITIALIZERS"))


@dataclass
class RegularizationConfig:
    l2: float = 0.0  # λ in λ/(2n) Σ w²
    l1: float = 0.0  # λ in λ/n Σ |w|
    dropout: float = 0.0  # probability of dropping a hidden unit while training

    def __post_init__(self) -> None:
        require(0 <= self.l2 < math.inf, f"regularization.l2={self.l2} must be >= 0 and finite")
        require(0 <= self.l1 < math.inf, f"regularization.l1={self.l1} must be >= 0 and finite")
        require(0.0 <= self.dropout < 1.0, f"regularization.dropout={self.dropout} must lie in [0, 1)")


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.0  # sgdm and nesterov
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam
    eps: float = 1e-8  # adam

    def __post_init__(self) -> None:
        chosen(self, "name", "optimizer.name", registry("training.optim", "OPTIMIZERS"))
        require(0 < self.lr < math.inf, f"optimizer.lr={self.lr} must be > 0 and finite, e.g. optimizer.lr=0.1")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                f"optimizer.betas={list(self.betas)} must be two numbers in [0, 1), e.g. optimizer.betas=[0.9,0.999]")
        require(0 < self.eps < math.inf, f"optimizer.eps={self.eps} must be > 0 and finite, e.g. optimizer.eps=1e-8")
        require(0.0 <= self.momentum < 1.0, f"optimizer.momentum={self.momentum} must lie in [0, 1)")
        if self.name in ("sgdm", "nesterov"):
            require(self.momentum > 0, f"optimizer={self.name} needs optimizer.momentum > 0, e.g. 0.9")


@dataclass
class ScheduleConfig:
    name: str = "constant"
    drop_factor: float = 0.5  # piecewise: η ← η·drop_factor every drop_period epochs (MATLAB's example)
    drop_period: int = 5
    patience: int = 10  # plateau schedules: epochs without a better validation accuracy
    factor: float = 0.5  # reduce_on_plateau: η ← η·factor after a plateau
    min_lr_ratio: float = 1.0 / 128  # plateau schedules stop (halve) or floor (reduce) at η₀·min_lr_ratio

    def __post_init__(self) -> None:
        chosen(self, "name", "schedule.name", registry("training.optim", "SCHEDULES"))
        require(0.0 < self.drop_factor <= 1.0, f"schedule.drop_factor={self.drop_factor} must lie in (0, 1]")
        require(self.drop_period >= 1, f"schedule.drop_period={self.drop_period} must be >= 1")
        require(self.patience >= 1, f"schedule.patience={self.patience} must be >= 1")
        require(0.0 < self.factor < 1.0, f"schedule.factor={self.factor} must lie in (0, 1)")
        require(0.0 < self.min_lr_ratio <= 1.0, f"schedule.min_lr_ratio={self.min_lr_ratio} must lie in (0, 1]")


@dataclass
class TrainerConfig:
    epochs: int = 30
    batch_size: int = 300
    seed: int = 0
    device: str = "auto"
    validate_every: int = 0  # also validate after every k training images (0: once per epoch)
    early_stopping_patience: int = 0  # stop after this many epochs without a better validation accuracy (0: off)
    keep_best: bool = False  # end with the weights of the best validation epoch instead of the last
    checkpoint: bool = True  # write checkpoint.pt in the job directory after every epoch
    resume: Optional[str] = None  # path to a checkpoint.pt to continue from
    progress: bool = True  # a progress bar per epoch (always off in multirun)
    evaluate_test: bool = True  # off in search trials: models are chosen on validation, the test set is touched once
    engine: str = "autograd"  # how gradients are computed: autograd, or seed (backprop.py: the four equations by hand)
    diagnostics: bool = False  # per layer and epoch: mean σ'(z), saturated units, gradient norm (learning slowdown)
    threads: Optional[int] = None  # torch CPU threads while training; None: 1 where the widest GEMM is small, else torch's default

    def __post_init__(self) -> None:
        require(self.epochs >= 1, f"trainer.epochs={self.epochs} must be >= 1")
        require(0 <= self.seed < 2**63, f"trainer.seed={self.seed} must lie in 0..2^63-1 (what torch's generators take)")
        require(self.batch_size >= 1, f"trainer.batch_size={self.batch_size} must be >= 1")
        one_of("trainer.device", self.device, DEVICES)
        chosen(self, "engine", "trainer.engine", registry("training.engines", "ENGINES"))
        require(self.threads is None or self.threads >= 1, f"trainer.threads={self.threads} must be >= 1 (or null)")
        require(self.validate_every >= 0, f"trainer.validate_every={self.validate_every} must be >= 0")
        require(self.early_stopping_patience >= 0, "trainer.early_stopping_patience must be >= 0 (0 is off)")


@dataclass
class TrackingConfig:
    mode: str = "local"  # local: the project's sqlite store; server: a tracking server; off: record nothing
    uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlruns/mlflow.db
    experiment: str = "mlplab"
    run_name: Optional[str] = None  # None: e.g. "784-100-10 sigmoid sgd lr=0.1"
    log_model: bool = True  # the final network via mlflow.pytorch.log_model
    plots: bool = True  # learning curves and the test confusion matrix as PNG artifacts

    def __post_init__(self) -> None:
        one_of("tracking.mode", self.mode, TRACKING_MODES)
        require(bool(self.experiment.strip()), "tracking.experiment must not be empty")
        if self.mode == "server":
            require(bool(self.uri) and self.uri.startswith(("http://", "https://")),
                     f"tracking=server needs tracking.uri=http://host:port, not {self.uri!r}")


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    initializer: InitializerConfig = field(default_factory=InitializerConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    name: str = "mlplab"  # a label for the run (presets set one)


SPACE_TYPES = ("float", "int", "categorical")


@dataclass
class SlurmJobsConfig:
    """What each SLURM job of a study's workers asks for (``search.executor=slurm``); as hydra/launcher=slurm's."""

    partition: Optional[str] = None  # None: the cluster's default partition
    cpus_per_task: int = 2
    mem_gb: int = 4
    timeout_min: int = 240  # per worker job: it runs trials until the study has n_trials
    setup: Optional[list[str]] = None  # lines run before the worker; None: activate this command's environment
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # more sbatch options, e.g. {account: …}

    def __post_init__(self) -> None:
        require(self.cpus_per_task >= 1, f"search.slurm.cpus_per_task={self.cpus_per_task} must be >= 1")
        require(self.mem_gb >= 1, f"search.slurm.mem_gb={self.mem_gb} must be >= 1")
        require(self.timeout_min >= 1, f"search.slurm.timeout_min={self.timeout_min} must be >= 1")


@dataclass
class SearchConfig:
    name: str = "search"
    # config key → {type: float|int|categorical, low, high, log, step, choices}. Besides any training key,
    # ``model.width`` (every hidden layer's size) and ``model.depth`` (number of hidden layers) rebuild model.sizes.
    space: dict[str, Any] = field(default_factory=dict)
    n_trials: int = 20  # in total, over every worker and every resumed run
    timeout: Optional[float] = None  # seconds for this run of the command
    direction: str = "maximize"
    metric: str = "val_accuracy"  # reported every epoch and returned by each trial
    seed: int = 0
    sampler: str = "tpe"
    startup_trials: Optional[int] = None  # tpe / gp: random trials first; None: a quarter of n_trials, 5 to 10
    pruner: str = "median"
    pruner_startup_trials: int = 3  # median: trials completed before any pruning
    pruner_warmup_epochs: int = 1  # median: epochs a trial always gets
    min_epochs: int = 1  # successive halving / hyperband: the smallest budget
    storage: Optional[str] = None  # None: sqlite:///<project>/mlruns/optuna.db; or a journal file / PostgreSQL URL
    study_name: Optional[str] = None  # None: the search's name
    workers: int = 1  # worker processes (on this machine, or SLURM jobs with executor=slurm)
    executor: str = "local"  # local: the workers are processes here; slurm: SLURM jobs sharing the storage
    slurm: SlurmJobsConfig = field(default_factory=SlurmJobsConfig)
    batch: int = 1  # trials each worker asks at once and trains as one population (those sharing a shape)
    heartbeat_seconds: int = 10  # RDB storages: a trial silent for 2× this is stale, failed and retried
    final_test: bool = True  # retrain the best configuration once and evaluate it on the test set
    write_experiment: bool = True  # write search_<study>.yaml for `mlplab-train experiment=…`
    experiment_dir: Optional[str] = None  # where it goes; None: the project's conf/experiment

    def __post_init__(self) -> None:
        require(self.n_trials >= 1, f"search.n_trials={self.n_trials} must be >= 1")
        require(self.workers >= 1, f"search.workers={self.workers} must be >= 1")
        require(self.batch >= 1, f"search.batch={self.batch} must be >= 1 (1: one trial at a time)")
        require(self.startup_trials is None or self.startup_trials >= 1, "search.startup_trials must be >= 1 (or null)")
        require(self.heartbeat_seconds >= 1, f"search.heartbeat_seconds={self.heartbeat_seconds} must be >= 1")
        require(self.timeout is None or self.timeout > 0, "search.timeout must be > 0 seconds (or null)")
        one_of("search.direction", self.direction, ("maximize", "minimize"))
        one_of("search.executor", self.executor, ("local", "slurm"))
        one_of("search.metric", self.metric, ("val_accuracy", "val_loss"))
        wanted = "maximize" if self.metric == "val_accuracy" else "minimize"
        require(self.direction == wanted, f"search.metric={self.metric} with search.direction={self.direction} would "
                f"seek the worst model: use search.direction={wanted}")
        chosen(self, "sampler", "search.sampler", registry("search.samplers", "SAMPLERS"))  # Optuna: ~0.2 s
        chosen(self, "pruner", "search.pruner", registry("search.samplers", "PRUNERS"))
        for key, spec in self.space.items():
            _check_space(key, spec, self.sampler)


def _check_space(key: str, spec: Any, sampler: str) -> None:
    require(isinstance(spec, dict) and "type" in spec,
             f"search.space.{key} needs a type: float, int or categorical")
    kind = spec["type"]
    one_of(f"search.space.{key}.type", kind, SPACE_TYPES)
    known = {"type", "low", "high", "log", "step", "choices"}
    require(set(spec) <= known, f"search.space.{key} has unknown fields {sorted(set(spec) - known)}: use {sorted(known)}")
    if kind == "categorical":
        require(bool(spec.get("choices")), f"search.space.{key} is categorical: give choices: [...]")
        return
    require("low" in spec and "high" in spec, f"search.space.{key} needs low and high")
    require(spec["low"] <= spec["high"], f"search.space.{key}: low={spec['low']} > high={spec['high']}: swap them")
    if spec.get("log"):
        require(spec["low"] > 0, f"search.space.{key}: a log scale needs low > 0")
    require(sampler != "grid", f"search.sampler=grid needs categorical choices, but search.space.{key} is a {kind} range")


@dataclass
class SearchAppConfig(TrainConfig):
    search: SearchConfig = field(default_factory=SearchConfig)


SCHEMAS = {"train": TrainConfig, "search": SearchAppConfig}


def register() -> None:
    """The typed root of a config, as the ``schema`` group: ``schema=train`` for mlplab-train,
    ``schema=search`` (training plus ``search``) for mlplab-search — a group, so search.yaml can include
    train.yaml and swap its schema. (The course apps register their own, ``apps/hydra_app.py``.)"""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(group="schema", name=name, node=node, package="_global_")
