"""The synthetic teacher task."""
import torch

from hypersweep.tasks import build_task, parse_task


def test_teacher_shapes_and_splits():
    task = build_task(parse_task({"name": "teacher", "dim_x": 3, "dim_i": 5, "dim_y": 2, "points": 7,
                                  "train_instances": 40, "val_instances": 10, "test_instances": 12}))
    assert (task.kind, task.dim_x, task.dim_i, task.dim_out) == ("regression", 3, 5, 2)
    assert task.train.I.shape == (40, 5) and task.train.x.shape == (40, 7, 3) and task.train.y.shape == (40, 7, 2)
    assert len(task.val) == 10 and len(task.test) == 12
    assert task.train.x.abs().max() <= 1
    assert 0.8 < task.train.I.pow(2).mean() < 1.2  # standardised instances
    assert task.train.y.std() > 0.05  # a non-trivial target


def test_teacher_is_deterministic_per_seed_and_varies_with_i():
    a, b, c = (build_task(parse_task({"name": "teacher", "seed": s})) for s in (0, 0, 1))
    assert torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.test.y, c.test.y)
    # Each instance is a different function: the first point's target varies across instances.
    assert a.train.y[:, 0].std() > 0.05
