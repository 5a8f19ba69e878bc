"""Trial packing: a member of a pack trains exactly as it would alone, and only its own fate touches it."""
import math

import pytest

from hypersweep.packing import ACTIVATION_CAP, pack_key, plan_packs
from hypersweep.sweep import Rungs
from hypersweep.tasks import build_task, load_config
from hypersweep.train import train, train_pack

DIMS = (4, 2, 1)  # the teacher task's (dim_i, dim_x, dim_out)
TEACHER = {"name": "teacher", "dim_x": 2, "dim_i": 4, "train_instances": 192, "val_instances": 64,
           "test_instances": 64, "points": 8}


def config(family="hyper", width=4, lr=0.003, conditioner=16, embedding=4, activation="tanh", optimizer="adam",
           weight_decay=0.0, depth=1, epochs=4, seeds=1, **train_keys):
    model = {"family": family, "primary": {"width": width, "depth": depth}, "activation": activation,
             "conditioner": {"width": conditioner, "depth": 2}, "embedding_dim": embedding}
    return load_config({"task": TEACHER, "model": model,
                        "train": {"epochs": epochs, "lr": lr, "optimizer": optimizer, "weight_decay": weight_decay,
                                  "seeds": seeds, "device": "cpu", "batch_size": 32, **train_keys}})


def close(a: dict, b: dict, keys=("train_loss", "val_error", "test_error", "val_error_std")) -> bool:
    return all(a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-7) for k in keys)


@pytest.mark.parametrize("family", ["hyper", "embedding", "standard"])
@pytest.mark.parametrize("activation, optimizer", [("tanh", "adam"), ("sigmoid", "adamw"), ("relu", "sgd")])
def test_a_member_of_a_pack_of_mixed_widths_and_learning_rates_trains_exactly_as_it_would_alone(
        family, activation, optimizer):
    members = [config(family, 3, 0.003, 16, 4, activation, optimizer, 0.01, momentum=0.9),
               config(family, 8, 0.02, 24, 8, activation, optimizer, 0.0, momentum=0.5),
               config(family, 5, 0.001, 12, 2, activation, optimizer, 0.1)]
    assert len({pack_key(c) for c in members}) == 1  # widths, lr, weight decay and momentum differ in a pack
    task = build_task(members[0].task)
    packed = train_pack(members, task=task)
    for alone, member in zip([train(c, task=task) for c in members], packed, strict=True):
        assert close(alone, member)
        assert member["status"] == "ok" and member["params_primary"] == alone["params_primary"]
        assert member["params_total"] == alone["params_total"]  # each member's own counts, not the pack's


def test_replicas_of_packed_members_keep_their_own_spread():
    members = [config("hyper", 2, seeds=3), config("hyper", 6, lr=0.01, seeds=3)]
    task = build_task(members[0].task)
    for alone, member in zip([train(c, task=task) for c in members], train_pack(members, task=task), strict=True):
        assert close(alone, member, ("val_error", "val_error_std", "val_error_max", "replica_disagreement"))


def test_a_diverging_member_leaves_its_siblings_untouched():
    blowing_up = config("embedding", 5, lr=1e12, optimizer="sgd")
    siblings = [config("embedding", 3, optimizer="sgd"), config("embedding", 7, lr=0.01, optimizer="sgd")]
    task = build_task(siblings[0].task)
    left = []
    with_nan = train_pack([siblings[0], blowing_up, siblings[1]], task=task,
                          on_leave=lambda m, result: left.append((m, result["status"])))
    without = train_pack(siblings, task=task)
    assert with_nan[1]["status"] == "diverged" and math.isnan(with_nan[1]["val_error"])
    assert left == [(1, "diverged")]  # reported when it left, not at the end
    assert with_nan[1]["epochs"] < 4  # it stopped training (and left the model) at once
    for a, b in zip([with_nan[0], with_nan[2]], without, strict=True):
        assert b["status"] == "ok" and close(a, b)


def test_a_member_stopped_early_leaves_the_pack_and_the_others_train_on_unchanged():
    members = [config("standard", 4, epochs=6), config("standard", 9, lr=0.01, epochs=6),
               config("standard", 6, lr=0.001, epochs=6)]
    task = build_task(members[0].task)
    seen = []

    def stop(epoch, metrics):
        seen.append((epoch, sorted(metrics)))
        return [1] if epoch == 2 else []

    packed = train_pack(members, task=task, stop=stop)
    assert packed[1]["status"] == "pruned" and packed[1]["epochs"] == 2
    assert seen[2] == (3, [0, 2])  # after epoch 2 it is no longer trained nor judged
    alone = train_pack([members[0], members[2]], task=task)  # the same pack without it
    assert close(packed[0], alone[0]) and close(packed[2], alone[1])
    assert packed[1]["test_error"] != packed[1]["test_error"]  # NaN: stopped before the test set


def test_each_member_gets_its_share_of_the_pack_time():
    members = [config("hyper", 2), config("hyper", 3)]
    packed = train_pack(members)
    assert all(r["wall_s"] > 0 for r in packed)
    assert packed[0]["wall_s"] == pytest.approx(packed[1]["wall_s"], rel=0.05)


def test_packs_group_what_must_be_shared_and_cap_wide_members():
    narrow = [config("standard", w) for w in (2, 3, 4)]
    deeper = [config("standard", 3, depth=2)]
    other_batch = [config("standard", 3, batch_size=16)]
    packs = plan_packs(narrow + deeper + other_batch, DIMS, points=8, most=8, cap=ACTIVATION_CAP["cpu"])
    assert sorted(packs) == [[0, 1, 2], [3], [4]]  # depth and batch size cannot be padded
    assert plan_packs(narrow, DIMS, points=8, most=2, cap=ACTIVATION_CAP["cpu"]) == [[1, 2], [0]]  # widest first
    # 32 x 8 x 4 = 1024 floats per member: a cap of 2,500 fits two of them
    assert sorted(plan_packs(narrow, DIMS, points=8, most=8, cap=2500)) == [[0], [1, 2]]


def test_a_member_shares_a_pack_only_where_padding_at_most_doubles_its_work():
    # standard depth 2 on 64 points: 2,048 x (w^2 + 9w + 1) multiply-adds per step of 32 instances
    cfgs = [config("standard", w, depth=2) for w in (2, 24, 8, 30, 12)]
    packs = plan_packs(cfgs, DIMS, points=64, most=8, cap=ACTIVATION_CAP["cpu"])
    # 30 takes 24 (1.6M -> 2.4M) but not 12 (0.5M); 12 takes 8 (0.28M -> 0.52M) but not 2, whose
    # 47k multiply-adds may grow to PAD_FREE (262k) and no further
    assert sorted(packs) == [[0], [1, 3], [2, 4]]


def test_rungs_stop_a_member_worse_than_the_best_quarter_its_study_recorded_before():
    rungs = Rungs()
    assert rungs.judge("a", 2, {0: 0.5, 1: 0.4, 2: 0.3, 3: 0.9}) == [3]  # 0.9 > 25th percentile of 0.5, 0.4, 0.3
    assert rungs.judge("b", 2, {0: 0.9}) == []  # another study's values are not compared
    assert rungs.judge("a", 8, {0: 0.9}) == []  # nor another rung's
    assert rungs.judge("a", 2, {7: 0.36}) == []  # the best quarter of 0.5, 0.4, 0.3, 0.9 starts at 0.375
