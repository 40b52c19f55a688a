"""REPORT.md from the MLflow runs a study made: every number is read back from the store, none typed in.

The figures are drawn from the runs' metric histories (or copied from the runs' own artifacts), saved in
``figures/`` beside the report, and logged as artifacts of the report's MLflow run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from matplotlib.figure import Figure

from mlplab.figures.mpl import epoch_panels, finish, save
from mlplab.tracking.store import client_for

from study import Manifest


# The test accuracies the issue aims at: Q2 with its constraints kept, and the best Q3 MLP.
Q2_AIM, Q3_AIM = 0.89, 0.915


def pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def against_aim(test: Optional[float], aim: float) -> str:
    """A sentence saying whether a test accuracy reached the aim; nothing when there is no test figure."""
    if test is None:
        return ""
    return f" The aim of {pct(aim)} is {'reached' if test >= aim else 'missed'} ({100 * (test - aim):+.2f} points)."


class Report:
    def __init__(self, manifest: Manifest, uri: str, folder: Path):
        self.manifest, self.client, self.folder = manifest, client_for(uri), folder
        self.figures = folder / "figures"
        self.figures.mkdir(parents=True, exist_ok=True)
        self._runs: dict = {}

    def run(self, run_id: str):
        if run_id not in self._runs:
            self._runs[run_id] = self.client.get_run(run_id)
        return self._runs[run_id]

    def metric(self, run_id: str, key: str) -> Optional[float]:
        return self.run(run_id).data.metrics.get(key)

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))

    def copy_artifact(self, run_id: str, artifact: str, name: str) -> str:
        """A run's own figure, copied next to the report; returns the markdown path."""
        local = self.client.download_artifacts(run_id, artifact, str(self.folder / ".downloads"))
        shutil.copyfile(local, self.figures / name)
        return f"figures/{name}"

    def figure(self, figure: Figure, name: str) -> str:
        save(figure, self.figures / name)
        return f"figures/{name}"

    def runs_of(self, section: str) -> list[dict]:
        return self.manifest.sections[section]["runs"]

    # ---- sections ------------------------------------------------------------------------------------

    def q1(self) -> list[str]:
        run_id = self.manifest.sections["q1"]["run_id"]
        tags, m = self.run(run_id).data.tags, self.run(run_id).data.metrics
        rates = sorted(float(k[len("final_gap_"):]) for k in m if k.startswith("final_gap_"))
        rows = [f"| {lr:g} | {int(m[f'iterations_to_tol_{lr:g}']) if f'iterations_to_tol_{lr:g}' in m else 'not reached'} "
                f"| {tags.get(f'approach_{lr:g}', '')} | {m.get(f'final_gap_{lr:g}', float('nan')):.2g} |" for lr in rates]
        return [
            "## Question 1: gradient descent on f(x) = x⁴/4 − 3x³ + 7x − 5 from x = 0", "",
            f"The local minimum near 0 is at **x\\* = {m['x_star']:.6f}**, with **f(x\\*) = {m['f_star']:.6f}**.",
            "", "| η | iterations until \\|f(x_k) − f\\*\\| < 10⁻⁶ | approach | \\|f − f\\*\\| after the last step |",
            "|---:|---:|---|---:|", *rows, "",
            f"**Best learning rate: η = {m['best_lr']:g}.** Criterion: {tags.get('criterion', '')}",
            "", f"![f(x_k) against k]({self.copy_artifact(run_id, 'gd.png', 'q1_convergence.png')})", ""]

    def perceptron(self) -> list[str]:
        run_id = self.manifest.sections["perceptron"]["run_id"]
        m, tags = self.run(run_id).data.metrics, self.run(run_id).data.tags
        return [
            "## The perceptron (the slides' algorithm)", "",
            f"Classes {tags.get('classes', '')}, labels ±1: the algorithm stopped with status "
            f"**{tags.get('status', '')}** after {int(m['iterations'])} iterations, with |M| = {int(m['final_misclassified'])} "
            f"misclassified training images. Error: training {pct(m.get('train_error'))}, validation "
            f"{pct(m.get('val_error'))}, test {pct(m.get('test_error'))}.", "",
            f"![|M| and the perceptron loss per iteration]({self.copy_artifact(run_id, 'perceptron.png', 'perceptron.png')})", ""]

    def slowdown(self) -> list[str]:
        runs = self.runs_of("slowdown")
        figure, panels = epoch_panels(3, 13)
        keys = (("val_accuracy", "validation accuracy"), ("slowdown/layer2/mean_sigma_prime", "output layer: mean σ'(z)"),
                ("slowdown/layer1/saturated", "hidden layer: saturated share"))
        rows = []
        for entry in runs:
            for axes, (key, title) in zip(panels, keys):
                series = self.history(entry["run_id"], key)
                axes.plot([s for s, _ in series], [v for _, v in series], marker=".", label=entry["label"])
                axes.set_title(title)
            first = self.history(entry["run_id"], "val_accuracy")[0][1]
            rows.append(f"| {entry['label']} | {pct(first)} | {pct(self.metric(entry['run_id'], 'final_val_accuracy'))} "
                        f"| {self.history(entry['run_id'], 'slowdown/layer2/mean_sigma_prime')[0][1]:.4f} "
                        f"| {self.history(entry['run_id'], 'slowdown/layer1/saturated')[0][1]:.2f} |")
        finish(figure, panels, self.figures / "slowdown.png",
               "learning slowdown: 784-30-10 sigmoid, SGD η = 0.5, mini-batch 10")
        return [
            "## Learning slowdown", "",
            "The same 784-30-10 sigmoid network, three ways. With the quadratic cost the output error "
            "δᴸ = (a − y) ⊙ σ'(zᴸ) carries σ'(zᴸ), which is near 0 for a saturated output unit; cross-entropy "
            "cancels it (δᴸ = a − y); N(0, 1/√n_in) weights keep the hidden z small so fewer units saturate.", "",
            "| run | validation after epoch 1 | final validation | output mean σ'(z), epoch 1 | hidden saturated share, epoch 1 |",
            "|---|---:|---:|---:|---:|", *rows, "",
            "![learning slowdown diagnostics](figures/slowdown.png)", ""]

    def q2(self) -> list[str]:
        section = self.manifest.sections["q2"]
        grid = [e for e in self.runs_of("q2") if e["run_id"] in section["grid"]]
        rows, lrs, vals, trains = [], [], [], []
        for entry in grid:
            run = self.run(entry["run_id"])
            lr = float(run.data.params["optimizer.lr"])
            val, train_acc = run.data.metrics.get("final_val_accuracy"), run.data.metrics.get("train_accuracy")
            lrs.append(lr), vals.append(val), trains.append(train_acc)
            rows.append(f"| {lr:g} | {pct(train_acc)} | {pct(val)} | {run.data.metrics.get('train_seconds', 0):.1f} |")
        epochs = self.run(grid[0]["run_id"]).data.params["trainer.epochs"]
        figure = Figure(figsize=(7, 4.2))
        figure.subplots_adjust(left=0.11, right=0.97, bottom=0.13, top=0.9)
        axes = figure.subplots()
        axes.plot(lrs, [100 * v for v in vals], marker="o", label="validation")
        axes.plot(lrs, [100 * t for t in trains], marker=".", label="training (last epoch)")
        axes.set(xscale="log", xlabel="learning rate η", ylabel="accuracy (%)", title=f"784-100-10 sigmoid, SGD, batch 300, {epochs} epochs")
        axes.grid(alpha=0.3), axes.legend()
        chosen = section["chosen"]
        c = self.run(chosen["run_id"])
        optuna = self.manifest.sections.get("optuna_q2", {}).get("summary", {})
        lines = [
            "## Question 2: the shallow network and its learning rate", "",
            "784-100-10 with sigmoid units, the logistic (cross-entropy) loss and plain SGD on mini-batches of 300, "
            f"{epochs} epochs each, over the assignment's five learning rates and the wider range where the best lies. "
            "Models are compared on validation accuracy; the validation images are carved from the training set "
            f"({self.run(grid[0]['run_id']).data.tags.get('dataset_sizes', '')}).", "",
            "| η | training accuracy | validation accuracy | training seconds |", "|---:|---:|---:|---:|", *rows, "",
            f"![accuracy against learning rate]({self.figure(figure, 'q2_accuracy_vs_lr.png')})", "",
            f"Also tried with the same constraints: {self.runs_of('q2')[-1]['label']}.", "",
            f"**Chosen on validation: {chosen['label']}** — validation "
            f"{pct(c.data.metrics.get('final_val_accuracy'))}, **test accuracy {pct(c.data.metrics.get('test_accuracy'))}** "
            f"(the test set's only use), **training time {c.data.metrics.get('train_seconds', 0):.1f} s** "
            f"({int(c.data.metrics.get('epochs_run', 0))} epochs on {c.data.tags.get('device', 'cpu')})."
            f"{against_aim(c.data.metrics.get('test_accuracy'), Q2_AIM)}", "",
            f"![learning curves of the chosen Q2 model]({self.copy_artifact(chosen['run_id'], 'learning_curves.png', 'q2_learning_curves.png')})",
            f"![test confusion matrix of the chosen Q2 model]({self.copy_artifact(chosen['run_id'], 'test_confusion_matrix.png', 'q2_confusion_matrix.png')})", ""]
        if optuna.get("best_params"):
            params = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in optuna["best_params"].items())
            lines += [
                "### Bayesian optimisation of learning rate and width (Optuna TPE, median pruning)", "",
                f"{optuna['trials']} trials ({optuna.get('complete', 0)} complete, {optuna.get('pruned', 0)} pruned): best "
                f"{params} with validation {pct(optuna['best_value'])}; retrained once and tested: "
                f"test {pct(optuna.get('best_test_accuracy'))}.", ""]
            parent = self.manifest.sections["optuna_q2"].get("parent")
            if parent:
                names = {a.path for a in self.client.list_artifacts(parent)}
                if "optimization_history.png" in names:
                    lines += [f"![Optuna history]({self.copy_artifact(parent, 'optimization_history.png', 'q2_optuna_history.png')})", ""]
        return lines

    def q3(self, q2_test: Optional[float]) -> list[str]:
        runs = self.runs_of("q3")
        base_val = self.metric(runs[0]["run_id"], "final_val_accuracy")
        rows = []
        for entry in runs:
            m = self.run(entry["run_id"]).data.metrics
            val = m.get("final_val_accuracy")
            delta = "" if val is None or base_val is None else f"{100 * (val - base_val):+.2f}"
            rows.append(f"| {entry['label']} | {pct(val)} | {delta} | {m.get('train_seconds', 0):.0f} |")
        chosen = self.manifest.sections["q3"]["chosen"]
        c = self.run(chosen["run_id"])
        test = c.data.metrics.get("test_accuracy")
        gain = "" if test is None or q2_test is None else (
            f" That is {100 * (test - q2_test):+.2f} percentage points over Q2's {pct(q2_test)} "
            f"({'meets' if test - q2_test >= 0.005 else 'misses'} the required +0.5).")
        members = chosen.get("members")  # a side-by-side MLP has no curves of its own: show its first member's
        curves_of, curves_caption = (members[0], "learning curves of the chosen Q3 model's first member") if members else (
            chosen["run_id"], "learning curves of the chosen Q3 model")
        return [
            "## Question 3: improvements", "",
            f"Each change alone on the Q2 network (784-100-10 sigmoid, SGD η = 1, "
            f"{self.run(runs[0]['run_id']).data.params['trainer.epochs']} epochs), then all together from several seeds, "
            "and those networks side by side as one MLP: block-diagonal hidden weights and an output layer that "
            "averages, so its z^L is the mean of theirs (its training time is theirs together). "
            "Δ is against the baseline's validation accuracy.", "",
            "| run | validation accuracy | Δ (points) | training seconds |", "|---|---:|---:|---:|", *rows, "",
            f"**Chosen on validation: {chosen['label']}** — validation {pct(c.data.metrics.get('final_val_accuracy'))}, "
            f"**test accuracy {pct(test)}**, {c.data.metrics.get('train_seconds', 0):.0f} s of training.{gain}"
            f"{against_aim(test, Q3_AIM)}", "",
            f"![{curves_caption}]({self.copy_artifact(curves_of, 'learning_curves.png', 'q3_learning_curves.png')})",
            f"![test confusion matrix of the chosen Q3 model]({self.copy_artifact(chosen['run_id'], 'test_confusion_matrix.png', 'q3_confusion_matrix.png')})", ""]

    def nielsen(self) -> list[str]:
        section = self.manifest.sections["nielsen"]
        rows = []
        for entry in section["runs"]:
            run = self.run(entry["run_id"])
            m, p = run.data.metrics, run.data.params
            seconds = [v for _, v in self.history(entry["run_id"], "epoch_seconds")]
            rows.append(f"| {entry['label']} | {p['model.sizes']}, {p['loss.name']}, η = {p['optimizer.lr']}, "
                        f"{int(m.get('epochs_run', 0))} epochs | {pct(m.get('final_val_accuracy'))} | {pct(m.get('test_accuracy'))} | "
                        f"{sum(seconds) / max(len(seconds), 1):.2f} |")
        return [
            f"## Nielsen's runs (on {section['dataset']})", "",
            "His chapter 1 (network.py: 784-30-10, quadratic cost, N(0,1) weights, η = 3, mini-batch 10) and chapter 3 "
            "(network2.py: cross-entropy, scaled weights, L2 λ = 5, η = 0.5) settings, trained by the seed engine.", "",
            "| preset | network | validation | test | seconds per epoch |", "|---|---|---:|---:|---:|", *rows, ""]

    def write(self) -> Path:
        q2_test = self.run(self.manifest.sections["q2"]["chosen"]["run_id"]).data.metrics.get("test_accuracy")
        report_run = self.manifest.report_run_id
        lines = [
            "# Assignment 6, answered from tracked runs", "",
            f"Made by `experiments/assignment6/run.py{' --fast' if self.manifest.fast else ''}` on {self.manifest.started} "
            f"at commit `{self.run(report_run).data.tags.get('git_commit', 'unknown')[:12]}`"
            f"{' (with uncommitted changes)' if self.run(report_run).data.tags.get('git_dirty') == 'true' else ''}. "
            f"Every number below is read from the MLflow runs that command made (report run `{report_run}`, "
            "experiment `assignment6`); each figure is also an artifact of that run.", "",
            *self.q1(), *self.perceptron(), *self.slowdown(), *self.q2(), *self.q3(q2_test), *self.nielsen()]
        path = self.folder / "REPORT.md"
        path.write_text("\n".join(lines))
        for figure in sorted(self.figures.glob("*.png")):
            self.client.log_artifact(report_run, str(figure), "figures")
        self.client.log_artifact(report_run, str(path))
        shutil.rmtree(self.folder / ".downloads", ignore_errors=True)
        return path
