"""`rotation_pipeline`: the rotation task's batched tensor rotation vs PIL in a DataLoader (samples/s).

A sample is an image, a rotated copy of it and the copy's angle class. Ours is
`rotation.instances`, which builds all of them at once: standardised images, every copy
rotated as tensors (bilinear) and standardised, the classes. The baseline is the paper's
code (`MNIST_ROTATE.__getitem__`): per sample, a PIL image from the uint8 pixels, both it
and its copy rotated by PIL (bilinear, as ours) turned into normalised tensors, the class
by a nearest-angle search, batched by a DataLoader without workers as on a CPU. Same
8-bit images, same angles, one thread each. The images are scikit-learn's 8x8 digits, the
task's offline data; `details` also gives the ratio at MNIST's 28x28.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from benchmarks.measure import Result, Size, best_times, compare, torch_threads
from hypersweep.datasets import load_images
from hypersweep.tasks import rotation

SIZES = {"tiny": (16, 2, 1), "quick": (1797, 4, 3), "full": (1797, 8, 5)}  # images, rotations, rounds
MEAN, STD = 0.1307, 0.3081  # the paper's normalisation
ANGLES = [30 * k for k in range(12)]
GOAL = 30.0


class PaperRotations(Dataset):
    """Sample k = (image i, copy j): the paper's `__getitem__` at the angle `degrees[i, j]`."""

    def __init__(self, pixels: np.ndarray, degrees: torch.Tensor):
        self.pixels, self.degrees = pixels, degrees.tolist()
        self.rotations = degrees.shape[1]

    def __len__(self) -> int:
        return len(self.pixels) * self.rotations

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        i, j = divmod(k, self.rotations)
        angle = self.degrees[i][j]
        image = Image.fromarray(self.pixels[i], mode="L")
        rotated = image.rotate(angle, resample=Image.BILINEAR)
        closest = min(ANGLES, key=lambda a: abs(a - angle))
        return normalised(image), normalised(rotated), closest / 30


def normalised(image: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor then Normalize, for a one-channel image."""
    return torch.from_numpy(np.array(image, np.float32)).div_(255)[None].sub_(MEAN).div_(STD)


def paper_loader(pixels: np.ndarray, degrees: torch.Tensor) -> list:
    return list(DataLoader(PaperRotations(pixels, degrees), batch_size=64))


def images(count: int, side: int) -> np.ndarray:
    """The first `count` digits as uint8 [N, side, side] (bilinearly rescaled unless 8x8)."""
    digits = load_images("digits", None).train_images[:count]
    if side != digits.shape[-1]:
        digits = F.interpolate(digits, size=(side, side), mode="bilinear", align_corners=False)
    return digits[:, 0].mul(255).round().to(torch.uint8).numpy()


def throughput(count: int, side: int, rotations: int, rounds: int) -> tuple[float, float]:
    """Samples/s of ours and of the baseline on `count` images of `side` x `side`."""
    pixels = images(count, side)
    floats = torch.from_numpy(pixels).float().div_(255)[:, None]
    degrees = 360 * torch.rand(count, rotations, generator=torch.Generator().manual_seed(0))
    with torch_threads(1):  # the DataLoader works in one thread too
        ours, baseline = best_times([lambda: rotation.instances(floats, degrees, MEAN, STD),
                                     lambda: paper_loader(pixels, degrees)], rounds)
    return degrees.numel() / ours, degrees.numel() / baseline


def run(size: Size) -> Result:
    count, rotations, rounds = SIZES[size]
    ours, baseline = throughput(count, 8, rotations, rounds)
    mnist_ours, mnist_baseline = throughput(count, 28, rotations, rounds)
    return compare(ours, baseline, "samples/s", ours / baseline, GOAL, samples=count * rotations, image="1x8x8",
                   ratio_at_28x28=round(mnist_ours / mnist_baseline, 2))
