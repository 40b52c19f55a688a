"""The one helper every console script runs through: a Hydra app over ``conf/<name>.yaml`` that ends in one
clear line for a user's mistake and the right exit code.

Hydra normally prints its own multi-line report; with ``HYDRA_FULL_ERROR=1`` it re-raises instead, and
this module turns the exception into one line that names the problem and its fix. Set ``MLPLAB_DEBUG=1`` to
see the traceback. SIGTERM is turned into the same path as Ctrl-C; passwords in URIs are masked in
everything printed.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import mlplab.interrupts as interrupts
from ..errors import MlplabError, debugging, is_write_failure
from ..masking import MaskingStream, mask_secrets
from ..paths import CONF_DIR

EXIT_DIVERGED, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 1, 2, 130, 143


def explain(error: BaseException) -> str:
    """One line saying what is wrong and what to change, with any password in a URI masked."""
    return mask_secrets(_explain(error))


def _explain(error: BaseException) -> str:
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    from ..config import not_a_key

    if isinstance(error, MlplabError):
        return str(error)
    if is_write_failure(error):  # a full disk or an unwritable folder, met outside the places that say more
        where = f" {error.filename}" if error.filename else ""
        return (f"cannot write{where} ({error.strerror}): free space on that disk or fix its permissions, "
                "or write elsewhere (hydra.run.dir=…, tracking.uri=…)")
    if isinstance(error, MissingConfigException):
        missing = (error.missing_cfg_file or "").strip("/")
        group, _, option = missing.rpartition("/")
        if error.options and group:
            return f"{group}={option} is not an option: use one of {', '.join(sorted(error.options))}"
        return str(error).splitlines()[0]
    cause = error
    while cause.__cause__ is not None and isinstance(cause, ConfigCompositionException):
        cause = cause.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
        return not_a_key(cause.full_key)
    if isinstance(cause, OmegaConfBaseException):
        message = str(cause).splitlines()[0]
        key = getattr(cause, "full_key", None)
        return f"{key}: {message}" if key and key not in message else message
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    if isinstance(error, HydraException):
        return line
    return f"{line} ({type(error).__name__}; MLPLAB_DEBUG=1 shows the traceback)"  # not foreseen: say how to see more


def compose(overrides: list[str], config_name: str = "train"):
    """The typed config ``mlplab-train <overrides>`` would run (range checks included), composed in Python."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from ..config import register, to_typed

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_typed(hydra_compose(config_name=config_name, overrides=list(overrides)))


def hydra_job(cfg) -> tuple[object, Path, list[str]]:
    """Inside a Hydra task: (the typed config — its range checks run here —, the output dir, the overrides)."""
    from hydra.core.hydra_config import HydraConfig

    from ..config import to_typed

    hydra_cfg = HydraConfig.get()
    return to_typed(cfg), Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def _fail_fast_in_single_runs(task: Callable) -> Callable:
    """In a single run, an error exits at once with its one line (Hydra would first print the job's
    overrides, passwords included); in a multirun Hydra records the failed job, runs the others, and
    reports it at the end."""

    @functools.wraps(task)
    def guarded(cfg):
        try:
            return task(cfg)
        except Exception as error:  # noqa: BLE001 - every error ends in one line (or a traceback when debugging)
            if in_multirun() or debugging():
                raise
            print(f"{Path(sys.argv[0]).name}: error: {explain(error)}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None

    return guarded


def run_hydra_app(task: Callable, config_name: str, schema: Optional[type] = None,
                  on_abort: Optional[Callable[[str], None]] = None, populations=None) -> None:
    """Run ``task`` as ``@hydra.main`` over ``conf/<config_name>.yaml`` and exit with a clear status.
    ``schema``: the dataclass registered as ``schema=<config_name>`` (training and search are registered
    by ``config.register``); ``on_abort(status)``: called with FAILED or KILLED when the app ends by an
    exception, e.g. to close a sweep's parent run, which Hydra's ``on_multirun_end`` then never does.
    ``populations``: how ``hydra/launcher=population`` groups and trains the app's jobs (``launcher.Populations``)."""
    import hydra
    from hydra.core.config_store import ConfigStore

    from ..config import register

    register()
    if schema is not None:
        ConfigStore.instance().store(group="schema", name=config_name, node=schema, package="_global_")
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let exceptions reach ``explain`` instead of Hydra's report
    interrupts.install()
    sys.stdout, sys.stderr = MaskingStream(sys.stdout), MaskingStream(sys.stderr)  # printed configs, logs, errors
    guarded = _fail_fast_in_single_runs(task)
    guarded.populations = populations  # what the population launcher asks of the task it is handed
    app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(guarded)
    prog = Path(sys.argv[0]).name
    try:
        try:
            app()
        except BaseException as error:
            if on_abort is not None:
                on_abort("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
            raise
    except interrupts.Terminated:
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        sys.exit(EXIT_SIGTERM)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(EXIT_SIGINT)
    except Exception as error:  # noqa: BLE001 - every error ends in one line (or a traceback when debugging)
        if debugging():
            raise
        print(f"{prog}: error: {explain(error)}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
