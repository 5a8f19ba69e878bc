"""The synthetic teacher task: the hypernetwork teacher (favourable) and the generic MLP teacher."""
import math

import pytest
import torch

from hypersweep.tasks import build_task, parse_task
from hypersweep.tasks.teacher import teacher


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


def test_the_hypernet_teacher_stays_the_default():
    default, explicit = (build_task(parse_task({"name": "teacher", **extra})) for extra in ({}, {"target": "hypernet"}))
    assert torch.equal(default.train.y, explicit.train.y)


def test_an_unknown_teacher_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"task.target: must be one of hypernet, mlp, got 'resnet'"):
        parse_task({"name": "teacher", "target": "resnet"})


def mlp(**options):
    return parse_task({"name": "teacher", "target": "mlp", **options})


def test_the_mlp_teacher_is_fixed_by_its_seed_alone():
    small, large, other = mlp(seed=3, train_instances=50), mlp(seed=3, train_instances=500), mlp(seed=4)
    I, x = torch.randn(6, 4), torch.rand(6, 5, 2) * 2 - 1
    # The function does not depend on how many instances the task draws...
    assert torch.equal(teacher(small)(I, x), teacher(large)(I, x))
    # ...and the whole task is reproducible from the config.
    assert torch.equal(build_task(small).test.y, build_task(mlp(seed=3, train_instances=50)).test.y)
    assert not torch.allclose(teacher(small)(I, x), teacher(other)(I, x))


def test_the_mlp_teacher_has_the_hypernet_teachers_scale():
    for n in (2, 4, 8):
        y = build_task(mlp(dim_i=n)).train.y
        assert 0.85 < float(y.std()) < 1.15  # unit std by construction; the hypernet teacher's is 0.4-1.2
    hypernet = build_task(parse_task({"name": "teacher"})).train.y
    assert 0.4 < float(hypernet.std()) < 1.2


def variance_shares(cfg) -> dict[str, float]:
    """Shares of var(y) on a grid (every instance at the same x points): a function of I alone, of x
    alone, their interaction (what no f(x) + g(I) can fit), and what a linear fit on [x, I] leaves."""
    gen = torch.Generator().manual_seed(99)
    I = (torch.rand(300, cfg.dim_i, generator=gen) * 2 - 1) * math.sqrt(3)
    x = (torch.rand(64, cfg.dim_x, generator=gen) * 2 - 1).expand(300, 64, cfg.dim_x)
    y = teacher(cfg)(I, x)[..., 0]
    total = y.var(unbiased=False)
    by_i, by_x, mean = y.mean(1, keepdim=True), y.mean(0, keepdim=True), y.mean()
    inputs = torch.cat([x, I[:, None, :].expand(-1, 64, -1), torch.ones(300, 64, 1)], -1).reshape(-1, cfg.dim_x
                                                                                                   + cfg.dim_i + 1)
    linear = inputs @ torch.linalg.lstsq(inputs, y.reshape(-1, 1)).solution
    return {"I": float((by_i - mean).pow(2).mean() / total), "x": float((by_x - mean).pow(2).mean() / total),
            "interaction": float((y - by_i - by_x + mean).pow(2).mean() / total),
            "linear residual": float((linear - y.reshape(-1, 1)).pow(2).mean() / total)}


@pytest.mark.parametrize("n", [2, 4, 8])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_mlp_teacher_needs_x_and_i_together_and_is_not_linear(n, seed):
    shares = variance_shares(mlp(dim_i=n, seed=seed))
    assert shares["I"] > 0.05  # depends on the instance...
    assert shares["x"] + shares["interaction"] > 0.05  # ...and on x within an instance
    assert shares["interaction"] > 0.05  # not f(x) + g(I): x's effect changes with I
    assert shares["linear residual"] > 0.1  # a linear model on [x, I] is far off


def test_the_hypernet_teacher_varies_mostly_between_instances():
    # Why it is the favourable case: a function of I alone already explains most of its variance,
    # so loose error targets ask almost nothing of the primary net.
    assert variance_shares(parse_task({"name": "teacher"}))["I"] > 0.8
