"""hypersweep.cluster on a real Ray: unreachable addresses, requests no node can meet, the import trap.

The session's Ray (tests/conftest.py) is already initialized in this process, so every test that needs a
ray.init of its own runs it in a subprocess.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from importlib.metadata import distribution
from pathlib import Path

import pytest

import hypersweep
from hypersweep import cluster


def run_script(tmp_path, source, *args, cwd=None, timeout=120):
    """Run `source` as a script file (as launch.py runs under `ray submit`), from `cwd`."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or tmp_path)


CONNECT_EACH = """
    import json, sys, time
    from hypersweep import cluster

    seconds = {}
    for address in sys.argv[1:]:
        start = time.monotonic()
        try:
            cluster.connect(address)
        except cluster.ClusterError as err:
            print(f"error: {err}", file=sys.stderr)
        seconds[address] = time.monotonic() - start
    print(json.dumps(seconds))
"""


@pytest.mark.slow  # waits out Ray's connection timeout
def test_an_address_without_a_ray_cluster_fails_in_seconds_with_one_line(tmp_path):
    # A port that accepts connections and says nothing, and one that answers like an HTTP/1 server (the
    # dashboard's port given by mistake): ray.init would wait on either for minutes.
    silent, http1 = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))

    def serve(server, reply):
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(64)
            conn.sendall(reply)

    for server, reply in ((silent, b""), (http1, b"HTTP/1.1 400 Bad Request\r\n\r\n")):
        threading.Thread(target=serve, args=(server, reply), daemon=True).start()
    addresses = ["127.0.0.1:1", f"127.0.0.1:{silent.getsockname()[1]}", f"127.0.0.1:{http1.getsockname()[1]}",
                 "no-such-host.invalid:6379"]
    try:
        proc = run_script(tmp_path, CONNECT_EACH, *addresses)
    finally:
        silent.close()
        http1.close()
    assert proc.returncode == 0, proc.stderr
    seconds = json.loads(proc.stdout)
    assert all(seconds[a] < 10 for a in addresses), seconds
    lines = proc.stderr.splitlines()
    assert len(lines) == len(addresses), proc.stderr  # one line each, no Ray warnings, no traceback
    for address, line in zip(addresses, lines, strict=True):
        assert line.startswith(f"error: --address {address}: "), line
    assert "no Ray cluster answers there" in lines[0] and "not a Ray cluster" in lines[2]


def test_slots_counts_the_trials_the_live_nodes_hold_at_once(ray_address):
    # The session's Ray: one node with 2 CPUs and no GPU.
    assert cluster.slots(1, 0) == 2 and cluster.slots(0.5, 0) == 4 and cluster.slots(3, 0) == 0
    assert cluster.slots(1, 1) == 0


def test_a_request_no_node_can_meet_is_refused(ray_address, capsys):
    # The session's Ray is this machine's 2 CPUs and no GPU.
    cluster.connect(None)  # already initialized here: only records that this Ray cannot grow
    cluster.check_fits(cpus=1, gpus=0)
    cluster.check_fits(cpus=2, gpus=0)
    start = time.monotonic()
    with pytest.raises(cluster.ClusterError, match=r"asks for 1 CPU, 1 GPU .* has 2 CPUs, 0 GPUs") as refused:
        cluster.check_fits(cpus=1, gpus=1)
    assert time.monotonic() - start < 1 and "\n" not in str(refused.value)
    with pytest.raises(cluster.ClusterError, match="asks for 3 CPUs, 0 GPUs"):
        cluster.check_fits(cpus=3, gpus=0)

    # A joined cluster may autoscale: it gets a bounded wait, announced in one line, then the same refusal.
    cluster.connect(ray_address)
    start = time.monotonic()
    with pytest.raises(cluster.ClusterError, match=r"after 1 s no node of the cluster has it"):
        cluster.check_fits(cpus=1, gpus=0.25, wait_s=1)
    assert 1 <= time.monotonic() - start < 10
    assert capsys.readouterr().out.count("waiting up to 1 s for a node with 1 CPU, 0.25 GPUs") == 1


IMPORT_IN_A_TRIAL = """
    import json, sys
    import ray
    from hypersweep import cluster

    if sys.argv[2] == "connect":
        cluster.connect(sys.argv[1])
    else:  # what launch.py did before hypersweep.cluster
        ray.init(address=sys.argv[1], include_dashboard=False, logging_level="ERROR", log_to_driver=False)

    @ray.remote(num_cpus=0)
    def where():
        import hypersweep
        return {"file": getattr(hypersweep, "__file__", None), "version": getattr(hypersweep, "__version__", None)}

    print(json.dumps(ray.get(where.remote())))
"""


def test_trials_import_the_installed_package_whatever_the_working_directory(ray_address, tmp_path):
    # `ray submit` runs the driver from the home directory, which holds the checkout `~/hypersweep`: a
    # directory named like the package, without __init__.py at its root. Ray puts the driver's working
    # directory on every worker's sys.path.
    home = tmp_path / "home"
    (home / "hypersweep" / "search_spaces").mkdir(parents=True)
    installed = {"file": hypersweep.__file__, "version": hypersweep.__version__}

    proc = run_script(tmp_path, IMPORT_IN_A_TRIAL, ray_address, "connect", cwd=home)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == installed

    # The control: without cluster.connect the trap springs when the install is editable (its finder runs
    # after the path scan, so the checkout wins as a namespace package). If this starts failing, Ray has
    # stopped adding the working directory and the workaround in cluster.connect may be dropped.
    direct_url = distribution("hypersweep").read_text("direct_url.json") or "{}"
    if json.loads(direct_url).get("dir_info", {}).get("editable"):
        proc = run_script(tmp_path, IMPORT_IN_A_TRIAL, ray_address, "ray.init", cwd=home)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"file": None, "version": None}


WAIT_FOR_A_GPU = """
    import sys, time
    from hypersweep import cluster

    cluster.connect(sys.argv[1])
    start = time.monotonic()
    cluster.check_fits(cpus=1, gpus=1, wait_s=120)
    print(f"placed after {time.monotonic() - start:.0f} s", flush=True)
"""

A_GPU_NODE_JOINS_LATER = """
    import subprocess, sys
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    try:
        driver = subprocess.Popen([sys.executable, sys.argv[1], nodes.address], stdout=subprocess.PIPE, text=True)
        print(driver.stdout.readline(), end="", flush=True)  # the one line that says it waits
        nodes.add_node(num_cpus=1, num_gpus=1)  # what an autoscaler does when a GPU's worth is pending
        print(driver.stdout.read(), end="")
        sys.exit(driver.wait())
    finally:
        nodes.shutdown()
"""


@pytest.mark.slow
def test_on_a_joined_cluster_the_wait_ends_when_a_node_that_fits_joins(tmp_path):
    driver = tmp_path / "driver" / "wait_for_a_gpu.py"
    driver.parent.mkdir()
    driver.write_text(textwrap.dedent(WAIT_FOR_A_GPU))
    proc = run_script(tmp_path, A_GPU_NODE_JOINS_LATER, str(driver), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("waiting up to 120 s for a node with 1 CPU, 1 GPU"), proc.stdout
    assert lines[-1].startswith("placed after"), proc.stdout


def test_rays_working_directory_is_private_and_empty(tmp_path, monkeypatch):
    # It lands on every worker's sys.path, on every node: it must be one that only we can write to and
    # that holds nothing.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    usual = tmp_path / "home" / ".cache" / "hypersweep" / "ray-cwd"
    before = os.getcwd()
    with cluster._empty_working_directory():
        assert os.getcwd() == str(usual)
    assert os.getcwd() == before and usual.is_dir()  # left in place for the Ray processes started there
    assert usual.stat().st_mode & 0o077 == 0

    (usual / "hypersweep").mkdir()  # no longer empty: a fresh private directory instead
    with cluster._empty_working_directory():
        fresh = Path(os.getcwd())
    assert fresh.parent == tmp_path / "tmp" and not any(fresh.iterdir()) and fresh.stat().st_mode & 0o077 == 0


def test_the_head_watcher_stops_this_nodes_ray_once_the_head_is_gone(tmp_path):
    # What `ray down` leaves on a worker of the local provider: the watcher notices the head's port closed
    # and runs the `ray stop` of its python (here a stand-in `ray` beside a link to python, which records the
    # call instead of stopping the tests' Ray; the package is imported from the checkout, the working directory).
    head = socket.create_server(("127.0.0.1", 0))
    port = head.getsockname()[1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "ray").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'called'}\n")
    (bin_dir / "ray").chmod(0o755)
    env = {**os.environ, "HOME": str(tmp_path)}
    watcher = subprocess.Popen([str(bin_dir / "python"), "-m", "hypersweep.headwatch", f"127.0.0.1:{port}",
                                "--gone-after", "1"], env=env, cwd=Path(hypersweep.__file__).parent.parent)
    try:
        time.sleep(1.5)
        assert watcher.poll() is None and not (tmp_path / "called").exists()  # the head answers: keep watching
        head.close()
        assert watcher.wait(timeout=30) == 0
    finally:
        watcher.kill()
    assert (tmp_path / "called").read_text().split() == ["stop"]
