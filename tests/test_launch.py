"""The `python -m hypersweep.launch` command, run as a user runs it (joining the test Ray)."""
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from hypersweep.results import load_trials

SPACE = {
    "experiment": "cli",
    "task": {"name": "teacher", "dim_x": 2, "dim_i": 4, "train_instances": 200, "points": 16},
    "model": {"activation": "tanh"},
    "train": {"batch_size": 32},
    "objective": {"type": "pareto", "targets": [0.5, 0.2]},
    "budget": {"trials": 2, "epochs": 2, "max_failures": 0},
    "families": {"hyper": {"primary": {"width": {"low": 1, "high": 8}}},
                 "embedding": {"primary": {"width": {"low": 2, "high": 64}}, "embedding_dim": 4}},
}


def space_file(tmp_path, **changes):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**SPACE, **changes}, sort_keys=False))
    return str(path)


def launch(address, *args, wait=True):
    cmd = [sys.executable, "-m", "hypersweep.launch", *args, "--address", address]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_a_sweep_runs_every_family_and_ends_with_the_frontier(ray_address, tmp_path):
    out = tmp_path / "out"
    proc = launch(ray_address, space_file(tmp_path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Smallest architecture per error target" in proc.stdout
    assert "embedding/hyper" in proc.stdout
    assert "[hyper 2/2 | all" in proc.stdout and "[embedding 2/2 | all" in proc.stdout and "all 4/4" in proc.stdout
    trials = load_trials(str(out))
    assert len(trials) == 4 and (out / "optuna.db").exists() and (out / "space.yaml").exists()
    assert {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{out / 'optuna.db'}")} == \
        {"cli-hyper", "cli-embedding"}


def test_launch_py_runs_as_a_script_path_and_num_samples_overrides_the_budget(ray_address, tmp_path):
    # `ray submit CLUSTER.yaml hypersweep/launch.py -- ...` runs the file as a script.
    script = Path(__file__).resolve().parent.parent / "hypersweep" / "launch.py"
    space = space_file(tmp_path, families={"hyper": SPACE["families"]["hyper"]})
    proc = subprocess.run([sys.executable, str(script), space, "--out", str(tmp_path / "out"), "--num-samples", "3",
                           "--address", ray_address], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert len(load_trials(str(tmp_path / "out"))) == 3


@pytest.mark.parametrize("changes,message", [
    ({"families": {"hyper": {"primary": {"width": {"low": 0, "high": 8}}}}},
     "families.hyper.primary.width: low 0 must be >= 1"),
    ({"objective": {"type": "constrained", "target": 2}}, "objective.target: must be <= 1"),
    ({"sampler": {"name": "bayes"}}, "sampler.name: must be one of"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_on_disk(ray_address, tmp_path, changes, message):
    out = tmp_path / "never"
    proc = launch(ray_address, space_file(tmp_path, **changes), "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and "space.yaml" in proc.stderr
    assert not out.exists()


def test_a_key_given_twice_in_the_space_file_is_refused_not_silently_dropped(ray_address, tmp_path):
    text = Path(space_file(tmp_path)).read_text()
    (tmp_path / "twice.yaml").write_text(text + "budget: {trials: 1}\n")  # a second budget would win in PyYAML
    out = tmp_path / "never"
    proc = launch(ray_address, str(tmp_path / "twice.yaml"), "--out", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "twice.yaml: line" in proc.stderr and "duplicate key 'budget' (first on line" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("env,args,message", [
    ({"TUNE_MAX_PENDING_TRIALS_PG": "abc"}, [], "TUNE_MAX_PENDING_TRIALS_PG='abc': must be a whole number >= 1"),
    ({"TUNE_MAX_PENDING_TRIALS_PG": "0"}, [], "TUNE_MAX_PENDING_TRIALS_PG='0': must be a whole number >= 1"),
    ({"HYPERSWEEP_STORAGE": "garbage"}, [], "$HYPERSWEEP_STORAGE garbage: cannot open it"),
    ({}, ["--num-samples", "0"], "--num-samples must be >= 1 (usage: python -m hypersweep.launch"),
    ({}, ["--num-samples", str(10**30)], "--num-samples must be <= 1,000,000 (trials per study, as budget.trials)"),
])
def test_environment_inputs_and_flags_are_refused_in_one_line_before_anything_is_written(tmp_path, env, args,
                                                                                         message):
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, "-m", "hypersweep.launch", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not out.exists()


def test_a_resume_refuses_a_space_changed_in_meaning_but_not_one_merely_reformatted(ray_address, tmp_path):
    out = tmp_path / "out"
    families = {"hyper": {"primary": {"width": {"low": 1, "high": 8}},
                          "conditioner": {"width": {"low": 8, "high": 16}}},  # two searched keys, not in name order
                "embedding": SPACE["families"]["embedding"]}
    assert launch(ray_address, space_file(tmp_path, families=families), "--out", str(out)).returncode == 0
    saved = yaml.safe_load((out / "space.yaml").read_text())
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    changes = {"sampler.seed": {**saved, "sampler": {"name": "tpe", "seed": 7}},
               "studies.cli-embedding": {**saved, "families": {"hyper": families["hyper"]}},
               "budget.early_stopping": {**saved, "budget": {**saved["budget"], "early_stopping": True}},
               "resources.cpus": {**saved, "resources": {"cpus": 2}}}
    for where, edited in changes.items():
        (out / "space.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
        proc = launch(ray_address, "--out", str(out), "--resume")
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert f"space.yaml: {where} differs from the space the sweep in" in proc.stderr
    (out / "space.yaml").write_text(yaml.safe_dump(saved))  # sorted keys: the searched keys in another order
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "space.yaml"} == {
        p: t for p, t in before.items() if p.name != "space.yaml"}  # the refusals changed nothing
    # The same space re-saved with its keys sorted resumes, here with a larger budget.
    resumed = launch(ray_address, "--out", str(out), "--resume", "--num-samples", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert len(load_trials(str(out))) == 6


def test_a_storage_that_cannot_be_opened_is_refused_before_anything_runs(ray_address, tmp_path):
    out = tmp_path / "never"
    proc = launch(ray_address, space_file(tmp_path), "--out", str(out), "--storage", "postgresql://u:p@localhost:1/x")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--storage postgresql://u:***@localhost:1/x: cannot open it" in proc.stderr  # never the password
    assert not out.exists()


def test_refuses_to_mix_two_experiments_or_escape_the_out_dir(ray_address, tmp_path):
    space = space_file(tmp_path)
    unrelated = tmp_path / "thesis"
    unrelated.mkdir()
    (unrelated / "chapter1.tex").write_text("precious")
    for args, message in [
        (["--out", str(unrelated)], "is not empty"),
        (["--out", str(unrelated), "--resume"], "no sweep to resume"),
        (["--out", f"{tmp_path}/a/../b"], "'..'"),
        (["--out", str(tmp_path / "fresh"), "--resume"], "no sweep to resume"),
    ]:
        proc = launch(ray_address, space, *args)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
    assert [p.name for p in unrelated.iterdir()] == ["chapter1.tex"]


def test_a_uri_out_works_like_a_directory_with_its_own_storage(ray_address, tmp_path):
    out, storage = f"file://{tmp_path}/remote", f"sqlite:///{tmp_path / 'optuna.db'}"
    space = space_file(tmp_path, families={"hyper": SPACE["families"]["hyper"]})
    refused = launch(ray_address, space, "--out", out)
    assert refused.returncode == 2 and "--storage" in refused.stderr
    assert launch(ray_address, space, "--out", out, "--storage", storage).returncode == 0
    assert len(load_trials(out)) == 2
    resumed = launch(ray_address, "--out", out, "--storage", storage, "--resume")  # the space saved there
    assert resumed.returncode == 0 and "all 2 trials done" in resumed.stdout


@pytest.mark.slow  # starts a Ray of its own
def test_without_address_an_embedded_ray_trains_the_trials(tmp_path):
    # The Quick start's path: launch starts its own Ray (the session's Ray is left alone). Its workers
    # inherit launch's working directory at ray.init, which must still exist when they load torch.
    space = space_file(tmp_path, families={"hyper": SPACE["families"]["hyper"]})
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-m", "hypersweep.launch", space, "--out", str(tmp_path / "out"),
                           "--num-samples", "1"], capture_output=True, text=True, timeout=600, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert set(load_trials(str(tmp_path / "out"))["status"]) == {"ok"}
