"""The README's cluster path on two machines, for real: `ray up`, `ray submit`, stop, resume, `ray down`.

The machines are namespaces of this one (tests/two_nodes.py): a head and a worker with their own address,
sshd, home and /tmp/ray, and the user's laptop holding a checkout. As a Quick-start user has, the head
ran a local `ray.init()` first, so Ray >= 2.59 left a token in its ~/.ray/auth_token and the head's Ray
starts in token mode. `cluster/local.yaml` is changed only in the IPs, the user and the key.
"""
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from tests.two_nodes import REPO, TwoNodes, Unavailable, laptop_env

pytestmark = [pytest.mark.slow, pytest.mark.multinode]

OUT = "results/two_nodes"  # as the README gives it: relative to the head's home, where `ray submit` runs
TRIALS = 8


def cluster_file(text: str, nodes: TwoNodes) -> str:
    """cluster/local.yaml with the head's and worker's IPs, root and the laptop's key: nothing else."""
    text = re.sub(r"(?m)^(\s*head_ip:) \S+", rf"\1 {nodes.head.ip}", text)
    text = re.sub(r"(?m)^(\s*worker_ips:) \[[^\]]*\]", rf"\1 [{nodes.worker.ip}]", text)
    text = re.sub(r"(?m)^(\s*ssh_user:) \S+", r"\1 root", text)
    return re.sub(r"(?m)^(\s*ssh_private_key:) \S+", r"\1 ~/.ssh/id_ed25519", text)


def tiny_space() -> str:
    space = yaml.safe_load((REPO / "search_spaces" / "quickstart.yaml").read_text())
    space["experiment"] = "two_nodes"
    space["budget"].update(trials=TRIALS, epochs=40, pack=2)  # four packs of two: both nodes train
    space["families"] = {"hyper": space["families"]["hyper"]}
    return yaml.safe_dump(space, sort_keys=False)


def rows(nodes: TwoNodes) -> list[Path]:
    return list((nodes.head.home / OUT / "trials").glob("family=*/*.parquet"))


def wait(condition, what: str, timeout: float = 300, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return found


def drivers(nodes: TwoNodes) -> list:
    """The head's processes running hypersweep's launch (`python ~/launch.py`, `-m hypersweep.launch`)."""
    found = []
    for proc in nodes.processes(nodes.head):
        try:
            if "launch" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:  # ended while we looked
            continue
    return found


def test_two_machines_token_auth_submit_hang_up_kill_resume_and_down(tmp_path):
    try:
        nodes = TwoNodes(tmp_path)
        nodes.__enter__()
    except Unavailable as why:
        pytest.skip(f"two-node cluster: {why}")
    submitted = None
    try:
        # The Quick start on the head: a local ray.init() writes the token and turns token mode on.
        quick = nodes.ssh(nodes.head, "python -c 'import ray; ray.init(); ray.shutdown()'")
        assert quick.returncode == 0, quick.stderr[-2000:]
        token_file = nodes.head.home / ".ray" / "auth_token"
        quick_start_token = token_file.read_text().strip() if token_file.exists() else None  # Ray >= 2.59

        original = (nodes.checkout / "cluster" / "local.yaml").read_text()
        edited = cluster_file(original, nodes)
        before, after = yaml.safe_load(original), yaml.safe_load(edited)
        assert {k: v for k, v in before["provider"].items() if k not in ("head_ip", "worker_ips")} == \
            {k: v for k, v in after["provider"].items() if k not in ("head_ip", "worker_ips")}
        assert {**before, "provider": None, "auth": None} == {**after, "provider": None, "auth": None}
        (nodes.checkout / "cluster" / "local.yaml").write_text(edited)
        (nodes.checkout / "search_spaces" / "two_nodes.yaml").write_text(tiny_space())

        up = nodes.laptop(["ray", "up", "-y", "cluster/local.yaml"])
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        token = token_file.read_text().strip()  # the head kept the Quick start's token, or made one
        assert token and token == (quick_start_token or token)
        # The README's `ray status` through `ray exec`: both machines joined.
        wait(lambda: re.search(r"Active:\s*\n\s*2 ", nodes.laptop(
            ["ray", "exec", "cluster/local.yaml", "RAY_AUTH_MODE=token ray status"], timeout=120).stdout),
             "the worker to join", timeout=180, every=3)
        for node in nodes.nodes:  # one token, readable by its user alone, on every machine
            path = node.home / ".ray" / "auth_token"
            assert path.read_text().strip() == token and path.stat().st_mode & 0o777 == 0o600
        # `ray submit` exits 1 whenever the driver does not exit 0; the driver's own line says why.
        refused = nodes.laptop(["ray", "submit", "cluster/local.yaml", "hypersweep/launch.py", "--", "--resume",
                                "--out", "results/none", "--address", "auto"])
        assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
        assert "error: --out results/none: no sweep to resume" in refused.stdout + refused.stderr
        # A named address joins in token mode only when RAY_AUTH_MODE=token says so: one line says that.
        named = nodes.ssh(nodes.head, "python -m hypersweep.launch hypersweep/search_spaces/two_nodes.yaml "
                                      f"--address {nodes.head.ip}:6379 --out /tmp/refused")
        assert named.returncode == 2 and "token authentication" in named.stderr, named.stderr[-2000:]
        assert len(named.stderr.strip().splitlines()) == 1, named.stderr[-2000:]

        # `ray submit` from a script, without a terminal, then Ctrl-C: ssh dies and the driver on the head
        # gets a hang-up. It stops as for SIGTERM: finished trials kept, the SQLite WAL folded back, the lock
        # freed, and the command to continue in its log.
        command = ["ray", "submit", "cluster/local.yaml", "hypersweep/launch.py", "--",
                   "hypersweep/search_spaces/two_nodes.yaml", "--address", "auto", "--out", OUT]
        submitted = subprocess.Popen(nodes.laptop_command(command), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=laptop_env(),
                                     start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        wait(lambda: rows(nodes) or submitted.poll() is not None, "the first trial")
        assert submitted.poll() is None, submitted.communicate()[0][-3000:]  # still running, trials landing
        os.killpg(submitted.pid, signal.SIGINT)
        submitted.communicate(timeout=60)
        wait(lambda: not drivers(nodes), "the driver to stop", timeout=90)
        out = nodes.head.home / OUT
        hint = "python -m hypersweep.launch --resume --out /root/results/two_nodes --address auto"
        assert (out / "launch.log").read_text().splitlines()[-1] == f"interrupted (hang-up): continue with  {hint}"
        assert not list(out.glob("optuna.db-*")) and not (out / ".lock").exists()
        stopped_with = len(rows(nodes))
        assert 1 <= stopped_with < TRIALS

        # The hint, pasted on the head; then the driver is killed outright after another trial.
        pasted = subprocess.Popen(nodes.laptop_command(nodes.ssh_command(nodes.head, hint)),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  env=laptop_env())
        wait(lambda: len(rows(nodes)) > stopped_with or pasted.poll() is not None, "a trial of the resumed sweep")
        for driver in drivers(nodes):
            driver.kill()
        pasted.communicate(timeout=60)

        # The README's resume: every trial exactly once, on both machines, with the code's identifier.
        resumed = nodes.laptop(["ray", "submit", "cluster/local.yaml", "hypersweep/launch.py", "--", "--resume",
                                "--out", OUT, "--address", "auto"])
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        trials = pd.read_parquet(out / "trials")
        assert len(trials) == TRIALS and trials["trial"].is_unique, trials[["trial", "status"]]
        assert set(trials["status"]) == {"ok"}
        assert trials["node_id"].nunique() == 2 and set(trials["node"]) == {"hs-head", "hs-worker"}
        assert trials["git_commit"].str.fullmatch(r"sha256:[0-9a-f]{16}").all()  # no .git on the nodes

        down = nodes.laptop(["ray", "down", "-y", "cluster/local.yaml"])
        assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
        for node in nodes.nodes:
            left = wait(lambda n=node: not nodes.processes(n) or None, f"Ray to stop on {node.name}", timeout=90,
                        every=2)
            assert left, [p.cmdline() for p in nodes.processes(node)]

        # The token is on no command line and in no output or log: not in what the user saw, not in the
        # sweep's files, not in Ray's logs on either machine.
        said = up.stdout + up.stderr + resumed.stdout + resumed.stderr + down.stdout + down.stderr
        assert token not in said
        for node in nodes.nodes:
            for root in (node.home / "results", Path(f"/proc/{node.init_pid()}/root/tmp/ray")):
                leaked = [p for p in root.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
                assert not leaked, leaked
    finally:
        if submitted is not None and submitted.poll() is None:
            submitted.kill()
        nodes.close()
