"""A study's figures, drawn by Optuna's matplotlib backend: optimisation history, slices, and for two or more
searched keys parameter importances and a contour plot."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna

log = logging.getLogger("mlplab")


def study_figures(study: optuna.Study, keys: list[str], folder: Path) -> list[Path]:
    """Optimisation history, parameter importances, and slice / contour plots of the searched ``keys``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from optuna.visualization import matplotlib as plots

    folder.mkdir(parents=True, exist_ok=True)
    wanted = [("optimization_history", lambda: plots.plot_optimization_history(study)),
              ("slice", lambda: plots.plot_slice(study))]
    if len(keys) >= 2:
        wanted += [("param_importances", lambda: plots.plot_param_importances(study)),
                   ("contour", lambda: plots.plot_contour(study, params=keys[:2]))]
    written = []
    for name, draw in wanted:
        try:
            with matplotlib.rc_context():  # Optuna's plots switch pyplot's global style (ggplot): keep it to these
                axes = draw()
                figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
                figure.set_size_inches(max(figure.get_size_inches()[0], 8), max(figure.get_size_inches()[1], 5))
                figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
                pyplot.close(figure)
            written.append(folder / f"{name}.png")
        except Exception as error:  # noqa: BLE001 - a figure Optuna cannot draw (too few trials) is skipped
            log.info("no %s figure: %s", name, error)
    return written
