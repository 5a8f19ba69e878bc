"""Image datasets: tiny MNIST and CIFAR-10 files written here are read back exactly."""
from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from hypersweep.config import ConfigError
from hypersweep import datasets
from hypersweep.datasets import Images, load_images, split_images


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes, gzip-compressed if `path` ends in .gz."""
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def write_mnist(folder: Path, suffix: str = "") -> dict[str, np.ndarray]:
    """Tiny MNIST-like files (3 train and 2 test images of 4 x 5); returns what was written."""
    rng = np.random.default_rng(0)
    written = {}
    for part, prefix, n in [("train", "train", 3), ("test", "t10k", 2)]:
        written[f"{part}_images"] = rng.integers(0, 256, (n, 4, 5))
        written[f"{part}_labels"] = rng.integers(0, 10, n)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", written[f"{part}_images"])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", written[f"{part}_labels"])
    return written


def cifar_records(n: int, seed: int) -> np.ndarray:
    """n records of 1 label byte then 3 x 32 x 32 pixel bytes."""
    rng = np.random.default_rng(seed)
    records = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
    records[:, 0] = rng.integers(0, 10, n)
    return records


def write_cifar10(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}.bin": cifar_records(2, i) for i in range(1, 6)}
    batches["test_batch.bin"] = cifar_records(3, 0)
    for name, records in batches.items():
        records.tofile(folder / name)
    return batches


def as_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.tensor(pixels, dtype=torch.float32) / 255


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_pixels_and_labels_come_back_exactly(tmp_path: Path, suffix: str) -> None:
    written = write_mnist(tmp_path, suffix)
    images = load_images("mnist", str(tmp_path))
    assert images.train_images.shape == (3, 1, 4, 5)
    assert images.train_images.dtype == torch.float32
    assert torch.equal(images.train_images[:, 0], as_float(written["train_images"]))
    assert torch.equal(images.test_images[:, 0], as_float(written["test_images"]))
    assert images.train_labels.dtype == torch.int64
    assert images.train_labels.tolist() == written["train_labels"].tolist()
    assert images.test_labels.tolist() == written["test_labels"].tolist()


def test_mnist_missing_file_names_the_path(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(ConfigError) as err:
        load_images("mnist", str(tmp_path))
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in str(err.value)
    assert "task.download: true" in str(err.value)
    assert "\n" not in str(err.value)


def test_mnist_bad_magic_number_names_the_file(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte"
    write_idx(labels, np.zeros((3, 1)))  # 2-d where labels are 1-d
    with pytest.raises(ConfigError, match="magic number") as err:
        load_images("mnist", str(tmp_path))
    assert str(labels) in str(err.value)


def test_mnist_truncated_file_names_the_file(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    images = tmp_path / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-1])
    with pytest.raises(ConfigError, match="corrupt") as err:
        load_images("mnist", str(tmp_path))
    assert str(images) in str(err.value)


@pytest.mark.parametrize("folder", ["cifar-10-batches-bin", "."])
def test_cifar10_pixels_and_labels_come_back_exactly(tmp_path: Path, folder: str) -> None:
    batches = write_cifar10(tmp_path / folder)
    images = load_images("cifar10", str(tmp_path))
    assert images.train_images.shape == (10, 3, 32, 32)
    assert images.test_images.shape == (3, 3, 32, 32)
    train = np.concatenate([batches[f"data_batch_{i}.bin"] for i in range(1, 6)])
    assert images.train_labels.tolist() == train[:, 0].tolist()
    assert images.test_labels.tolist() == batches["test_batch.bin"][:, 0].tolist()
    assert torch.equal(images.train_images.flatten(1), as_float(train[:, 1:]))
    # The green plane follows the red one; each plane is row-major: green, row 2, column 5.
    test = batches["test_batch.bin"]
    assert images.test_images[0, 1, 2, 5] == test[0, 1 + 1024 + 2 * 32 + 5] / 255


def test_cifar10_missing_or_corrupt_file_names_it(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10(folder)
    (folder / "test_batch.bin").write_bytes(b"\x00" * 3072)  # one byte short of a record
    with pytest.raises(ConfigError, match="not a CIFAR-10 binary batch") as err:
        load_images("cifar10", str(tmp_path))
    assert str(folder / "test_batch.bin") in str(err.value)

    os.remove(folder / "data_batch_3.bin")
    with pytest.raises(ConfigError, match="not found") as err:
        load_images("cifar10", str(tmp_path))
    assert str(folder / "data_batch_3.bin") in str(err.value)


def test_files_on_disk_need_a_data_dir() -> None:
    with pytest.raises(ConfigError) as err:
        load_images("cifar10", None)
    assert err.value.key == "task.data_dir"


def test_digits_are_bundled_and_all_in_the_train_part() -> None:
    images = load_images("digits", None)
    assert images.train_images.shape == (1797, 1, 8, 8)
    assert images.train_images.min() == 0 and images.train_images.max() == 1
    assert images.train_labels.unique().tolist() == list(range(10))
    assert len(images.test_images) == len(images.test_labels) == 0


def fake_server(folder: Path, calls: list[str]):
    """A stand-in for `urlretrieve` serving the files in `folder` by name."""

    def urlretrieve(url: str, filename: str) -> tuple[str, None]:
        calls.append(url)
        shutil.copy(folder / url.rsplit("/", 1)[-1], filename)
        return filename, None

    return urlretrieve


def test_nothing_is_downloaded_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(urllib.request, "urlretrieve", fake_server(tmp_path, calls))
    for dataset in ["mnist", "cifar10"]:
        with pytest.raises(ConfigError, match="not found"):
            load_images(dataset, str(tmp_path / "data"))
    assert calls == []


def test_download_mnist_fetches_the_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = write_mnist(tmp_path, ".gz")
    calls: list[str] = []
    monkeypatch.setattr(urllib.request, "urlretrieve", fake_server(tmp_path, calls))
    images = load_images("mnist", str(tmp_path / "data"), download=True)
    assert len(calls) == 4
    assert torch.equal(images.test_images[:, 0], as_float(written["test_images"]))
    load_images("mnist", str(tmp_path / "data"), download=True)
    assert len(calls) == 4  # already there


def test_download_cifar10_extracts_only_the_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = write_cifar10(tmp_path / "server" / "cifar-10-batches-bin")
    with tarfile.open(tmp_path / "server" / "cifar-10-binary.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "server" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
        hostile = tarfile.TarInfo("../../evil.txt")
        hostile.size = 4
        tar.addfile(hostile, io.BytesIO(b"evil"))
    monkeypatch.setattr(urllib.request, "urlretrieve", fake_server(tmp_path / "server", []))
    data = tmp_path / "a" / "b"
    images = load_images("cifar10", str(data), download=True)
    assert images.test_labels.tolist() == batches["test_batch.bin"][:, 0].tolist()
    assert not (tmp_path / "evil.txt").exists()
    assert sorted(os.listdir(data)) == ["cifar-10-batches-bin"]  # the archive is gone


def test_a_download_that_fails_leaves_no_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Offline: the first file cannot be fetched (nothing listens on port 9 here).
    monkeypatch.setattr(datasets, "MNIST_URL", "http://127.0.0.1:9/")
    with pytest.raises(ConfigError, match="cannot download http://127.0.0.1:9/"):
        load_images("mnist", str(tmp_path / "new" / "data"), download=True)
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()  # a directory the user made stays
    with pytest.raises(ConfigError, match="cannot download"):
        load_images("mnist", str(tmp_path / "mine"), download=True)
    assert list((tmp_path / "mine").iterdir()) == []


def numbered(n: int, with_test: int = 0) -> Images:
    """Images whose pixels all equal their index, so a split's members can be told apart."""
    train = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2)
    test = torch.arange(n, n + with_test, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    labels = torch.zeros(n, dtype=torch.int64)
    return Images(train, labels, test, labels[:with_test])


def ids(images: torch.Tensor) -> set[int]:
    return set(images[:, 0, 0, 0].long().tolist())


def test_split_without_a_test_part_carves_one_out_of_train() -> None:
    train, val, test = split_images(numbered(100), 0.2, 0.1, None, torch.Generator().manual_seed(0))
    assert (len(train), len(val), len(test)) == (70, 20, 10)
    assert ids(train) | ids(val) | ids(test) == set(range(100))  # so disjoint too


def test_split_with_a_test_part_keeps_it_apart() -> None:
    train, val, test = split_images(numbered(100, with_test=30), 0.2, 0.5, 40, torch.Generator().manual_seed(0))
    assert (len(train), len(val), len(test)) == (32, 8, 30)  # max_images caps each part
    assert ids(test) == set(range(100, 130))
    assert not ids(train) & ids(val) and max(ids(train) | ids(val)) < 100


def test_split_is_random_but_seeded() -> None:
    def train_ids(seed: int) -> list[int]:
        train, _, _ = split_images(numbered(50), 0.2, 0.2, None, torch.Generator().manual_seed(seed))
        return train[:, 0, 0, 0].tolist()

    assert train_ids(0) == train_ids(0)
    assert train_ids(0) != train_ids(1)


def test_split_must_leave_training_images() -> None:
    with pytest.raises(ConfigError, match="no training images"):
        split_images(numbered(10), 0.5, 0.5, None, torch.Generator())

