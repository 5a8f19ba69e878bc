"""Search-space files: what they mean, and how bad ones are refused."""
from pathlib import Path

import pytest
import yaml

from hypersweep.config import ConfigError
from hypersweep.search_space import load

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))

SMALL = {
    "experiment": "tiny",
    "task": {"name": "teacher", "dim_x": 2, "dim_i": 4},
    "train": {"lr": 0.003},
    "objective": {"type": "constrained", "target": 0.05},
    "budget": {"trials": 4, "epochs": 3},
    "families": {
        "hyper": {"primary": {"width": {"low": 1, "high": 16, "log": True}, "depth": 1},
                  "conditioner": {"width": 32, "depth": {"choices": [1, 2]}}},
        "embedding": {"primary": {"width": {"low": 2, "high": 64}}, "embedding_dim": {"low": 2, "high": 8},
                      "train": {"lr": {"low": 0.001, "high": 0.01, "log": True}}},
    },
}


def write(tmp_path, data, name="space.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_a_space_names_each_searched_key_by_its_run_config_path(tmp_path):
    spec = load(write(tmp_path, SMALL))
    hyper, embedding = spec.studies
    assert [p.name for p in hyper.params] == ["model.primary.width", "model.conditioner.depth"]
    assert [p.name for p in embedding.params] == ["model.primary.width", "model.embedding_dim", "train.lr"]
    assert hyper.params[0].kind == "int" and hyper.params[0].log
    assert embedding.params[2].kind == "float"
    assert hyper.study == "tiny-hyper" and hyper.dims == (4, 2, 1)
    cfg = hyper.config({"model.primary.width": 8, "model.conditioner.depth": 2})
    assert cfg["model"] == {"family": "hyper", "primary": {"width": 8, "depth": 1},
                            "conditioner": {"width": 32, "depth": 2}}
    assert cfg["train"]["epochs"] == 3  # budget.epochs sets the training length
    assert spec.early_stopping  # ASHA is on by default for the constrained objective
    assert spec.trials(hyper) == 4


def test_variants_make_one_study_per_value_and_family(tmp_path):
    spec = load(write(tmp_path, {**SMALL, "variants": {"task.dim_i": [2, 8]}}))
    assert [s.study for s in spec.studies] == ["tiny-hyper-dim_i=2", "tiny-embedding-dim_i=2",
                                               "tiny-hyper-dim_i=8", "tiny-embedding-dim_i=8"]
    assert spec.studies[2].dims == (8, 2, 1)


def test_a_grid_covers_every_point(tmp_path):
    grid = {**SMALL, "sampler": {"name": "grid"}, "budget": {"epochs": 2},
            "families": {"hyper": {"conditioner": {"depth": {"low": 2, "high": 9}, "width": {"choices": [50, 100]}}}}}
    spec = load(write(tmp_path, grid))
    assert spec.trials(spec.studies[0]) == 16


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_shipped_spaces_load_or_name_their_missing_data(path):
    try:
        spec = load(str(path))
    except ConfigError as err:  # MNIST and CIFAR-10 need their files
        assert "task.data_dir" in str(err) and path.name in str(err)
        return
    assert spec.studies and all(spec.trials(s) >= 1 for s in spec.studies)


def mutate(path: str, value):
    data = yaml.safe_load(yaml.safe_dump(SMALL, sort_keys=False))
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is KeyError:
        del node[leaf]
    else:
        node[leaf] = value
    return data


BAD = [
    (mutate("families.hyper.primary.width", {"low": 0, "high": 8}), "families.hyper.primary.width: low 0 must be >= 1"),
    (mutate("families.hyper.primary.width", {"low": 9, "high": 8}), "families.hyper.primary.width: empty range"),
    (mutate("families.hyper.primary.width", {"low": 1}), "families.hyper.primary.width.high: a range needs"),
    (mutate("families.hyper.primary.width", {"choices": []}), "families.hyper.primary.width.choices: expected a non"),
    (mutate("families.hyper.primary.depth", "two"), "families.hyper.primary.depth: expected an integer"),
    (mutate("families.hyper.primry", {"width": 3}), "families.hyper.primry: unknown key"),
    (mutate("families.hyper.activation", {"choices": ["relu", "swish"]}), "families.hyper.activation: choice 'swish'"),
    (mutate("families.transformer", {}), "families.transformer: unknown family"),
    (mutate("families", {}), "families: give at least one"),
    (mutate("task.name", "nope"), "task.name: unknown task"),
    (mutate("task.dim_x", 0), "task.dim_x: must be >= 1"),
    (mutate("sampler", {"name": "cmaes"}), "sampler.name: must be one of"),
    (mutate("objective.target", 0.0), "objective.target: must be > 0"),
    (mutate("objective.target", 1.5), "objective.target: must be <= 1"),
    (mutate("objective.target", KeyError), "objective.target: the constrained objective needs"),
    (mutate("objective.targets", [0.1, 2]), "objective.targets: must be <= 1"),
    (mutate("budget.trials", 0), "budget.trials: must be >= 1"),
    (mutate("budget.trials", 10**7), "budget.trials: must be <= 1000000"),
    (mutate("families.hyper.primary.width", {"low": 1, "hgh": 8}),
     "families.hyper.primary.width.hgh: unknown key in a range (expected choices, high, log, low, step)"),
    (mutate("variants", {"task.bogus": [1, 2]}), "variants.task.bogus: unknown key (expected one of"),
    (mutate("budget.max_params", 1000), "families.hyper: the largest model has"),
    (mutate("resources.gpus", -1), "resources.gpus: must be >= 0"),
    (mutate("experiment", "a/b"), "experiment: use letters"),
    (mutate("experiment", "exp\u00e9rience"), "experiment: use letters"),
    (mutate("traing", {}), "traing: unknown key"),
    (mutate("task", {"name": "rotation", "dataset": "mnist", "data_dir": "/no/such/dir"}), "task.data_dir"),
    (mutate("task", {"name": "rotation", "dataset": "imagenet"}), "task.dataset: must be one of"),
    ("experiment: x\nfamilies: {hyper: [}\n", "YAML syntax error"),
]


@pytest.mark.parametrize("data,message", BAD, ids=[m for _, m in BAD])
def test_bad_spaces_name_the_file_and_key(tmp_path, data, message):
    path = write(tmp_path, data, "bad.yaml")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_variant_group_sets_several_keys_together(tmp_path):
    # The training set grows with n, so n and train_instances vary as one; seeds cross both.
    data = yaml.safe_load(Path("search_spaces/quickstart.yaml").read_text())
    data["variants"] = {"n": [{"task.dim_i": 2, "task.train_instances": 500},
                              {"task.dim_i": 8, "task.train_instances": 2000}], "task.seed": [0, 1]}
    data["families"] = {"hyper": data["families"]["hyper"]}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load(str(path), build_tasks=False)
    assert [s.variant for s in spec.studies] == [
        {"task.dim_i": 2, "task.train_instances": 500, "task.seed": 0},
        {"task.dim_i": 2, "task.train_instances": 500, "task.seed": 1},
        {"task.dim_i": 8, "task.train_instances": 2000, "task.seed": 0},
        {"task.dim_i": 8, "task.train_instances": 2000, "task.seed": 1}]
    assert spec.studies[2].config({})["task"]["train_instances"] == 2000
    data["variants"] = {"n": [{"dim_i": 2}]}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"variants.n\[0\].dim_i: must be a task., model. or train. path"):
        load(str(path), build_tasks=False)
