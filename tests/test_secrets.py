"""A password in a tracking or storage URI never leaves in clear: not printed, not saved, not logged."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.configs import tiny_overrides
from helpers.console import run_cli
from mlplab.masking import MaskingStream, mask_secrets
from mlplab.tracking.run import flatten

SEARCH_SCRIPT = Path(sys.executable).parent / "mlplab-search"
PASSWORD = "hunter2secret"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mask_secrets_hides_only_the_password():
    assert mask_secrets(f"postgresql://alice:{PASSWORD}@db:5432/x and http://h:1/p") == "postgresql://alice:***@db:5432/x and http://h:1/p"


def test_params_logged_from_a_config_mask_the_password():
    assert flatten({"tracking": {"uri": f"https://bob:{PASSWORD}@host/x"}, "trainer": {"seed": 3}}) == {
        "tracking.uri": "https://bob:***@host/x", "trainer.seed": "3"}


def test_masking_stream_writes_through_masked():
    class Sink:
        def __init__(self):
            self.text = ""

        def write(self, text):
            self.text += text
            return len(text)

    sink = Sink()
    MaskingStream(sink).write(f"uri: https://bob:{PASSWORD}@host/x\n")
    assert sink.text == "uri: https://bob:***@host/x\n"


def test_printed_config_masks_the_password(data_root, tmp_path):
    run = run_cli([*tiny_overrides(data_root), "tracking=server", f"tracking.uri=http://bob:{PASSWORD}@127.0.0.1:1", "--cfg", "job"],
                  cwd=tmp_path)
    assert run.returncode == 0 and "http://bob:***@127.0.0.1:1" in run.stdout
    assert PASSWORD not in run.stdout + run.stderr


def test_saved_hydra_configs_and_the_error_line_mask_the_password(data_root, tmp_path):
    out = tmp_path / "job"
    run = run_cli([*tiny_overrides(data_root), "tracking=server", f"tracking.uri=http://bob:{PASSWORD}@127.0.0.1:{closed_port()}",
                   f"hydra.run.dir={out}"], cwd=tmp_path)
    assert run.returncode == 2 and "cannot reach the MLflow server http://bob:***@" in run.stderr
    saved = {path.name: path.read_text() for path in (out / ".hydra").glob("*.yaml")}
    assert set(saved) == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert all(PASSWORD not in text for text in saved.values()) and "bob:***@" in saved["overrides.yaml"]
    assert PASSWORD not in run.stdout + run.stderr


def test_a_multirun_job_error_report_masks_the_password(data_root, tmp_path):
    run = run_cli(["-m", *tiny_overrides(data_root), "tracking=server",
                   f"tracking.uri=http://bob:{PASSWORD}@127.0.0.1:{closed_port()}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                  cwd=tmp_path)
    assert run.returncode != 0
    assert PASSWORD not in run.stdout + run.stderr
    for path in (tmp_path / "sweep").rglob("*.yaml"):
        assert PASSWORD not in path.read_text(), path


@pytest.mark.parametrize("storage", [f"postgresql://u:{PASSWORD}@127.0.0.1:{{port}}/db"])
def test_an_unreachable_storage_is_named_without_its_password(data_root, tmp_path, storage):
    run = subprocess.run([str(SEARCH_SCRIPT), *tiny_overrides(data_root), f"search.storage={storage.format(port=closed_port())}",
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "u:***@127.0.0.1" in run.stderr
    assert PASSWORD not in run.stdout + run.stderr
    assert all(PASSWORD not in path.read_text() for path in (tmp_path / "run" / ".hydra").glob("*.yaml"))


def test_checkpoints_are_loaded_as_data_only():
    source = (Path(__file__).resolve().parents[1] / "src" / "mlplab" / "training" / "checkpoint.py").read_text()
    assert "weights_only=True" in source and "weights_only=False" not in source
