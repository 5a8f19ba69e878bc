"""The paper's rotation prediction: from an image and a rotated copy, tell the angle.

Each instance I is a flattened image; its points x are copies of it rotated by angles
drawn uniformly from [0, 360), labelled with the nearest multiple of 30 degrees (12
classes). I and x are standardised with one mean and std of the train images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from hypersweep.config import bounds
from hypersweep.datasets import Dataset, load_images, pixel_moments, split_images
from hypersweep.tasks import Split, Task

CLASSES = 12  # multiples of 30 degrees


@dataclass(frozen=True)
class Config:
    dataset: Dataset = "digits"
    data_dir: str | None = None  # where MNIST / CIFAR-10 files are; digits is bundled
    download: bool = False
    rotations: int = field(default=8, metadata=bounds(1))  # points per instance
    val_fraction: float = field(default=0.2, metadata=bounds(0, 1))
    test_fraction: float = field(default=0.2, metadata=bounds(0, 1))  # digits only
    max_images: int | None = field(default=None, metadata=bounds(1))  # per dataset part
    seed: int = field(default=0, metadata=bounds(0))


def build(cfg: Config) -> Task:
    generator = torch.Generator().manual_seed(cfg.seed)
    images = load_images(cfg.dataset, cfg.data_dir, cfg.download)
    parts = split_images(images, cfg.val_fraction, cfg.test_fraction, cfg.max_images, generator)
    mean, std = pixel_moments(parts[0])
    train, val, test = [_split(p, cfg.rotations, mean, std, generator) for p in parts]
    n = math.prod(parts[0].shape[1:])
    return Task("rotation", "classification", n, n, CLASSES, train, val, test)


def _split(
    images: torch.Tensor, rotations: int, mean: float, std: float, generator: torch.Generator
) -> Split:
    degrees = 360 * torch.rand(len(images), rotations, generator=generator)
    # Rotate the raw images first so the fill is black, then standardise.
    x = rotated_copies(images, degrees).sub_(mean).div_(std)
    return Split(images.sub(mean).div_(std).flatten(1), x, angle_class(degrees))


def angle_class(degrees: torch.Tensor) -> torch.Tensor:
    """The nearest multiple of 30 degrees as a class 0..11 (int64)."""
    return torch.round(degrees / 30).long() % CLASSES


def rotated_copies(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Points x [N, P, C*H*W]: image i rotated by `degrees[i, p]`, flattened."""
    n, p = degrees.shape
    x = images.new_empty(n, p, math.prod(images.shape[1:]))
    # One batched rotation per copy: repeating the images P times first would double the
    # peak memory, which matters for MNIST and CIFAR-10.
    for j in range(p):
        x[:, j] = rotate(images, degrees[:, j]).flatten(1)
    return x


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate images [B, C, H, W] counter-clockwise by `degrees` [B] about their centres.

    Same convention as PIL's `Image.rotate`: the size is kept, sampling is bilinear and
    pixels coming from outside the image are zero.
    """
    if len(images) == 0:  # affine_grid rejects empty batches
        return images.clone()
    radians = degrees.double() * (math.pi / 180)
    cos, sin = radians.cos(), radians.sin()
    zero = torch.zeros_like(cos)
    height, width = images.shape[-2:]
    # affine_grid wants, for each output pixel, where to read in the input: the inverse
    # rotation, in coordinates that run from -1 to 1 along both the width and the height
    # (rows pointing down), hence the aspect ratio factors for non-square images.
    theta = torch.stack(
        [cos, -sin * (height / width), zero, sin * (width / height), cos, zero], dim=1
    ).view(-1, 2, 3)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
