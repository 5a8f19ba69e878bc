"""Fuzzing the two CLIs with bad input: every refusal is one line, exit 2, no traceback, nothing written.

Each generated input starts from a small valid file and breaks it in one way that must be
refused: a wrong type, NaN or infinity, a value out of its bounds, an unknown or a missing
key, a section that is not a mapping, bytes that are not UTF-8, random text, or a
directory instead of a file. The breakable keys are read off the config dataclasses, so a
new key is fuzzed as soon as it exists. The CLIs run in-process (`main(argv)`); a launch
that accepted its input would start Ray, so its `_run` is replaced by a stub that fails
the example instead.

Beyond inputs that must be refused, space files mutated at random (any key set to any small YAML value,
or removed) and any values of the environment variables launch reads (TUNE_MAX_PENDING_TRIALS_PG,
HYPERSWEEP_STORAGE) must be either accepted (the stub answers instead of Ray) or refused in one line,
and neither may write a file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import re
import tempfile
import traceback
import types
import typing
from pathlib import Path
from typing import Any, Literal
from unittest import mock

import pytest
import yaml

from hypersweep import launch, train
from hypersweep.config import ModelConfig, TrainConfig
from hypersweep.search_space import FAMILIES, MODEL_KEYS, Budget, Objective, Resources, Sampler, _Top
from hypersweep.tasks import registry, teacher

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (pip install hypothesis)")
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

# 40 examples per CLI keep this file under 15 s; HYPERSWEEP_FUZZ_EXAMPLES=2000 searches harder.
FUZZ = settings(max_examples=int(os.environ.get("HYPERSWEEP_FUZZ_EXAMPLES", 40)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

TASK = {"name": "teacher", "dim_x": 2, "dim_i": 2, "train_instances": 8, "val_instances": 4, "test_instances": 4,
        "points": 4}
RUN = {"task": TASK, "model": {"family": "hyper", "primary": {"width": 2, "depth": 1},
                               "conditioner": {"width": 4, "depth": 1}},
       "train": {"epochs": 1, "batch_size": 4}}
SPACE = {"experiment": "fuzz", "task": TASK,
         "objective": {"type": "pareto", "targets": [0.1]},
         "budget": {"trials": 2, "epochs": 1},
         "families": {"hyper": {"primary": {"width": {"low": 1, "high": 4}, "depth": 1}}}}


# --- What a broken value of each config type looks like ---------------------------------

# Mappings with keys no config has: under a family, `{low: .., high: ..}` would be a valid range.
NOT_NUMBERS = st.one_of(st.text(max_size=8), st.lists(st.integers(), min_size=1, max_size=2),
                        st.dictionaries(st.sampled_from(["a", "bb"]), st.integers(), min_size=1))
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
BEYOND_INT64 = st.one_of(st.integers(min_value=2**63), st.integers(max_value=-(2**63) - 1))
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def broken(tp: Any, meta: typing.Mapping, key: str) -> st.SearchStrategy:
    """Values a field of type `tp` with bounds `meta` must refuse (None excepted where it is allowed)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return broken(inner, meta, key)
    if origin is Literal:
        return st.one_of(st.text(max_size=8).filter(lambda v: v not in args), st.integers(), st.booleans(),
                         st.lists(st.sampled_from(args), min_size=1, max_size=2))
    if origin is list:
        return st.one_of(st.just([]), st.lists(broken(args[0], meta, key), min_size=1, max_size=2))
    if tp is bool:
        return st.one_of(st.integers(), st.text(max_size=8), st.floats())
    if tp is str:
        if key == "device":
            return st.one_of(st.text(max_size=8).filter(lambda v: not DEVICE.fullmatch(v)), st.integers())
        return st.one_of(st.integers(), st.booleans(), st.lists(st.text(max_size=3), min_size=1, max_size=2))
    low, high, open_low = meta.get("low"), meta.get("high"), meta.get("open_low", False)
    if tp is int:
        out = [NOT_NUMBERS, st.booleans(), st.floats(), BEYOND_INT64]
        if low is not None:
            out.append(st.integers(max_value=low - 1))
        if high is not None:
            out.append(st.integers(min_value=high + 1))
        return st.one_of(out)
    if tp is float:
        out = [NOT_NUMBERS, st.booleans(), NON_FINITE, st.just(10**400)]
        if low is not None:
            out.append(st.floats(max_value=low, exclude_max=not open_low, allow_nan=False, allow_infinity=False))
        if high is not None:
            out.append(st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False))
        return st.one_of(out)
    raise TypeError(f"no broken values for {key}: {tp!r}")


def leaves(cls: type, prefix: str = "") -> list[tuple[str, Any, typing.Mapping]]:
    """(dotted key, type, bounds) of every scalar field of a config dataclass, nested ones included."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            found += leaves(tp, f"{prefix}{f.name}.")
        elif tp not in (dict, Any):
            found.append((f"{prefix}{f.name}", tp, f.metadata))
    return found


# `task.name` picks the task's Config dataclass, so it is no field of one: it is listed as if it were.
TASK_NAME = ("task.name", Literal[tuple(registry())], {})
RUN_LEAVES = [TASK_NAME, *leaves(teacher.Config, "task."), *leaves(ModelConfig, "model."),
              *leaves(TrainConfig, "train.")]
SPACE_LEAVES = (leaves(Objective, "objective.") + leaves(Sampler, "sampler.") + leaves(Budget, "budget.")
                + leaves(Resources, "resources."))


def assign(data: dict, key: str, value: Any) -> dict:
    """A deep copy of `data` with the dotted `key` set to `value`."""
    data = yaml.safe_load(yaml.safe_dump(data))
    *parents, leaf = key.split(".")
    node = data
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value
    return data


@st.composite
def bad_leaf(draw, base: dict, keys: list, at: str = "") -> tuple[dict, str]:
    """`base` with one field broken; the message must name the field."""
    key, tp, meta = draw(st.sampled_from(keys))
    return assign(base, at + key, draw(broken(tp, meta, key.rsplit(".", 1)[-1]))), key


@st.composite
def unknown_key(draw, base: dict, sections: dict[str, set]) -> tuple[dict, str]:
    """`base` with a key its section does not know."""
    section = draw(st.sampled_from(sorted(sections)))
    name = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in sections[section] and "." not in k))
    return assign(base, f"{section}.{name}" if section else name, 1), "unknown key"


@st.composite
def not_a_mapping(draw, base: dict, sections: list[str]) -> tuple[dict, str]:
    section = draw(st.sampled_from(sections))
    return assign(base, section, draw(st.one_of(st.integers(), st.text(max_size=8), st.lists(st.integers())))), section


def as_bytes(case: tuple[dict, str]) -> tuple[bytes, str]:
    data, expect = case
    return yaml.safe_dump(data).encode(), expect


@st.composite
def not_utf8(draw, base: dict) -> tuple[bytes, str]:
    """The valid file with one byte that cannot start or continue a UTF-8 sequence there."""
    text = yaml.safe_dump(base).encode()  # ASCII: safe_dump escapes everything else
    at = draw(st.integers(0, len(text)))
    return text[:at] + bytes([draw(st.integers(0x80, 0xFF))]) + text[at:], "not UTF-8 text"


def bad_files(base: dict, broken_fields, sections: dict[str, set], mappings: list[str], required: list[str]):
    """Every way of breaking `base`, as (file bytes, a fragment the one-line message must hold)."""
    missing = st.sampled_from(required).map(lambda key: (without(base, key), key))
    return st.one_of(
        broken_fields.map(as_bytes),
        unknown_key(base, sections).map(as_bytes),
        not_a_mapping(base, mappings).map(as_bytes),
        missing.map(as_bytes),
        not_utf8(base),
        st.text(max_size=60).map(lambda text: (text.encode(), "")),  # whatever it parses to, it is no config
    )


def written(data: dict, folder: Path) -> str:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def without(data: dict, key: str) -> dict:
    data = yaml.safe_load(yaml.safe_dump(data))
    *parents, leaf = key.split(".")
    node = data
    for name in parents:
        node = node[name]
    del node[leaf]
    return data


# --- Running a CLI and checking how it refused -----------------------------------------

def run(main, argv: list[str]) -> tuple[int, str, str]:
    """`main(argv)` in-process: exit code, stdout, stderr; an exception fails with its traceback."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    except Exception:
        pytest.fail(f"traceback for {argv}:\n{traceback.format_exc()}")
    return code, out.getvalue(), err.getvalue()


def assert_refused(code: int, out: str, err: str, file: str, expect: str) -> None:
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err  # exactly one line
    assert err.startswith(f"error: {file}: "), err
    assert expect in err and "Traceback" not in err, err
    assert out == ""


def refused_train(content: bytes | None, expect: str) -> None:
    """Write `content` as a run config (None: give a directory) and check the trainer refuses it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.yaml"
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        code, out, err = run(train.main, [str(path)])
        assert_refused(code, out, err, str(path), expect)
        assert [p.name for p in Path(tmp).iterdir()] == ["run.yaml"]  # nothing written beside it


def launch_started(*args, **kwargs):
    raise AssertionError("launch accepted a bad search space and was about to start Ray")


def refused_launch(content: bytes | None, expect: str) -> None:
    """Write `content` as a search space (None: give a directory) and check launch refuses it."""
    with tempfile.TemporaryDirectory() as tmp:
        path, out_dir = Path(tmp) / "space.yaml", Path(tmp) / "out"
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        with mock.patch.object(launch, "_run", launch_started):
            code, out, err = run(launch.main, [str(path), "--out", str(out_dir)])
        assert_refused(code, out, err, str(path), expect)
        assert not out_dir.exists()
        assert [p.name for p in Path(tmp).iterdir()] == ["space.yaml"]


# --- The trainer ---------------------------------------------------------------------

RUN_SECTIONS = {"": {"task", "model", "train"}, "task": {"name", *(f.name for f in dataclasses.fields(teacher.Config))},
                "model": {f.name for f in dataclasses.fields(ModelConfig)},
                "train": {f.name for f in dataclasses.fields(TrainConfig)},
                "model.primary": {"width", "depth"}}


def test_the_base_run_config_trains(tmp_path):
    """The fuzz breaks this config one way at a time: it must be valid to start with."""
    code, _, err = run(train.main, [written(RUN, tmp_path)])
    assert code == 0, err


# The image tasks' own keys, broken in a config that uses the task (on digits: nothing to download).
IMAGE_TASKS = [bad_leaf(assign(RUN, "task", {"name": name}), leaves(registry()[name].Config, "task."))
               for name in ("rotation", "pixels")]


@FUZZ
@given(bad_files(RUN, st.one_of(bad_leaf(RUN, RUN_LEAVES), *IMAGE_TASKS), RUN_SECTIONS,
                 ["task", "model", "train", "model.primary"], ["task", "task.name"]))
def test_train_refuses_a_broken_config_in_one_line(case):
    content, expect = case
    refused_train(content, expect)


def test_train_refuses_a_directory_and_an_unknown_task():
    refused_train(None, "is a directory")
    refused_train(yaml.safe_dump({"task": {"name": "nope"}}).encode(), "task.name: unknown task")
    assert "nope" not in registry()


# --- The sweep launcher ----------------------------------------------------------------

# Under a family: fixed model and train keys, and ranges over them.
FAMILY_LEAVES = [(k, tp, m) for k, tp, m in RUN_LEAVES if k.split(".")[0] in ("model", "train")
                 and k not in ("model.family",)]


@st.composite
def bad_family(draw) -> tuple[dict, str]:
    """A family section broken one way: its name, its shape, a fixed value, or a range."""
    how = draw(st.sampled_from(["name", "body", "key", "fixed", "range", "choices"]))
    if how == "name":
        name = draw(st.text(min_size=1, max_size=8).filter(lambda n: n not in FAMILIES))
        return assign(SPACE, "families", {name: {}}), "families"
    if how == "body":
        return assign(SPACE, "families.hyper", draw(st.one_of(st.integers(), st.text(max_size=5),
                                                                st.lists(st.integers())))), "families.hyper"
    if how == "key":
        key = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in MODEL_KEYS | {"train"} and "." not in k))
        return assign(SPACE, f"families.hyper.{key}", 1), "families.hyper."
    key, tp, meta = draw(st.sampled_from(FAMILY_LEAVES))
    named = key.removeprefix("model.")  # as in families.hyper.primary.width (or model.primary.width)
    where = f"families.hyper.{named}"
    value = draw(broken(tp, meta, key.rsplit(".", 1)[-1]))
    if how == "fixed":
        return assign(SPACE, where, value), named
    if how == "choices":
        return assign(SPACE, where, {"choices": draw(st.sampled_from([[], [value]]))}), named
    # A range with one end broken: not a number, not finite, or out of the key's bounds.
    end = draw(st.sampled_from(["low", "high"]))
    good = {"low": 1, "high": 2} if tp in (int, int | None) else {"low": 0.001, "high": 0.01}
    return assign(SPACE, where, {**good, end: value}), named


@st.composite
def bad_variants(draw) -> tuple[dict, str]:
    """`variants` over a real run-config key, with a value of it broken or no list of values."""
    key, tp, meta = draw(st.sampled_from(RUN_LEAVES))
    values = draw(st.one_of(st.just([]), st.integers(), st.lists(broken(tp, meta, key), min_size=1, max_size=2)))
    return assign(SPACE, "variants", {key: values}), f"variants.{key}"


SPACE_SECTIONS = {"": {f.name for f in dataclasses.fields(_Top)},
                  "objective": {f.name for f in dataclasses.fields(Objective)},
                  "sampler": {f.name for f in dataclasses.fields(Sampler)},
                  "budget": {f.name for f in dataclasses.fields(Budget)},
                  "resources": {f.name for f in dataclasses.fields(Resources)}}


def test_the_base_search_space_would_launch(tmp_path):
    """The fuzz breaks this space one way at a time: it must be valid to start with."""
    with mock.patch.object(launch, "_run", return_value=0) as started:
        code, _, err = run(launch.main, [written(SPACE, tmp_path), "--out", str(tmp_path / "out")])
    assert code == 0 and started.called, err


@FUZZ
@given(bad_files(SPACE, st.one_of(bad_leaf(SPACE, SPACE_LEAVES), bad_leaf(SPACE, FAMILY_LEAVES), bad_family(),
                                  bad_variants()),
                 SPACE_SECTIONS, ["task", "families", "objective", "budget", "model", "train"],
                 ["experiment", "task", "families"]))
def test_launch_refuses_a_broken_search_space_in_one_line(case):
    content, expect = case
    refused_launch(content, expect)


def test_launch_refuses_a_directory_and_names_outside_letters_digits_dash_underscore():
    refused_launch(None, "is a directory")
    refused_launch(yaml.safe_dump(assign(SPACE, "experiment", "a b")).encode(), "experiment")


# --- What the fuzz found in search_space.py (each was a traceback or a launch that started) ---

def family(section: dict) -> dict:
    return assign(SPACE, "families", {"hyper": section})


def found(name: str, space: dict, expect: str, reason: str):
    """A case the fuzz found in search_space.py; `reason` says what it did before it was fixed."""
    return pytest.param(space, expect, id=name)


FOUND = [
    found("variant key not a string", assign(SPACE, "variants", {1: [2]}), "variants",
          "_validate: AttributeError: 'int' object has no attribute 'split'"),
    found("variant path through a value", assign(SPACE, "variants", {"task.name.x": [1]}), "variants.task.name.x",
          "_assign: TypeError: 'str' object does not support item assignment"),
    found("float range end beyond floats", family({"train": {"lr": {"low": 0.001, "high": 10**400}}}),
          "families.hyper.train.lr", "_param: OverflowError: int too large to convert to float"),
    found("grid of 10^12 points", assign(family({"primary": {"width": {"low": 1, "high": 10**12}}}), "sampler",
                                         {"name": "grid"}),
          "", "Param.grid: MemoryError (from SweepSpec.trials, called by launch.plan)"),
    found("range step NaN", family({"train": {"lr": {"low": 0.001, "high": 0.1, "step": math.nan}}}), "step",
          "_param accepts a step of NaN or infinity, and launch goes on to start Ray"),
    found("empty mapping as a value", family({"primary": {"width": {}}}), "families.hyper.primary.width",
          "_collect reads {} as no value: the width silently takes its default, and launch starts"),
    found("budget.epochs hides train.epochs", assign(assign(SPACE, "budget.epochs", 1), "train.epochs", "ten"),
          "train.epochs", "_validate: budget.epochs replaces train.epochs before it is validated, and launch starts"),
]


@pytest.mark.parametrize("space,expect", FOUND)
def test_launch_refuses_what_the_fuzz_found(space, expect):
    refused_launch(yaml.safe_dump(space).encode(), expect)


# --- Space files mutated at random, and the environment: accepted or refused, never a traceback ---

KNOWN_KEYS = sorted({key for key, _, _ in SPACE_LEAVES} | {f"families.hyper.{k.removeprefix('model.')}"
                                                            for k, _, _ in FAMILY_LEAVES}
                    | {f"task.{f.name}" for f in dataclasses.fields(teacher.Config)}
                    | {"experiment", "task.name", "variants", "families", "families.embedding",
                       "families.standard.primary.width", "model.activation", "train.lr"})
# Small values only: an accepted space builds its task, and a task of 10^9 instances would take a while.
YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.floats(-2, 2), st.sampled_from([math.nan, math.inf]),
              st.text(max_size=6), st.sampled_from(["hyper", "tanh", "grid", "pareto", "constrained", "teacher"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["low", "high", "step", "log", "choices", "width",
                                                             "depth", "x"]), inner, max_size=3)),
    max_leaves=6)


@st.composite
def mutated_space(draw) -> dict:
    """The valid space with one to three keys set to arbitrary YAML values or removed."""
    data = SPACE
    for _ in range(draw(st.integers(1, 3))):
        unknown = st.text(min_size=1, max_size=6).filter(lambda k: "." not in k)
        key = draw(st.one_of(st.sampled_from(KNOWN_KEYS), unknown))
        if key in data and draw(st.booleans()):
            data = without(data, key)
        else:
            data = assign(data, key, draw(YAML_VALUES))
    return data


def launched_or_refused(env: dict[str, str], content: bytes | None = None, names: str = "") -> None:
    """Run launch in-process with `env` on the space `content` (default: the valid one): it either accepts
    (Ray is not started: `_run` answers 0) or refuses in one line starting with `names`, exit 2; neither
    writes anything."""
    with tempfile.TemporaryDirectory() as tmp:
        path, out_dir = Path(tmp) / "space.yaml", Path(tmp) / "out"
        path.write_bytes(content if content is not None else yaml.safe_dump(SPACE).encode())
        with mock.patch.object(launch, "_run", return_value=0) as started, mock.patch.dict(os.environ, env):
            code, out, err = run(launch.main, [str(path), "--out", str(out_dir)])
        if code == 0:
            assert started.called and err == "", err
        else:
            assert code == 2 and not started.called, (code, err)
            assert err.count("\n") == 1 and err.startswith(f"error: {names.format(space=path)}"), err
            assert "Traceback" not in err, err
        assert [p.name for p in Path(tmp).iterdir()] == ["space.yaml"]  # nothing written, accepted or not


@FUZZ
@given(mutated_space())
def test_launch_accepts_or_refuses_a_mutated_search_space_in_one_line(data):
    launched_or_refused({}, yaml.safe_dump(data, allow_unicode=True).encode(), names="{space}: ")


ENV_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@FUZZ
@given(pending=st.one_of(ENV_TEXT, st.integers(-2, 10**20).map(str),
                         st.sampled_from(["\u00b2", "\u0661\u0662", " 3 ", "+4", "0x10"])),
       storage=st.one_of(ENV_TEXT, st.sampled_from(["", "sqlite://", "sqlite:///", "sqlite:////nonexistent/x.db",
                                                     "postgresql://u:p@localhost:1/x", "mysql://x", "bogus://"])))
# What it found: int() refuses digits str.isdigit() passes, a URL's newline split its line in two, and an
# in-memory SQLite storage lost the studies a launch had just created (each a traceback or a second line).
@example(pending="\u00b2", storage="")
@example(pending="0\x1f", storage="")
@example(pending="1", storage="\n")
@example(pending="1", storage="sqlite://")
def test_launch_accepts_or_refuses_its_environment_in_one_line(pending, storage):
    launched_or_refused({"TUNE_MAX_PENDING_TRIALS_PG": pending, "HYPERSWEEP_STORAGE": storage})
