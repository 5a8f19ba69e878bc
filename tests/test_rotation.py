"""Rotation prediction: batched rotations, angle classes and the task built on digits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hypersweep.tasks import Task, rotation


def test_angle_class_is_the_nearest_multiple_of_30_degrees() -> None:
    degrees = torch.tensor([0.0, 14.0, 16.0, 90.0, 180.0, 344.0, 346.0, 355.0])
    assert rotation.angle_class(degrees).tolist() == [0, 0, 1, 3, 6, 11, 0, 0]
    assert rotation.angle_class(degrees).dtype == torch.int64


def test_rotate_by_0_is_the_identity() -> None:
    images = torch.rand(3, 2, 7, 5)
    assert torch.allclose(rotation.rotate(images, torch.zeros(3)), images, atol=1e-6)


@pytest.mark.parametrize(("degrees", "quarter_turns"), [(90.0, 1), (180.0, 2), (270.0, 3), (-90.0, -1)])
def test_rotate_by_quarter_turns_matches_rot90(degrees: float, quarter_turns: int) -> None:
    images = torch.rand(2, 3, 6, 6)
    # rot90 from the first spatial dim (rows) towards the second turns counter-clockwise.
    expected = torch.rot90(images, quarter_turns, dims=(-2, -1))
    assert torch.allclose(rotation.rotate(images, torch.full((2,), degrees)), expected, atol=1e-5)


def test_rotating_a_batch_equals_rotating_each_image_alone() -> None:
    images = torch.rand(4, 1, 9, 9)
    degrees = torch.tensor([10.0, 95.0, 200.0, 333.0])
    batch = rotation.rotate(images, degrees)
    for i in range(4):
        assert torch.allclose(batch[i], rotation.rotate(images[i : i + 1], degrees[i : i + 1])[0], atol=1e-6)


def test_rotate_is_deterministic() -> None:
    images, degrees = torch.rand(8, 1, 8, 8), 360 * torch.rand(8)
    assert torch.equal(rotation.rotate(images, degrees), rotation.rotate(images, degrees))


@pytest.mark.parametrize("degrees", [30.0, 137.0])
@pytest.mark.parametrize("size", [(28, 28), (20, 32)])
def test_rotate_matches_pil_away_from_the_border(degrees: float, size: tuple[int, int]) -> None:
    Image = pytest.importorskip("PIL.Image")
    image = np.random.default_rng(0).random(size, dtype=np.float32)
    expected = np.asarray(Image.fromarray(image, mode="F").rotate(degrees, resample=Image.BILINEAR))
    rotated = rotation.rotate(torch.from_numpy(image)[None, None], torch.tensor([degrees]))[0, 0]
    # PIL treats the outermost pixels differently; the interior must agree.
    assert np.allclose(rotated.numpy()[6:-6, 6:-6], expected[6:-6, 6:-6], atol=1e-5)


def test_rotated_copies_and_their_classes() -> None:
    image = torch.rand(1, 1, 8, 8)
    degrees = torch.tensor([[90.0, 0.0]])
    x = rotation.rotated_copies(image, degrees)
    assert x.shape == (1, 2, 64)
    assert torch.allclose(x[0, 0], torch.rot90(image[0], 1, dims=(-2, -1)).flatten(), atol=1e-5)
    assert torch.allclose(x[0, 1], image.flatten(), atol=1e-6)
    assert rotation.angle_class(degrees).tolist() == [[3, 0]]


def small_task(seed: int = 0) -> Task:
    return rotation.build(rotation.Config(max_images=300, rotations=4, seed=seed))


def test_task_shapes_and_kind() -> None:
    task = small_task()
    assert (task.name, task.kind, task.dim_i, task.dim_x, task.dim_out) == ("rotation", "classification", 64, 64, 12)
    assert (len(task.train), len(task.val), len(task.test)) == (180, 60, 60)
    for split in task.splits().values():
        assert split.I.shape == (len(split), 64) and split.I.dtype == torch.float32
        assert split.x.shape == (len(split), 4, 64) and split.x.dtype == torch.float32
        assert split.y.shape == (len(split), 4) and split.y.dtype == torch.int64
        assert split.y.min() >= 0 and split.y.max() < 12


def test_splits_never_share_an_image() -> None:
    task = rotation.build(rotation.Config(rotations=1))  # all 1797 digits, none of them duplicates
    images = [{tuple(row) for row in split.I.tolist()} for split in task.splits().values()]
    assert sum(map(len, images)) == 1797
    assert len(set.union(*images)) == 1797


def test_same_seed_same_task_other_seed_other_task() -> None:
    first, again, other = small_task(seed=1), small_task(seed=1), small_task(seed=2)
    for name in ["train", "val", "test"]:
        a, b = first.splits()[name], again.splits()[name]
        assert torch.equal(a.I, b.I) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(first.train.I, other.train.I)
    assert not torch.equal(first.train.y, other.train.y)


def test_inputs_are_standardised_with_the_train_images_statistics() -> None:
    task = small_task()
    assert abs(task.train.I.mean()) < 1e-5
    assert abs(task.train.I.std() - 1) < 1e-5
    assert abs(task.train.x.mean()) < 0.1 and 0.5 < task.train.x.pow(2).mean() < 1.5
    # Rotation fills with black before standardising, so the fill is the images' background.
    assert torch.isclose(task.train.x.min(), task.train.I.min())


def test_each_label_names_the_turn_that_best_maps_I_to_x() -> None:
    split = small_task().train
    n = len(split)
    images = split.I.view(n, 1, 8, 8)
    turns = torch.stack([rotation.rotate(images, torch.full((n,), 30.0 * k)).flatten(1) for k in range(12)], 1)
    distance = (turns[:, None] - split.x[:, :, None]).pow(2).sum(-1)  # [N, P, 12]
    # Bilinear blur and 8 x 8 pixels make a few points ambiguous; chance would be 1/12.
    assert (distance.argmin(-1) == split.y).float().mean() > 0.9
