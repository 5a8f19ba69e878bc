"""What a sweep refuses to do, and what it keeps, when the user makes a mistake or stops it.

Each test is a case where an earlier version lost or mixed trials silently. Refusals are
checked in-process (`launch.main`), before Ray starts; sweeps join the test session's Ray.
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from hypersweep import launch as launcher
from hypersweep.results import CorruptResults, load_trials
from hypersweep.search_space import load

SPACE = {
    "experiment": "safe",
    "task": {"name": "teacher", "dim_x": 2, "dim_i": 4, "train_instances": 200, "points": 16},
    "model": {"activation": "tanh"},
    "train": {"batch_size": 32},
    "budget": {"trials": 2, "epochs": 2, "max_failures": 0},
    "families": {"hyper": {"primary": {"width": {"low": 1, "high": 8}}}},
}


def space_file(path: Path, **changes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**SPACE, **changes}, sort_keys=False))
    return str(path)


def launch(address, *args, env=None, **popen):
    cmd = [sys.executable, "-m", "hypersweep.launch", *args, "--address", address]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}, **popen)


def refused(capsys, *args) -> str:
    """Run launch in-process; assert it refused in one line, exit 2; return the line."""
    code = launcher.main(list(args))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def snapshot(root: Path) -> dict:
    """Every file and when it last changed (SQLite's own -wal/-shm side files aside)."""
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


@pytest.fixture(scope="module")
def finished(ray_address, tmp_path_factory):
    """A finished two-trial sweep; tests copy it before they touch it."""
    base = tmp_path_factory.mktemp("finished")
    proc = launch(ray_address, space_file(base / "space.yaml"), "--out", str(base / "out"))
    assert proc.returncode == 0, proc.stderr
    return base / "out"


@pytest.fixture
def sweep(finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    db = out / "optuna.db"  # the copy's manifest and database point to the copy
    assert db.exists()
    return out


def test_a_shared_storage_never_mixes_two_sweeps(ray_address, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = launch(ray_address, space_file(tmp_path / "a.yaml"), "--out", str(tmp_path / "a"), "--storage", storage)
    assert first.returncode == 0, first.stderr
    # The same experiment again into a new --out, with other settings: its study name is taken.
    other = space_file(tmp_path / "b.yaml", task={**SPACE["task"], "dim_i": 8})
    err = refused(capsys, other, "--out", str(tmp_path / "b"), "--storage", storage)
    assert "already holds study 'safe-hyper' of another sweep" in err
    assert not (tmp_path / "b").exists()
    assert len(optuna.load_study(study_name="safe-hyper", storage=storage).trials) == 2


def everything(root: Path) -> set[Path]:
    """Every file and directory under `root`."""
    return set(root.rglob("*"))


def test_a_refusal_after_ray_started_removes_what_the_launch_created_and_nothing_else(ray_address, tmp_path, capsys,
                                                                                     monkeypatch):
    # In-process, launch finds this session's Ray started, as its own embedded one: a GPU no node has is refused
    # at once. By then it has taken --out's lock and created its studies, the storage's file with them.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    gpu = space_file(tmp_path / "gpu.yaml", resources={"cpus": 1, "gpus": 1})
    (tmp_path / "mine").mkdir()  # an empty --out the user made
    before = everything(tmp_path)
    for out, storage in [(tmp_path / "mine", []), (tmp_path / "new" / "out", []),
                         (tmp_path / "new" / "out", ["--storage", f"sqlite:///{tmp_path / 'new.db'}"])]:
        err = refused(capsys, gpu, "--out", str(out), *storage)
        assert "a trial asks for 1 CPU, 1 GPU" in err
        assert everything(tmp_path) == before
    # A storage that holds another sweep's studies keeps them, and only them.
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="someone-else", storage=shared)
    refused(capsys, gpu, "--out", str(tmp_path / "new"), "--storage", shared)
    assert optuna.get_all_study_names(shared) == ["someone-else"] and not (tmp_path / "new").exists()


def test_the_loser_of_a_race_for_one_storage_leaves_its_out_as_it_was(ray_address, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    loser_out = tmp_path / "b"
    loser_out.mkdir()  # made empty beforehand: it stays, empty
    args = launcher.parse_args([space_file(tmp_path / "b.yaml"), "--out", str(loser_out), "--storage", storage,
                                "--address", ray_address])
    loser = launcher.plan(args, tmp_path)  # its checks pass: no study of that name yet
    winner = launch(ray_address, space_file(tmp_path / "a.yaml"), "--out", str(tmp_path / "a"), "--storage", storage)
    assert winner.returncode == 0, winner.stderr
    assert launcher.start(loser, args) == 2
    err = capsys.readouterr().err
    assert "already holds study 'safe-hyper' of another sweep" in err and err.count("\n") == 1, err
    assert list(loser_out.iterdir()) == []
    # So a relaunch there is not called "already holds a sweep", and the winner's sweep is whole.
    assert len(optuna.load_study(study_name="safe-hyper", storage=storage).trials) == 2


def test_resume_reuses_the_storage_and_budget_the_sweep_started_with(ray_address, tmp_path, capsys):
    out, storage = tmp_path / "out", f"sqlite:///{tmp_path / 'elsewhere.db'}"
    killed = launch(ray_address, space_file(tmp_path / "s.yaml"), "--out", str(out), "--storage", storage,
                    "--num-samples", "3", env={"HYPERSWEEP_FAILPOINT": "after_tell@0"})
    assert killed.returncode == -signal.SIGKILL
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["storage"] == storage and manifest["budgets"] == {"safe-hyper": 3}
    # Its database moved away: refused, not resumed into a new empty one.
    (tmp_path / "elsewhere.db").rename(tmp_path / "moved.db")
    assert "elsewhere.db: the sweep in" in refused(capsys, "--out", str(out), "--resume")
    assert not (tmp_path / "elsewhere.db").exists()
    (tmp_path / "moved.db").rename(tmp_path / "elsewhere.db")
    resumed = launch(ray_address, "--out", str(out), "--resume")  # neither --storage nor --num-samples again
    assert resumed.returncode == 0, resumed.stderr
    assert len(load_trials(str(out))) == 3 and not (out / "optuna.db").exists()


def test_a_password_is_never_saved_nor_printed():
    url = "postgresql://alice:s3cret@db.example:5432/optuna"
    assert "s3cret" not in launcher.redact(url) and launcher.redact(url).startswith("postgresql://alice:")


def test_resume_refuses_what_it_cannot_trust_and_changes_nothing(sweep, tmp_path, capsys):
    before = snapshot(sweep)
    cases = [
        (space_file(tmp_path / "wider.yaml", families={"hyper": {"primary": {"width": {"low": 1, "high": 64}}}}),
         "studies.safe-hyper.params.model.primary.width.high differs from the space the sweep in"),
        (space_file(tmp_path / "constrained.yaml", objective={"type": "constrained", "target": 0.1}),
         "objective.target differs from the space the sweep in"),
        (space_file(tmp_path / "family.yaml", families={"standard": {"primary": {"width": 4}}}),
         "studies.safe-hyper differs from the space the sweep in"),
    ]
    for space, message in cases:
        assert message in refused(capsys, space, "--out", str(sweep), "--resume")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert "keeps its studies in" in refused(capsys, "--out", str(sweep), "--resume", "--storage", other)
    assert snapshot(sweep) == before

    # A sweep made before sweep.json kept its space: the studies' fingerprints and names still refuse.
    manifest = json.loads((sweep / "sweep.json").read_text())
    (sweep / "sweep.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "space"}))
    assert "made for another search space or objective" in refused(capsys, cases[0][0], "--out", str(sweep),
                                                                   "--resume")
    assert "'safe-standard' is not part of the sweep" in refused(capsys, cases[2][0], "--out", str(sweep), "--resume")

    (sweep / "optuna.db").write_bytes(b"not a database")
    assert "cannot open it" in refused(capsys, "--out", str(sweep), "--resume")
    (sweep / "optuna.db").unlink()
    assert "optuna.db is missing" in refused(capsys, "--out", str(sweep), "--resume")
    (sweep / "sweep.json").write_text("{half a manifest")
    assert "sweep.json: unreadable" in refused(capsys, "--out", str(sweep), "--resume")


def test_a_corrupt_trial_file_is_named_and_rebuilt_from_the_study(ray_address, sweep):
    victim = sorted(sweep.glob("trials/family=hyper/*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(CorruptResults, match=victim.name):
        load_trials(str(sweep))
    resumed = launch(ray_address, "--out", str(sweep), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"removed {victim}" in resumed.stdout and "row rebuilt from the study" in resumed.stdout
    assert sorted(load_trials(str(sweep))["trial"]) == [0, 1]


def test_variant_values_cannot_name_files_outside_out(tmp_path):
    spec = load(space_file(tmp_path / "s.yaml", variants={"task.seed": [0]},
                           families={"hyper": {"primary": {"width": 2}}}), build_tasks=False)
    assert spec.studies[0].study == "safe-hyper-seed=0"
    evil = {**SPACE, "variants": {"model.activation": ["tanh", "relu"]}}
    evil["families"] = {"hyper": {"primary": {"width": 2}}}
    spec = load(space_file(tmp_path / "e.yaml", **evil), build_tasks=False)
    assert [s.study for s in spec.studies] == ["safe-hyper-activation=tanh", "safe-hyper-activation=relu"]
    from hypersweep.search_space import variant_label
    label = variant_label({"task.data_dir": "x/../../../elsewhere"})
    assert "/" not in label and label == "data_dir=x_.._.._.._elsewhere"


def test_out_paths_that_cannot_work_are_refused_before_anything_is_created(tmp_path, capsys):
    space = space_file(tmp_path / "s.yaml")
    (tmp_path / "file").write_text("x")
    assert "is a file" in refused(capsys, space, "--out", str(tmp_path / "file" / "out"))
    long_name = space_file(tmp_path / "long.yaml", experiment="x" * 250)
    assert "too long" in refused(capsys, long_name, "--out", str(tmp_path / "long"))
    assert not (tmp_path / "long").exists()
    readonly = tmp_path / "ro"
    readonly.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)]).returncode != 0:
        pytest.skip("cannot mount a read-only file system here")
    try:
        assert "read-only file system" in refused(capsys, space, "--out", str(readonly / "out"))
    finally:
        subprocess.run(["umount", str(readonly)])


def test_a_full_disk_ends_in_one_line_and_resume_keeps_the_trained_trial(ray_address, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a small file system here")
    try:
        out, storage = disk / "out", f"sqlite:///{tmp_path / 'optuna.db'}"
        filler = disk / "filler"
        # What the filler leaves holds the sweep's first files and about one trial's two; once it is gone the
        # resume has room to spare (a tight fit failed under CI's load, when Tune's own state files grew).
        filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - 60_000))
        proc = launch(ray_address, space_file(tmp_path / "s.yaml"), "--out", str(out), "--storage", storage,
                      "--num-samples", "3", "--max-concurrent", "1")
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert "No space left on device" in proc.stderr and "--resume" in proc.stderr
        filler.unlink()
        resumed = launch(ray_address, "--out", str(out), "--resume")
        assert resumed.returncode == 0, resumed.stderr
        trials = load_trials(str(out))
        assert len(trials) == 3 and set(trials["status"]) == {"ok"}
        study = optuna.load_study(study_name="safe-hyper", storage=storage)
        # The trial being written when the disk filled had been told: not interrupted, not queued again.
        assert not [t for t in study.trials if t.user_attrs.get("status") == "interrupted"]
        assert not [t for t in study.trials if "retry_of" in t.user_attrs]
    finally:
        subprocess.run(["umount", str(disk)])


def start_sweep(address, space, out):
    """A sweep whose SIGINT disposition is the default, as in a terminal (background jobs ignore it)."""
    return subprocess.Popen([sys.executable, "-m", "hypersweep.launch", space, "--out", str(out),
                             "--address", address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_rows(out: Path, n: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while len(list(out.glob("trials/family=*/*.parquet"))) < n:
        assert time.time() < deadline
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_ctrl_c_sigterm_or_a_hang_up_stops_the_whole_sweep_and_resume_finishes_it(ray_address, tmp_path, signum,
                                                                                   code):
    space = space_file(tmp_path / "s.yaml", budget={"trials": 4, "epochs": 40, "max_failures": 0, "pack": 2},
                       families={**SPACE["families"], "standard": {"primary": {"width": {"low": 2, "high": 32}}}})
    out = tmp_path / "out"
    proc = start_sweep(ray_address, space, out)
    wait_for_rows(out, 1)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    # The sweep joined a running Ray (the tests'), so the command to paste names it.
    hint = f"interrupted: continue with  python -m hypersweep.launch --resume --out {out} --address {ray_address}"
    if signum == signal.SIGHUP:  # the terminal is gone: what the driver says from then on is in its log
        assert "interrupted" not in stderr
        hint = hint.replace("interrupted:", "interrupted (hang-up):")
    else:
        assert stderr.strip() == hint
    assert (out / "launch.log").read_text().splitlines()[-1] == hint
    assert "Smallest architecture" not in stdout  # no answer from a truncated sweep
    assert len(load_trials(str(out))) < 8
    assert not list(out.glob("optuna.db-*")) and not (out / ".lock").exists()  # the database closed, the lock freed
    if signum != signal.SIGINT:
        return  # what is kept is the same as after Ctrl-C: resumed once, below
    resumed = launch(ray_address, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    trials = load_trials(str(out))
    assert len(trials) == 8 and trials.groupby("study")["trial"].apply(lambda t: t.is_unique).all()


@pytest.mark.slow
def test_a_second_ctrl_c_ends_at_once(ray_address, tmp_path):
    space = space_file(tmp_path / "s.yaml", budget={"trials": 4, "epochs": 400, "max_failures": 0})
    out = tmp_path / "out"
    proc = start_sweep(ray_address, space, out)
    deadline = time.time() + 300
    while not (out / "sweep.json").exists():
        assert time.time() < deadline
        time.sleep(0.2)
    time.sleep(5)  # trials are training
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    started = time.time()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert time.time() - started < 30


def catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler of its own for `signum` (the kernel's SigCgt mask)."""
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def child_names(pid: int) -> list[str]:
    with contextlib.suppress(FileNotFoundError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [Path(f"/proc/{c}/comm").read_text().strip() for c in children if Path(f"/proc/{c}").exists()]
    return []


def stop_with(tmp_path, ready, signum=signal.SIGTERM) -> None:
    """Start a launch with an embedded Ray, send it `signum` once `ready(pid)`, and check that it stopped
    within seconds: exit 128 + signum, one line, no --out left."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "hypersweep.launch", space_file(tmp_path / "s.yaml"), "--out",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    deadline = time.time() + 120
    while not ready(proc.pid):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signum)
    sent = time.time()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    assert stderr.strip() == "interrupted before the sweep started: nothing to resume"
    assert time.time() - sent < 15 and not out.exists()


def test_sigterm_while_python_imports_ends_in_one_line(tmp_path):
    # The handler is installed before the heavy imports (pandas, torch), which then take most of a second.
    stop_with(tmp_path, lambda pid: catches(pid, signal.SIGTERM))


@pytest.mark.slow  # starts a Ray of its own
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_while_ray_starts_ends_in_one_line(tmp_path, signum):
    # ray.init puts in a SIGTERM handler of its own while it runs (it exited 15, saying nothing); Ray's GCS is
    # the first process it starts.
    stop_with(tmp_path, lambda pid: "gcs_server" in child_names(pid), signum)


def test_an_exhausted_space_ends_its_study_instead_of_training_points_again(ray_address, tmp_path):
    out = tmp_path / "out"
    space = space_file(tmp_path / "s.yaml", budget={"trials": 20, "epochs": 2, "max_failures": 0, "pack": 2},
                       families={"hyper": {"primary": {"width": {"low": 1, "high": 3}}}})  # 3 points
    ended = "[safe-hyper] search space exhausted: 3 distinct points trained; the study ends at 3 of its 20 trials"
    for args in ([space, "--out", str(out)], ["--out", str(out), "--resume"]):
        proc = launch(ray_address, *args)
        assert proc.returncode == 0 and ended in proc.stdout.splitlines(), proc.stdout + proc.stderr
        progress = [line for line in proc.stdout.splitlines() if "| all " in line]
        assert all("all 4/" not in line and "/20" not in line for line in progress[1:]), progress  # the ended budget
        trials = load_trials(str(out))
        assert sorted(trials["config.model.primary.width"]) == [1, 2, 3]
        assert len(optuna.load_study(study_name="safe-hyper", storage=f"sqlite:///{out / 'optuna.db'}").trials) == 3


def test_a_sweep_whose_trials_all_failed_exits_non_zero(ray_address, tmp_path):
    space = space_file(tmp_path / "s.yaml", families={"hyper": {"primary": {"width": 2},
                                                                "train": {"device": "cuda:7"}}})  # no GPU here
    proc = launch(ray_address, space, "--out", str(tmp_path / "out"), "--num-samples", "1")
    assert proc.returncode == 1 and "every trial failed" in proc.stderr
    assert set(load_trials(str(tmp_path / "out"))["status"]) == {"failed"}


def test_the_storage_url_is_in_no_file_of_tunes(ray_address, tmp_path):
    # A PostgreSQL URL's password would sit where the URL does: Tune pickles the Tuner into OUT/ray.
    storage = f"sqlite:///{tmp_path / 'secret-db-name.db'}"
    proc = launch(ray_address, space_file(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--storage", storage,
                  "--num-samples", "1")
    assert proc.returncode == 0, proc.stderr
    files = [p for p in (tmp_path / "out" / "ray").rglob("*") if p.is_file()]
    assert files and not [p for p in files if b"secret-db-name" in p.read_bytes()]
