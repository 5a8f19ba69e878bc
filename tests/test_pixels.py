"""Images as functions: pixel coordinates in, intensities out, on the bundled digits."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hypersweep.config import ConfigError
from hypersweep.datasets import load_images
from hypersweep.tasks import pixels


def test_pixel_coordinates_run_over_columns_then_rows() -> None:
    coords = pixels.pixel_coordinates(3, 4)
    assert coords.shape == (12, 2)
    assert coords[0].tolist() == [-1, -1]  # top left
    assert coords[1].tolist() == pytest.approx([-1 + 2 / 3, -1])  # one column to the right
    assert coords[4].tolist() == [-1, 0]  # second row
    assert coords[-1].tolist() == [1, 1]  # bottom right


def test_task_shapes_and_kind() -> None:
    task = pixels.build(pixels.Config(max_images=100, points=10))
    assert (task.name, task.kind, task.dim_i, task.dim_x, task.dim_out) == ("pixels", "regression", 64, 2, 1)
    for split in task.splits().values():
        assert split.I.shape == (len(split), 64)
        assert split.x.shape == (len(split), 10, 2)
        assert split.y.shape == (len(split), 10, 1) and split.y.dtype == torch.float32
        assert split.x.abs().max() <= 1
        assert split.y.min() >= 0 and split.y.max() <= 1


def test_all_points_are_every_pixel_in_raster_order() -> None:
    task = pixels.build(pixels.Config(max_images=100))
    assert torch.equal(task.train.x, pixels.pixel_coordinates(8, 8).expand(len(task.train), -1, -1))
    # y is then a whole digit, exactly as the dataset has it.
    digits = load_images("digits", None).train_images.flatten(1)
    for image in task.train.y[:5, :, 0]:
        assert (digits == image).all(1).any()


def test_y_is_the_intensity_at_x() -> None:
    full = pixels.build(pixels.Config(max_images=100))
    some = pixels.build(pixels.Config(max_images=100, points=10))
    assert torch.equal(full.train.I, some.train.I)  # `points` leaves the images and their order alone
    images = full.train.y.view(-1, 1, 8, 8)
    # With align_corners=True, -1 and 1 are the centres of the corner pixels, as in our coordinates.
    sampled = F.grid_sample(images, some.train.x.unsqueeze(1), align_corners=True)  # [N, 1, 1, P]
    assert torch.allclose(sampled.view(-1, 10, 1), some.train.y, atol=1e-6)


def test_sampled_pixels_are_distinct_and_seeded() -> None:
    first, again, other = (pixels.build(pixels.Config(max_images=50, points=20, seed=s)) for s in (0, 0, 1))
    assert all(len(set(map(tuple, x.tolist()))) == 20 for x in first.train.x)
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.train.y, again.train.y)
    assert not torch.equal(first.train.x, other.train.x)


def test_I_is_the_image_standardised_with_the_train_statistics() -> None:
    task = pixels.build(pixels.Config(max_images=100))
    raw = task.train.y[..., 0]  # every pixel of each train image
    assert torch.allclose(task.train.I, (raw - raw.mean()) / raw.std(), atol=1e-5)
    assert abs(task.train.I.mean()) < 1e-5 and abs(task.train.I.std() - 1) < 1e-5


def test_more_points_than_pixels_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        pixels.build(pixels.Config(points=65))
    assert err.value.key == "task.points"
