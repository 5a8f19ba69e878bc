"""The single-run trainer and its CLI."""
import json
import math
import subprocess
import sys

import pytest
import yaml

from hypersweep.train import load_config, train

TEACHER = {"name": "teacher", "dim_x": 2, "dim_i": 4, "seed": 0}


def config(family="hyper", width=4, depth=1, **train_options):
    return load_config({
        "task": TEACHER,
        "model": {"family": family, "primary": {"width": width, "depth": depth},
                  "conditioner": {"width": 64, "depth": 2}, "embedding_dim": 16, "activation": "tanh"},
        "train": {"epochs": 40, "batch_size": 64, "lr": 3e-3, **train_options},
    })


def test_a_hypernetwork_with_a_17_parameter_g_learns_the_teacher():
    epochs = []
    result = train(config(), on_epoch=epochs.append)
    assert result["status"] == "ok"
    assert result["params_primary"] == 2 * 4 + 4 + 4 * 1 + 1 == 17
    assert result["test_error"] < 0.05
    assert [m["epoch"] for m in epochs] == list(range(1, 41))
    assert epochs[-1]["val_error"] < epochs[0]["val_error"] / 2


@pytest.mark.parametrize("family", ["hyper", "embedding"])
def test_both_families_beat_chance_on_digits_rotation_within_a_few_epochs(family):
    cfg = load_config({
        "task": {"name": "rotation", "dataset": "digits"},
        "model": {"family": family, "primary": {"width": 10, "depth": 1}, "primary_bias": family != "hyper",
                  "conditioner": {"width": 100, "depth": 2}, "embedding_dim": 16},
        "train": {"epochs": 5, "lr": 3e-3},
    })
    result = train(cfg)
    chance = 11 / 12
    assert result["test_error"] < 0.8 * chance


def test_same_config_and_seed_give_identical_metrics():
    timing = {"wall_s", "samples_per_s"}
    a, b = (train(config(epochs=3)) for _ in range(2))
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    c = train(config(epochs=3, seed=1))
    assert c["test_error"] != a["test_error"]


def test_a_diverging_run_stops_with_status_diverged():
    result = train(config(epochs=5, optimizer="sgd", lr=1e12))
    assert result["status"] == "diverged"
    assert math.isnan(result["test_error"]) and result["epochs"] <= 5


@pytest.mark.parametrize("family", ["hyper", "embedding", "standard"])
def test_replicas_report_spread_and_disagreement(family):
    result = train(config(family, epochs=3, seeds=4))
    assert result["seeds"] == 4
    assert result["test_error_std"] > 0 and result["test_error_max"] >= result["test_error"]
    assert 0 < result["replica_disagreement"] < math.inf
    assert result["params_total"] == train(config(family, epochs=1))["params_total"]


def test_replica_disagreement_falls_as_training_proceeds():
    curve = []
    train(config(epochs=30, seeds=3), on_epoch=curve.append)
    assert curve[-1]["replica_disagreement"] < curve[0]["replica_disagreement"]


def run_cli(tmp_path, cfg, *args):
    path = tmp_path / "run.yaml"
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "hypersweep.train", str(path), *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_json_prints_one_object(tmp_path):
    proc = run_cli(tmp_path, {"task": TEACHER, "model": {"family": "embedding"}, "train": {"epochs": 2}}, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("status", "val_error", "test_error", "params_primary", "params_conditioner",
                "params_total", "epochs", "wall_s", "samples_per_s"):
        assert key in result
    assert result["status"] == "ok" and result["epochs"] == 2


BAD = [
    ({"task": TEACHER, "model": {"famly": "hyper"}}, "model.famly: unknown key"),
    ({"task": {"name": "nope"}}, "task.name: unknown task 'nope'"),
    ({"task": TEACHER, "model": {"family": "hybrid"}}, "model.family: must be one of"),
    ({"task": TEACHER, "model": {"primary": {"width": 0}}}, "model.primary.width: must be >= 1, got 0"),
    ({"task": TEACHER, "train": {"lr": -0.1}}, "train.lr: must be > 0"),
    ({"task": TEACHER, "train": {"epochs": "ten"}}, "train.epochs: expected an integer"),
    ({"task": {**TEACHER, "dim_x": 2.5}}, "task.dim_x: expected an integer"),
    ({"task": TEACHER, "model": {"conditioner": {"width": 4096, "depth": 3}}, "train": {"max_params": 10000}},
     "train.max_params: model has"),
    ({"task": {"name": "rotation", "dataset": "mnist", "data_dir": "/nonexistent/mnist"}}, "/nonexistent/mnist"),
    ("task: {name: teacher\nmodel: [", "YAML syntax error"),
    ("- just\n- a list\n", "expected a mapping"),
]


@pytest.mark.parametrize("cfg,message", BAD, ids=[m for _, m in BAD])
def test_bad_config_is_one_line_and_exit_2(tmp_path, cfg, message):
    proc = run_cli(tmp_path, cfg)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "run.yaml" in lines[0] and message in lines[0]
