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
from hypersweep.datasets import ImageSource, pixel_moments
from hypersweep.tasks import Split, Task

CLASSES = 12  # multiples of 30 degrees
CHUNK = 128  # images per grid_sample call: its sampling grid (2 floats per output pixel) stays in cache


@dataclass(frozen=True)
class Config(ImageSource):
    rotations: int = field(default=8, metadata=bounds(1))  # points per instance


def build(cfg: Config) -> Task:
    generator = torch.Generator().manual_seed(cfg.seed)
    parts = cfg.split(generator)
    mean, std = pixel_moments(parts[0])
    train, val, test = [
        instances(p, 360 * torch.rand(len(p), cfg.rotations, generator=generator), mean, std) for p in parts
    ]
    n = math.prod(parts[0].shape[1:])
    return Task("rotation", "classification", n, n, CLASSES, train, val, test)


def instances(images: torch.Tensor, degrees: torch.Tensor, mean: float, std: float) -> Split:
    """Image i standardised as I, its copies rotated by `degrees[i]` [N, P] as x, their classes as y."""
    # Rotate the raw images first so the fill is black, then standardise.
    x = rotated_copies(images, degrees).sub_(mean).div_(std)
    return Split(images.sub(mean).div_(std).flatten(1), x, angle_class(degrees))


def angle_class(degrees: torch.Tensor) -> torch.Tensor:
    """The nearest multiple of 30 degrees as a class 0..11 (int64)."""
    return torch.round(degrees / 30).long() % CLASSES


def rotated_copies(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Points x [N, P, C*H*W]: image i rotated by `degrees[i, p]`, flattened."""
    n, p = degrees.shape
    c, h, w = images.shape[1:]
    x = images.new_empty(n, p, c * h * w)
    for i in range(0, n, CHUNK):
        copies = _rotations(images[i:i + CHUNK], degrees[i:i + CHUNK])  # [k, C, P*H, W]
        x[i:i + CHUNK] = copies.view(-1, c, p, h * w).transpose(1, 2).flatten(2)
    return x


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate images [B, C, H, W] counter-clockwise by `degrees` [B] about their centres.

    Same convention as PIL's `Image.rotate`: the size is kept, sampling is bilinear and
    pixels coming from outside the image are zero.
    """
    return _rotations(images, degrees[:, None])


def _rotations(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Images [B, C, H, W] each rotated by its P angles `degrees` [B, P]: [B, C, P*H, W].

    One `grid_sample` reads all P copies: their sampling grids are stacked along the height.
    """
    (b, p), (height, width) = degrees.shape, images.shape[-2:]
    if b == 0:  # grid_sample rejects empty batches
        return images.new_zeros(0, images.shape[1], p * height, width)
    radians = degrees.double() * (math.pi / 180)
    cos = radians.cos().to(images.dtype)[:, :, None, None]
    sin = radians.sin().to(images.dtype)[:, :, None, None]
    # grid_sample wants, for each output pixel, where to read in the input: the inverse
    # rotation, in coordinates that run from -1 to 1 across pixel centres' extent along both
    # the width and the height (rows pointing down), hence the aspect ratio factors for
    # non-square images. Written out rather than through affine_grid, whose tiny batched
    # product is slower than these broadcasts.
    xs = torch.arange(width, dtype=images.dtype, device=images.device).mul_(2).add_(1).div_(width).sub_(1)
    ys = torch.arange(height, dtype=images.dtype, device=images.device).mul_(2).add_(1).div_(height).sub_(1)[:, None]
    grid = images.new_empty(b, p, height, width, 2)
    torch.sub(cos * xs, sin * (height / width) * ys, out=grid[..., 0])
    torch.add(sin * (width / height) * xs, cos * ys, out=grid[..., 1])
    return F.grid_sample(images, grid.view(b, p * height, width, 2), mode="bilinear", padding_mode="zeros",
                         align_corners=False)
