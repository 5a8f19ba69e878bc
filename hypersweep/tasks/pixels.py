"""Images as functions: from an image and a pixel's coordinates, predict its intensity.

Each instance I is a flattened image, standardised with one mean and std of the train
images; its points x are pixel coordinates in [-1, 1]^2 and y the raw intensities in
[0, 1], one per channel (the hypernetwork's "functional representation" of an image).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from hypersweep.config import ConfigError, bounds
from hypersweep.datasets import ImageSource, pixel_moments
from hypersweep.tasks import Split, Task


@dataclass(frozen=True)
class Config(ImageSource):
    points: int | None = field(default=None, metadata=bounds(1))  # pixels per image; None: all


def build(cfg: Config) -> Task:
    generator = torch.Generator().manual_seed(cfg.seed)
    parts = cfg.split(generator)
    channels, height, width = parts[0].shape[1:]
    if cfg.points is not None and cfg.points > height * width:
        raise ConfigError("task.points", f"must be <= {height * width} (pixels in an image), "
                                         f"got {cfg.points}")
    mean, std = pixel_moments(parts[0])
    coords = pixel_coordinates(height, width)
    train, val, test = [_split(p, coords, cfg.points, mean, std, generator) for p in parts]
    n = math.prod(parts[0].shape[1:])
    return Task("pixels", "regression", n, 2, channels, train, val, test)


def _split(
    images: torch.Tensor,
    coords: torch.Tensor,
    points: int | None,
    mean: float,
    std: float,
    generator: torch.Generator,
) -> Split:
    n = len(images)
    intensity = images.flatten(2).transpose(1, 2)  # [N, H*W, C], pixels in raster order
    if points is None:
        x, y = coords.expand(n, -1, -1).contiguous(), intensity.contiguous()
    else:
        # A random subset of distinct pixels per image, in random order.
        idx = torch.rand(n, len(coords), generator=generator).argsort(dim=1)[:, :points]
        x, y = coords[idx], intensity.gather(1, idx[..., None].expand(-1, -1, images.shape[1]))
    return Split(images.sub(mean).div_(std).flatten(1), x, y)


def pixel_coordinates(height: int, width: int) -> torch.Tensor:
    """(x, y) of every pixel in raster order [H*W, 2]: column and row scaled to [-1, 1].

    Corner pixels sit at exactly -1 and 1, as with `grid_sample(..., align_corners=True)`.
    """
    rows, cols = torch.linspace(-1, 1, height), torch.linspace(-1, 1, width)
    grid_y, grid_x = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)
