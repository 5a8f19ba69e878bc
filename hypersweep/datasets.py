"""Image datasets as float tensors in [0, 1], and the splitting the image tasks share.

Images are [N, C, H, W] float32 in [0, 1] with int64 labels [N]. `digits` is bundled
with scikit-learn; MNIST (IDX files) and CIFAR-10 (binary version) are read from a local
directory with numpy, never unpickled, and downloaded only when asked to.
"""
from __future__ import annotations

import contextlib
import gzip
import math
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from hypersweep.config import ConfigError, bounds

Dataset = Literal["digits", "mnist", "cifar10"]

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {  # (images, labels) of each part
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR10_FILES = (*CIFAR10_TRAIN, CIFAR10_TEST)
WHAT = {
    "mnist": "the MNIST IDX files (optionally .gz)",
    "cifar10": f"the CIFAR-10 binary version ({CIFAR10_FOLDER}/)",
}
KEY = "task.data_dir"


@dataclass(frozen=True)
class Images:
    """A dataset's own train and test parts (the test part is empty for digits).

    Images are float32 [N, C, H, W] in [0, 1]; labels are int64 [N].
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


@dataclass(frozen=True)
class ImageSource:
    """The keys the image tasks share: which images, and how they are split (a task's Config extends it)."""

    dataset: Dataset = "digits"
    data_dir: str | None = None  # where MNIST / CIFAR-10 files are; digits is bundled
    download: bool = False
    val_fraction: float = field(default=0.2, metadata=bounds(0, 1))
    test_fraction: float = field(default=0.2, metadata=bounds(0, 1))  # digits only
    max_images: int | None = field(default=None, metadata=bounds(1))  # per dataset part
    seed: int = field(default=0, metadata=bounds(0))

    def split(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Train, val and test images, loaded and drawn as `split_images` does."""
        images = load_images(self.dataset, self.data_dir, self.download)
        return split_images(images, self.val_fraction, self.test_fraction, self.max_images, generator)


def load_images(dataset: Dataset, data_dir: str | None, download: bool = False) -> Images:
    """Load `dataset`, from `data_dir` unless it is bundled; fetch missing files if `download`."""
    if dataset == "digits":
        return _digits()
    if data_dir is None:
        raise ConfigError(KEY, f"not set: point it to a directory with {WHAT[dataset]}, "
                               "or to an empty one and set task.download: true")
    if dataset == "mnist":
        if download:
            _download_mnist(data_dir)
        return _mnist(data_dir)
    if download:
        _download_cifar10(data_dir)
    return _cifar10(data_dir)


def split_images(
    images: Images,
    val_fraction: float,
    test_fraction: float,
    max_images: int | None,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train, val and test images, drawn at random so that no image is in two of them.

    Val is `val_fraction` of the dataset's train part. Test is the dataset's own test part
    or, when it has none (digits), `test_fraction` of the train part. `max_images` caps
    how many images are drawn from each part.
    """
    pool = images.train_images[_shuffled(len(images.train_images), max_images, generator)]
    n_val = round(val_fraction * len(pool))
    if len(images.test_images):
        n_test = 0
        test = images.test_images[_shuffled(len(images.test_images), max_images, generator)]
    else:
        n_test = round(test_fraction * len(pool))
        test = pool[:n_test]
    if n_test + n_val >= len(pool):
        raise ConfigError("task.val_fraction", f"leaves no training images: {len(pool)} images, "
                                               f"{n_val} for validation, {n_test} for test")
    return pool[n_test + n_val:], pool[n_test:n_test + n_val], test


def _shuffled(n: int, limit: int | None, generator: torch.Generator) -> torch.Tensor:
    """Up to `limit` distinct indices below `n`, in random order."""
    return torch.randperm(n, generator=generator)[:limit]


def pixel_moments(images: torch.Tensor) -> tuple[float, float]:
    """One global mean and std over every pixel, to standardise all splits with."""
    return images.mean().item(), images.std().clamp_min(1e-12).item()


def _digits() -> Images:
    # Imported here: scikit-learn takes about a second to import, and only digits needs it.
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().div_(16).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    return Images(images, labels, images[:0], labels[:0])


def _mnist(data_dir: str) -> Images:
    parts = []
    for images_name, labels_name in MNIST_FILES.values():
        images = _read_idx(data_dir, images_name, ndim=3)
        labels = _read_idx(data_dir, labels_name, ndim=1)
        if len(labels) != len(images):
            raise ConfigError(KEY, f"{os.path.join(data_dir, labels_name)} has {len(labels)} "
                                   f"labels for {len(images)} images")
        parts += [_to_float(images[:, None]), torch.from_numpy(labels.astype(np.int64))]
    return Images(*parts)


def _read_idx(data_dir: str, name: str, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes with `ndim` dimensions, from `name` or `name.gz`."""
    path = os.path.join(data_dir, name)
    if os.path.exists(path):
        data = _read_bytes(path)
    elif os.path.exists(path + ".gz"):
        path += ".gz"
        try:
            with gzip.open(path) as fh:
                data = fh.read()
        except (OSError, EOFError) as err:
            raise ConfigError(KEY, f"{path} is not a valid gzip file: {err}") from None
    else:
        raise ConfigError(KEY, f"{path} not found: put {WHAT['mnist']} in {data_dir}, "
                               "or set task.download: true")
    # Magic number: two zero bytes, a type code (0x08 = unsigned byte), the number of dims;
    # then each dim as a big-endian uint32.
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes([0, 0, 8, ndim]):
        raise ConfigError(KEY, f"{path} is not an IDX file of {ndim}-d unsigned bytes "
                               "(bad magic number)")
    shape = tuple(np.frombuffer(data, dtype=">u4", count=ndim, offset=4).tolist())
    if len(data) != header + math.prod(shape):
        raise ConfigError(KEY, f"{path} is corrupt: {len(data)} bytes, expected "
                               f"{header + math.prod(shape)} for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as err:  # a directory where a file should be, no permission, ...
        raise ConfigError(KEY, f"cannot read {path}: {err.strerror or err}") from None


def _cifar10(data_dir: str) -> Images:
    folder = _cifar10_folder(data_dir)
    paths = [os.path.join(folder, name) for name in CIFAR10_FILES]
    for path in paths:
        if not os.path.exists(path):
            raise ConfigError(KEY, f"{path} not found: put {WHAT['cifar10']} in {data_dir}, "
                                   "or set task.download: true")
    *train, test = [_read_cifar10(path) for path in paths]
    images, labels = zip(*train, strict=True)
    return Images(torch.cat(images), torch.cat(labels), *test)


def _cifar10_folder(data_dir: str) -> str:
    """The official archive's folder if it is there, else `data_dir` itself."""
    folder = os.path.join(data_dir, CIFAR10_FOLDER)
    return folder if os.path.isdir(folder) else data_dir


def _read_cifar10(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Records of 1 label byte and 3072 pixel bytes: R, G then B planes, 32 x 32 each."""
    data = np.frombuffer(_read_bytes(path), dtype=np.uint8)
    if data.size == 0 or data.size % 3073 or data[::3073].max() > 9:
        raise ConfigError(KEY, f"{path} is not a CIFAR-10 binary batch "
                               "(records of 1 label byte 0..9 and 3072 pixel bytes)")
    records = data.reshape(-1, 3073)
    images = _to_float(records[:, 1:].reshape(-1, 3, 32, 32))
    return images, torch.from_numpy(records[:, 0].astype(np.int64))


def _to_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32)).div_(255)


def _download_mnist(data_dir: str) -> None:
    for names in MNIST_FILES.values():
        for name in names:
            path = os.path.join(data_dir, name)
            if not os.path.exists(path) and not os.path.exists(path + ".gz"):
                _fetch(MNIST_URL + name + ".gz", path + ".gz")


def _download_cifar10(data_dir: str) -> None:
    if all(os.path.exists(os.path.join(_cifar10_folder(data_dir), n)) for n in CIFAR10_FILES):
        return
    archive = os.path.join(data_dir, os.path.basename(CIFAR10_URL))
    _fetch(CIFAR10_URL, archive)
    folder = os.path.join(data_dir, CIFAR10_FOLDER)
    try:
        os.makedirs(folder, exist_ok=True)
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                name = os.path.basename(member.name)
                if member.isfile() and name in CIFAR10_FILES:
                    # The output path is built from our own file names, never from the
                    # archive's, so no member can be written outside `folder`.
                    with tar.extractfile(member) as src, open(os.path.join(folder, name), "wb") as dst:
                        shutil.copyfileobj(src, dst)
    except (OSError, tarfile.TarError) as err:
        raise ConfigError("task.download", f"cannot unpack {archive} into {folder}: {err}") from None
    os.remove(archive)


def _fetch(url: str, path: str) -> None:
    """Download `url` to `path`, leaving no partial file behind if it fails or is interrupted, nor a
    directory it created for it (a launch refused offline leaves no empty data_dir)."""
    folder = os.path.abspath(os.path.dirname(path) or ".")
    made = []  # the directories makedirs creates, outermost first
    while not os.path.exists(folder):
        made.insert(0, folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    except OSError as err:
        raise ConfigError(KEY, f"cannot create {os.path.dirname(path)}: {err.strerror or err}") from None
    try:
        urllib.request.urlretrieve(url, path + ".part")
        os.replace(path + ".part", path)
    except OSError as err:
        raise ConfigError("task.download", f"cannot download {url} to {path}: {err}") from None
    finally:
        if os.path.exists(path + ".part"):
            os.remove(path + ".part")
        if not os.path.exists(path):
            for directory in reversed(made):
                with contextlib.suppress(OSError):  # not empty: another file of the dataset came first
                    os.rmdir(directory)
