"""The single-run trainer and its CLI."""
import json
import math
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from hypersweep.tasks import build_task, load_config
from hypersweep.train import main, resolve_device, train, train_pack

TEACHER = {"name": "teacher", "dim_x": 2, "dim_i": 4, "seed": 0}


def config(family="hyper", width=4, depth=1, **train_options):
    return load_config({
        "task": TEACHER,
        "model": {"family": family, "primary": {"width": width, "depth": depth},
                  "conditioner": {"width": 64, "depth": 2}, "embedding_dim": 16, "activation": "tanh"},
        "train": {"epochs": 40, "batch_size": 64, "lr": 3e-3, **train_options},
    })


@pytest.mark.slow  # trains until it has learnt (4-10 s on 2 busy cores)
def test_a_hypernetwork_with_a_17_parameter_g_learns_the_teacher():
    epochs = []
    result = train(config(), on_epoch=epochs.append)
    assert result["status"] == "ok"
    assert result["params_primary"] == 2 * 4 + 4 + 4 * 1 + 1 == 17
    assert result["test_error"] < 0.05
    assert [m["epoch"] for m in epochs] == list(range(0, 41))  # epoch 0: as initialised
    assert epochs[-1]["val_error"] < epochs[1]["val_error"] / 2


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


@pytest.mark.slow  # trains replicas long enough to agree (1-10 s on 2 busy cores)
def test_replica_disagreement_falls_as_training_proceeds():
    curve = []
    train(config(epochs=30, seeds=3), on_epoch=curve.append)
    assert curve[-1]["replica_disagreement"] < curve[0]["replica_disagreement"]


def test_epoch_0_records_each_pack_members_replicas_as_initialised_and_changes_no_result():
    task = build_task(config().task)
    members = [config(width=w, epochs=2, seeds=3) for w in (2, 8)]
    curves = {0: [], 1: []}
    packed = train_pack(members, lambda m, metrics: curves[m].append(metrics), task)
    for m, cfg in enumerate(members):
        first = curves[m][0]
        assert [c["epoch"] for c in curves[m]] == [0, 1, 2]
        assert math.isnan(first["train_loss"])  # nothing trained yet
        # Each member's own initialisation: its replicas start apart, and each member's error is its own.
        assert first["replica_disagreement"] > 0 and first["val_error_max"] >= first["val_error"]
        assert first["val_error"] != curves[1 - m][0]["val_error"]
        alone = train(cfg, task=task)  # no listener, so no epoch 0 is evaluated
        assert packed[m]["val_error"] == pytest.approx(alone["val_error"], rel=1e-5)


def write_config(tmp_path, cfg) -> str:
    path = tmp_path / "run.yaml"
    if isinstance(cfg, bytes):
        path.write_bytes(cfg)
    else:
        path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return str(path)


def run_cli(tmp_path, cfg, *args, **popen):
    return subprocess.run([sys.executable, "-m", "hypersweep.train", write_config(tmp_path, cfg), *args],
                          capture_output=True, text=True, timeout=120, **popen)


@pytest.mark.slow  # a real process that imports torch and trains
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
    ({"task": {"name": ["teacher"]}}, "task.name: unknown task ['teacher']"),
    ({"task": TEACHER, "model": {"family": "hybrid"}}, "model.family: must be one of"),
    ({"task": TEACHER, "model": {"primary": {"width": 0}}}, "model.primary.width: must be >= 1, got 0"),
    ({"task": TEACHER, "train": {"lr": -0.1}}, "train.lr: must be > 0"),
    ("task: {name: teacher}\ntrain: {lr: .nan}\n", "train.lr: must be a finite number, got nan"),
    ("task: {name: teacher}\ntrain: {optimizer: sgd, momentum: .inf}\n", "train.momentum: must be a finite number"),
    ("task: {name: teacher}\ntrain: {weight_decay: 1e999}\n", "train.weight_decay: must be a finite number, got inf"),
    ({"task": TEACHER, "train": {"threads": 100000}}, "train.threads: must be <= 1024, got 100000"),
    ({"task": TEACHER, "train": {"device": "tpu"}}, "train.device: must be auto, cpu, cuda or cuda:N"),
    ({"task": TEACHER, "train": {"epochs": "ten"}}, "train.epochs: expected an integer"),
    ({"task": {**TEACHER, "dim_x": 2.5}}, "task.dim_x: expected an integer"),
    ({"task": TEACHER, "model": {"conditioner": {"width": 4096, "depth": 3}}, "train": {"max_params": 10000}},
     "train.max_params: model has"),
    ({"task": {"name": "rotation", "dataset": "mnist", "data_dir": "/nonexistent/mnist"}}, "/nonexistent/mnist"),
    ({"task": {**TEACHER, "points": 10**11}}, "out of memory (7.45e+05 GiB at once)"),
    ("task: {name: teacher\nmodel: [", "YAML syntax error"),
    ("- just\n- a list\n", "expected a mapping"),
    (b"task: {name: teacher}\n# caf\xe9\n", "line 2: not UTF-8 text (byte 0xe9)"),
]


@pytest.mark.parametrize("cfg,message", BAD, ids=[m for _, m in BAD])
def test_bad_config_is_one_line_naming_file_and_key_and_exit_2(tmp_path, capsys, cfg, message):
    path = write_config(tmp_path, cfg)
    assert main([path]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1
    assert message in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["run.yaml"]  # nothing written beside it


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_device_is_refused_where_there_is_none(tmp_path, capsys):
    path = write_config(tmp_path, {"task": TEACHER, "train": {"device": "cuda"}})
    assert main([path]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path}: train.device: cuda: no CUDA device is visible")
    with pytest.raises(Exception, match="cuda:3: no CUDA device"):
        resolve_device("cuda:3")


def test_a_directory_or_a_missing_argument_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: is a directory, not a YAML file\n"
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the following arguments are required: config (usage: ") and err.count("\n") == 1


def test_a_refused_config_ends_the_real_process_in_one_line(tmp_path):
    # threads: 100000 used to crash the OpenMP runtime (exit 139) before any Python error.
    proc = run_cli(tmp_path, {"task": TEACHER, "train": {"threads": 100000}})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.endswith("run.yaml: train.threads: must be <= 1024, got 100000\n")
    assert proc.stderr.count("\n") == 1


@pytest.mark.slow  # interrupts a real process mid-training
def test_ctrl_c_during_training_ends_in_one_line_and_exit_130(tmp_path):
    path = write_config(tmp_path, {"task": TEACHER, "train": {"epochs": 10_000}})
    # Shells started in the background ignore SIGINT, and children inherit that: restore the default.
    proc = subprocess.Popen([sys.executable, "-m", "hypersweep.train", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().startswith("epoch    0")  # the model is built
        assert proc.stdout.readline().startswith("epoch    1")  # training is under way
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err == "interrupted\n"
    assert "status" not in out  # no result printed for a run that did not finish


def test_ctrl_c_while_the_cli_imports_torch_ends_the_same_way(tmp_path):
    # A Ctrl-C at a chosen moment: importing torch raises KeyboardInterrupt, as SIGINT would there.
    script = ("import runpy, sys\n"
              "class CtrlC:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name == 'torch':\n"
              "            raise KeyboardInterrupt\n"
              "sys.meta_path.insert(0, CtrlC())\n"
              f"sys.argv = ['hypersweep.train', {write_config(tmp_path, {'task': TEACHER})!r}]\n"
              "runpy.run_module('hypersweep.train', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (130, "", "interrupted\n")


def test_a_directory_where_a_dataset_file_should_be_is_one_line(tmp_path, capsys):
    data = tmp_path / "mnist"
    (data / "train-images-idx3-ubyte").mkdir(parents=True)
    path = write_config(tmp_path, {"task": {"name": "rotation", "dataset": "mnist", "data_dir": str(data)}})
    assert main([path]) == 2
    assert capsys.readouterr().err == (f"error: {path}: task.data_dir: cannot read "
                                       f"{data / 'train-images-idx3-ubyte'}: Is a directory\n")
