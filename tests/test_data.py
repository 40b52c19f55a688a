"""Loading, splitting, subsets and expansion: whole tensors, disjoint splits, right labels."""

import gzip
import shutil
from dataclasses import replace

import pytest
import torch

from helpers.idx import N_TEST, N_TRAIN, synthetic_images, write_idx_gz
from mlplab.data import idx, splits as data_module
from mlplab.errors import DataError
from mlplab.config import DataConfig

CPU = torch.device("cpu")


def config(root, **changes) -> DataConfig:
    return replace(DataConfig(root=None if root is None else str(root), validation_size=100, download=False), **changes)


def rows_as_set(x: torch.Tensor) -> set[bytes]:
    return {bytes(row.numpy().tobytes()) for row in (x * 255).round().to(torch.uint8)}


def test_splits_are_whole_tensors_scaled_to_unit_interval(data_root):
    splits = data_module.load(config(data_root), CPU)
    assert splits.train.x.shape == (N_TRAIN - 100, 784) and splits.train.x.dtype == torch.float32
    assert splits.validation.x.shape == (100, 784) and splits.test.x.shape == (N_TEST, 784)
    assert 0.0 <= splits.train.x.min() and splits.train.x.max() <= 1.0
    images, labels = synthetic_images(N_TEST, 1)  # the test split's source, written by the fixture
    torch.testing.assert_close(splits.test.x, torch.from_numpy(images).reshape(N_TEST, -1).float() / 255)
    assert torch.equal(splits.test.y, torch.from_numpy(labels).long())


def test_validation_split_is_disjoint_from_training_and_fixed_by_split_seed(data_root):
    a = data_module.load(config(data_root), CPU)
    b = data_module.load(config(data_root), CPU)
    c = data_module.load(config(data_root, split_seed=1), CPU)
    assert rows_as_set(a.train.x).isdisjoint(rows_as_set(a.validation.x))
    assert len(rows_as_set(a.train.x) | rows_as_set(a.validation.x)) == N_TRAIN
    assert torch.equal(a.validation.x, b.validation.x)
    assert not torch.equal(a.validation.x, c.validation.x)


def test_class_subsets_keep_only_those_classes_relabelled_in_order(data_root):
    full = data_module.load(config(data_root, validation_size=0), CPU)
    sub = data_module.load(config(data_root, validation_size=0, classes=[7, 2]), CPU)
    assert sub.num_classes == 2 and sub.class_names == [full.class_names[7], full.class_names[2]]
    for split, full_split in ((sub.train, full.train), (sub.test, full.test)):
        assert set(split.y.tolist()) == {0, 1}
        # every image labelled 0 was a 7 in the full data, every 1 a 2
        sevens, twos = rows_as_set(full_split.x[full_split.y == 7]), rows_as_set(full_split.x[full_split.y == 2])
        assert rows_as_set(split.x[split.y == 0]) == sevens and rows_as_set(split.x[split.y == 1]) == twos


def test_fraction_keeps_that_share_of_training_images_only(data_root):
    splits = data_module.load(config(data_root, fraction=0.25), CPU)
    assert len(splits.train) == round(0.25 * (N_TRAIN - 100))
    assert len(splits.validation) == 100 and len(splits.test) == N_TEST


def test_expand_adds_the_four_one_pixel_shifts():
    image = torch.zeros(28, 28)
    image[5, 7] = 1.0
    image[0, 0] = 0.5  # falls off the edge in the up and left shifts
    shifted = data_module.shifted_copies(image.reshape(1, -1)).reshape(4, 28, 28)
    down, up, right, left = shifted
    assert down[6, 7] == 1 and up[4, 7] == 1 and right[5, 8] == 1 and left[5, 6] == 1
    assert down[1, 0] == 0.5 and right[0, 1] == 0.5
    assert up.sum() == 1 and left.sum() == 1  # the edge pixel is dropped, not wrapped around
    assert all(s.sum() <= image.sum() for s in shifted)


def test_expanded_training_set_is_five_times_larger_with_labels_repeated(data_root):
    plain = data_module.load(config(data_root), CPU)
    expanded = data_module.load(config(data_root, expand=True), CPU)
    n = len(plain.train)
    assert len(expanded.train) == 5 * n
    assert torch.equal(expanded.train.x[:n], plain.train.x)
    assert torch.equal(expanded.train.y, plain.train.y.repeat(5))
    assert len(expanded.validation) == len(plain.validation)  # validation is never expanded


def test_standardize_gives_training_data_zero_mean_unit_std(data_root):
    splits = data_module.load(config(data_root, standardize=True), CPU)
    assert splits.train.x.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert splits.train.x.std().item() == pytest.approx(1.0, rel=1e-4)


def listing(folder) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_gz_files_in_the_root_itself_are_found_and_unpacked_into_the_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    write_idx_gz(tmp_path / "root", seed=3)
    before = listing(tmp_path / "root")
    splits = data_module.load(config(tmp_path / "root", name="mnist"), CPU)
    assert len(splits.test) == N_TEST
    assert splits.source.is_relative_to(tmp_path / "cache") and (splits.source / "t10k-images-idx3-ubyte").is_file()
    idx.checksum(splits.source)
    assert listing(tmp_path / "root") == before  # nothing written into the user's folder


def test_system_package_folder_is_used_when_no_root_is_given(tmp_path, monkeypatch, data_root):
    system = tmp_path / "usr-share"
    shutil.copytree(data_root / "FashionMNIST" / "raw", system, ignore=shutil.ignore_patterns("*ubyte"))
    fashion = idx.DATASETS["fashion_mnist"]
    monkeypatch.setitem(idx.DATASETS, "fashion_mnist", replace(fashion, system_dir=system))
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLPLAB_DATA", raising=False)
    splits = data_module.load(config(None), CPU)
    assert len(splits.train) == N_TRAIN - 100
    assert splits.source == tmp_path / "cache" / "FashionMNIST" / "raw"


def test_an_explicit_empty_root_is_not_swapped_for_the_system_copy(tmp_path, monkeypatch, data_root):
    fashion = idx.DATASETS["fashion_mnist"]
    monkeypatch.setitem(idx.DATASETS, "fashion_mnist", replace(fashion, system_dir=data_root / "FashionMNIST" / "raw"))
    with pytest.raises(DataError, match=r"Fashion-MNIST not found under .*leave data.root unset to use"):
        data_module.load(config(tmp_path / "empty"), CPU)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_a_partial_set_in_the_users_root_is_an_error_naming_the_missing_files(tmp_path, data_root, suffix):
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    # the .gz files as given, or their unpacked copies
    source = data_root / "FashionMNIST" / "raw" if suffix else data_module.load(config(data_root), CPU).source
    for name in idx.IDX_FILES[:2]:
        shutil.copy(source / f"{name}{suffix}", raw)
    before = listing(tmp_path / "root")
    with pytest.raises(DataError) as error:
        data_module.load(config(tmp_path / "root"), CPU)
    message = str(error.value)
    assert f"{raw} holds only train-images-idx3-ubyte{suffix}, train-labels-idx1-ubyte{suffix}" in message
    assert f"put t10k-images-idx3-ubyte{suffix}, t10k-labels-idx1-ubyte{suffix}" in message
    assert listing(tmp_path / "root") == before  # not overwritten, not completed from elsewhere


def test_missing_data_error_names_its_remedy(tmp_path, monkeypatch):
    fashion = idx.DATASETS["fashion_mnist"]
    monkeypatch.setitem(idx.DATASETS, "fashion_mnist", replace(fashion, system_dir=tmp_path / "nowhere"))
    with pytest.raises(DataError) as error:
        data_module.load(config(tmp_path / "empty"), CPU)
    message = str(error.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path / "empty" / "FashionMNIST" / "raw") in message and "train-images-idx3-ubyte.gz" in message


def test_missing_mnist_names_where_to_put_the_files(tmp_path):
    with pytest.raises(DataError, match=r"MNIST not found .*put train-images-idx3-ubyte.gz"):
        data_module.load(config(tmp_path, name="mnist"), CPU)


def test_decompressed_files_match_the_gz_source(data_root):
    unpacked = data_module.load(config(data_root), CPU).source
    raw = data_root / "FashionMNIST" / "raw"
    for name in idx.IDX_FILES:
        with gzip.open(raw / f"{name}.gz", "rb") as packed:
            assert packed.read() == (unpacked / name).read_bytes()


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_idx_files_are_read_as_torchvision_reads_them_with_its_class_names(data_root, name):
    """mlplab parses the IDX files itself (importing torchvision costs ~1.1 s a job): torchvision is the
    independent reading they are compared with."""
    dataset = idx.DATASETS[name]
    raw = data_module.load(config(data_root, name=name), CPU).source  # the .gz files unpacked, as torchvision wants
    parsed = dataset.torchvision_class(str(raw.parent.parent), train=False, download=False)
    assert torch.equal(idx.read_idx(raw / "t10k-images-idx3-ubyte"), parsed.data)
    assert torch.equal(idx.read_idx(raw / "t10k-labels-idx1-ubyte").long(), parsed.targets)
    assert list(dataset.class_names) == list(parsed.classes)
