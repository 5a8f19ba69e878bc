"""Validating run configs: types, bounds, finite numbers, and reading the file itself."""
import os

import pytest

import hypersweep.train
from hypersweep.config import ConfigError, ModelConfig, read_yaml
from hypersweep.tasks import load_config

TEACHER = {"name": "teacher", "dim_x": 2, "dim_i": 4}


def refusal(data) -> str:
    """The one-line message load_config refuses `data` with."""
    with pytest.raises(ConfigError) as info:
        load_config(data)
    return str(info.value)


@pytest.mark.parametrize("section,key", [("train", "lr"), ("train", "momentum"), ("train", "weight_decay"),
                                         ("task", "noise")])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_with_the_key_named(section, key, value):
    data = {"task": dict(TEACHER), "train": {}}
    data[section][key] = value
    assert refusal(data) == f"{section}.{key}: must be a finite number, got {value}"


def test_an_integer_too_large_for_a_float_or_for_int64_is_refused():
    assert refusal({"task": TEACHER, "train": {"lr": 10**400}}) == f"train.lr: must be a finite number, got {10**400}"
    assert load_config({"task": TEACHER, "train": {"weight_decay": 2**64}}).train.weight_decay == 2.0**64
    assert refusal({"task": TEACHER, "train": {"epochs": 2**63}}).startswith("train.epochs: must fit in 64 bits")
    assert load_config({"task": TEACHER, "train": {"seed": 2**63 - 1}}).train.seed == 2**63 - 1


def test_threads_are_capped_because_the_openmp_runtime_crashes_on_absurd_counts():
    assert load_config({"task": TEACHER, "train": {"threads": 8}}).train.threads == 8
    assert refusal({"task": TEACHER, "train": {"threads": 100000}}) == "train.threads: must be <= 1024, got 100000"


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_names_torch_understands_are_accepted_when_parsing(device):
    # Whether a CUDA device is visible is checked where training runs (hypersweep.train.resolve_device).
    assert load_config({"task": TEACHER, "train": {"device": device}}).train.device == device


@pytest.mark.parametrize("device", ["gpu", "cudaX", "cuda:", "cuda:one", "CPU", ""])
def test_other_device_names_are_refused(device):
    assert refusal({"task": TEACHER, "train": {"device": device}}).startswith(
        "train.device: must be auto, cpu, cuda or cuda:N")


def test_primary_bias_follows_bias_unless_set():
    assert ModelConfig(bias=False).has_primary_bias is False
    assert ModelConfig(bias=True, primary_bias=False).has_primary_bias is False
    assert ModelConfig(bias=False, primary_bias=True).has_primary_bias is True
    assert ModelConfig().primary_bias is None  # kept as written, for the results' config columns


def test_an_error_is_one_line_even_when_the_file_puts_a_newline_in_a_key():
    message = refusal({"task": TEACHER, "model": {"bad\nkey": 1}})
    assert message.startswith("model.bad\\nkey: unknown key") and "\n" not in message


def test_load_config_is_still_importable_from_train():
    assert hypersweep.train.load_config is load_config


def write(tmp_path, content: bytes) -> str:
    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    return str(path)


def test_read_yaml_names_the_line_of_a_byte_that_is_not_utf8(tmp_path):
    path = write(tmp_path, "task: {name: teacher}\nmodel: {activation: r\xe9lu}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"run\.yaml: line 2: not UTF-8 text \(byte 0xe9\)$"):
        read_yaml(path)


def test_read_yaml_refuses_control_characters_and_deep_nesting(tmp_path):
    with pytest.raises(ConfigError, match="line 3: character #x0007 is not allowed in YAML"):
        read_yaml(write(tmp_path, b"a: 1\nb: 2\nc: \x07\n"))
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_yaml(write(tmp_path, b"[" * 100_000))


@pytest.mark.parametrize("value,problem", [("2001-13-45", "month must be in 1..12"), ("9" * 5000, "4300 digits"),
                                           ("!!float abc", "could not convert")])
def test_read_yaml_refuses_a_value_pyyaml_cannot_build(tmp_path, value, problem):
    with pytest.raises(ConfigError, match=f"YAML value error: .*{problem}"):
        read_yaml(write(tmp_path, f"seed: {value}\n".encode()))


def test_read_yaml_refuses_a_key_given_twice_and_names_both_lines(tmp_path):
    text = b"experiment: a\nbudget: {trials: 4}\nexperiment: b\n"
    with pytest.raises(ConfigError, match=r"run\.yaml: line 3: duplicate key 'experiment' \(first on line 1\)$"):
        read_yaml(write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"line 1: duplicate key 'lr'"):  # inside a flow mapping too
        read_yaml(write(tmp_path, b"train: {lr: 0.1, lr: 0.2}\n"))
    # a merge key's values may be overridden beside it, and the same key in two mappings is no duplicate
    assert read_yaml(write(tmp_path, b"base: &b {lr: 1}\nx: {<<: *b, lr: 2}\ny: {lr: 3}\n"))["x"] == {"lr": 2}


def test_read_yaml_refuses_a_directory_and_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory, not a YAML file"):
        read_yaml(str(tmp_path))
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        read_yaml(str(tmp_path / "nope.yaml"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_read_yaml_refuses_an_unreadable_file(tmp_path):
    path = write(tmp_path, b"task: {name: teacher}\n")
    os.chmod(path, 0)
    with pytest.raises(ConfigError, match=r"run\.yaml: cannot read it: Permission denied"):
        read_yaml(path)
