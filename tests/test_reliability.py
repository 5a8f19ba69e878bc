"""Kill the driver, a trial's worker or a whole node: the sweep resumes and loses or
duplicates nothing. These tests kill real processes on a real local Ray."""
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest
import ray
import yaml
from ray.cluster_utils import Cluster

from hypersweep.results import load_epochs, load_trials
from hypersweep.search_space import load
from hypersweep.sweep import run_sweep

pytestmark = pytest.mark.slow

TRIALS = 4
PACK = 2  # two packs of two trials: rows land a pack at a time
SPACE = {
    "experiment": "rel",
    "task": {"name": "teacher", "dim_x": 2, "dim_i": 4, "train_instances": 200, "points": 16},
    "model": {"activation": "tanh"},
    "train": {"batch_size": 32},
    "budget": {"trials": TRIALS, "epochs": 3, "max_concurrent": 1, "max_failures": 1, "pack": PACK},
    "families": {"hyper": {"primary": {"width": {"low": 1, "high": 8}}}},
}


def space_file(tmp_path, **changes) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**SPACE, **changes}, sort_keys=False))
    return str(path)


def launch(address, *args, env=None, wait=True):
    cmd = [sys.executable, "-m", "hypersweep.launch", *args, "--address", address]
    env = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def wait_for(predicate, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError


def rows(out: Path) -> list[Path]:
    return list(out.glob("trials/family=*/*.parquet"))


def running_trials(out: Path) -> int:
    """Trials handed to a Tune trial and not finished (asked trials get their Tune id when they start)."""
    try:
        study = optuna.load_study(study_name="rel-hyper", storage=f"sqlite:///{out / 'optuna.db'}")
    except (KeyError, Exception):
        return 0
    return sum(t.state == optuna.trial.TrialState.RUNNING and "ray_trial_id" in t.user_attrs for t in study.trials)


def assert_each_trial_exactly_once(out: Path, trials: int = TRIALS) -> set[int]:
    """Check the rows against the study; return the trials that were running when the driver died."""
    rows_ = load_trials(str(out))
    assert len(rows_) == trials and rows_["trial"].is_unique
    study = optuna.load_study(study_name="rel-hyper", storage=f"sqlite:///{out / 'optuna.db'}")
    complete = {t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert complete == set(rows_[rows_["status"] == "ok"]["trial"])
    interrupted = {t.number for t in study.trials if t.user_attrs.get("status") == "interrupted"}
    assert not interrupted & set(rows_["trial"])  # an interrupted trial has no row: its retry has one
    retried = {t.user_attrs["retry_of"]: t.number for t in study.trials if "retry_of" in t.user_attrs}
    assert set(retried) == interrupted and set(retried.values()) <= set(rows_["trial"])
    assert not list(out.rglob(".tmp-*"))  # no half-written file survives
    assert set(load_epochs(str(out))["trial"]) <= set(rows_["trial"])
    return interrupted


KILLS = {
    "during the first trials": dict(when=lambda out: running_trials(out) >= 1),
    "after Optuna was told, before the row was written": dict(env={"HYPERSWEEP_FAILPOINT": "after_tell@0"}),
    "while a result file is being written": dict(env={"HYPERSWEEP_FAILPOINT": "before_rename@0"}),
    # The last pack is training: its rows cannot land between this check and the kill (a few ms).
    "near the end": dict(when=lambda out: len(rows(out)) >= TRIALS - PACK and running_trials(out) >= 1),
}


@pytest.mark.parametrize("kill", KILLS.values(), ids=KILLS.keys())
def test_a_killed_driver_resumes_and_records_each_trial_exactly_once(ray_address, tmp_path, kill):
    out = tmp_path / "out"
    # A kill at a moment needs a pack that trains long enough to be seen training.
    space = space_file(tmp_path, budget={**SPACE["budget"], "epochs": 3 if "env" in kill else 30})
    if "env" in kill:  # the driver SIGKILLs itself at that exact point
        proc = launch(ray_address, space, "--out", str(out), env=kill["env"])
        assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    else:
        proc = launch(ray_address, space, "--out", str(out), wait=False)
        wait_for(lambda: kill["when"](out))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(rows(out)) < TRIALS

    resuming = pd.Timestamp.now(tz="UTC")
    resumed = launch(ray_address, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    interrupted = assert_each_trial_exactly_once(out)
    if kill is KILLS["after Optuna was told, before the row was written"]:  # trial 0's row came from the study
        assert "trial #0: row rebuilt from the study" in resumed.stdout
        trials = load_trials(str(out)).set_index("trial")
        assert trials.loc[0, "finished_at"] < resuming  # when it trained, not when its row was rebuilt
        assert trials.loc[0, "git_commit"] == trials.drop(0)["git_commit"].iloc[0]  # the code that trained it
    if "when" in kill:  # killed while a pack was training: each of its trials was queued again
        assert len(interrupted) >= PACK
        assert all(f"trial #{n} was interrupted: queued again" in resumed.stdout for n in interrupted)


def test_resuming_a_finished_sweep_runs_nothing_and_changes_nothing(ray_address, tmp_path):
    out = tmp_path / "out"
    assert launch(ray_address, space_file(tmp_path), "--out", str(out)).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in rows(out)}
    again = launch(ray_address, "--out", str(out), "--resume")
    assert again.returncode == 0 and f"all {TRIALS} trials done" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in rows(out)} == before


def trial_workers(since: float) -> list[psutil.Process]:
    """Trial processes started after `since` by this session's Ray (below this process): not an idle
    actor left by an earlier test, nor one of another Ray."""
    workers = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if process.cmdline()[:1] == ["ray::ImplicitFunc.train"] and process.create_time() >= since:
                workers.append(process)
    return workers


def test_a_killed_trial_worker_is_retried_and_the_sweep_completes(ray_address, tmp_path):
    out = tmp_path / "out"
    # One pack of the three trials. Early stopping judges them at epochs 1, 4 and 16; one architecture for all three
    # trials makes them tie at every rung, so none is stopped and each trains all 40 epochs (the three points
    # differ only in max_params, which no model here comes near). 2,000 instances make a trial last
    # a few seconds, so the kill lands in training.
    space = space_file(tmp_path, budget={"trials": 3, "epochs": 40, "max_concurrent": 1, "max_failures": 1,
                                         "early_stopping": True, "grace_epochs": 1, "pack": 3},
                       task={**SPACE["task"], "train_instances": 2000},
                       families={"hyper": {"primary": {"width": 4},
                                           "train": {"max_params": {"choices": [100_000, 100_001, 100_002]}}}})
    start = time.time()
    proc = launch(ray_address, space, "--out", str(out), wait=False)
    wait_for(lambda: running_trials(out) >= 1 and trial_workers(start))
    time.sleep(1)  # let the trial get into training
    for worker in trial_workers(start):
        worker.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=300) == 0
    trials = load_trials(str(out))
    assert len(trials) == 3 and set(trials["status"]) == {"ok"}
    assert set(trials["pack_size"]) == {3} and set(trials["retries"]) == {1}  # the pack ran again, whole
    curves = load_epochs(str(out)).groupby("trial")["epoch"].agg(list)
    assert all(curve == list(range(0, 41)) for curve in curves)  # the retried trial's curve is whole (from epoch 0), once
    # Rows rebuilt from the study keep the restart too.
    for path in rows(out):
        path.unlink()
    resumed = launch(ray_address, "--out", str(out), "--resume")
    assert resumed.returncode == 0 and resumed.stdout.count("row rebuilt from the study") == 3, resumed.stdout
    assert set(load_trials(str(out))["retries"]) == {1}


def test_a_trial_that_keeps_failing_is_recorded_as_failed_and_the_sweep_completes(ray_address, tmp_path):
    families = {"hyper": {"primary": {"width": 4}, "train": {"device": {"choices": ["cpu", "cuda:7"]}}}}
    path = space_file(tmp_path, families=families, sampler={"name": "grid"},
                      budget={"epochs": 2, "max_failures": 2})
    spec, out = load(path), str(tmp_path / "out")
    run_sweep(spec, out, f"sqlite:///{tmp_path / 'o.db'}", "test-sweep", {spec.studies[0].study: 2},
              log=lambda line: None)
    trials = load_trials(out).set_index("config.train.device")
    assert trials.loc["cpu", "status"] == "ok" and trials.loc["cpu", "retries"] == 0
    failed = trials.loc["cuda:7"]
    assert failed["status"] == "failed" and failed["retries"] == 2
    assert "CUDA" in failed["error"] or "cuda" in failed["error"]


@pytest.fixture
def two_nodes():
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster, worker
    cluster.shutdown()


@pytest.mark.multinode
def test_losing_a_node_mid_sweep_reschedules_its_trials(two_nodes, tmp_path):
    cluster, worker = two_nodes
    out = tmp_path / "out"
    space = space_file(tmp_path, budget={"trials": 4, "epochs": 40, "max_concurrent": 2, "max_failures": 2,
                                         "pack": 2})  # a pack on each node
    proc = launch(cluster.address, space, "--out", str(out), wait=False)
    wait_for(lambda: running_trials(out) >= 2)
    time.sleep(2)
    cluster.remove_node(worker)
    assert proc.wait(timeout=400) == 0, proc.stdout.read()
    trials = load_trials(str(out))
    assert len(trials) == 4 and set(trials["status"]) == {"ok"}
    assert trials["retries"].sum() >= 2  # the pack on the lost node ran again elsewhere, both its trials


def test_a_driver_killed_with_several_studies_half_done_resumes_each_exactly_once(ray_address, tmp_path):
    out = tmp_path / "out"
    families = {"hyper": SPACE["families"]["hyper"], "standard": {"primary": {"width": {"low": 2, "high": 32}}}}
    # 30 epochs, not 3: the kill must land mid-sweep, not while the last rows are being merged
    space = space_file(tmp_path, families=families, budget={**SPACE["budget"], "max_concurrent": 2, "epochs": 30})
    proc = launch(ray_address, space, "--out", str(out), wait=False)
    wait_for(lambda: len(rows(out)) >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= len(rows(out)) < 2 * TRIALS
    resumed = launch(ray_address, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = load_trials(str(out))
    assert trials.groupby("study").size().to_dict() == {"rel-hyper": TRIALS, "rel-standard": TRIALS}
    for name, mine in trials.groupby("study"):
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'optuna.db'}")
        complete = {t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
        assert mine["trial"].is_unique and complete == set(mine["trial"])
