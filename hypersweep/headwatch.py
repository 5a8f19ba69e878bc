"""`python -m hypersweep.headwatch HEAD_IP:PORT`: stop this node's Ray once its head has gone.

On machines you own (the cluster launcher's `local` provider) `ray down` runs `ray stop` on the head only:
it cannot switch a worker machine off. A worker's raylet gives up on its lost head after Ray's GCS reconnect
timeout (60 s), and leaves its dashboard agent, runtime-env agent and log monitor running for good.
`cluster/local.yaml` starts this watcher beside each worker's Ray. It opens a TCP connection to the head's
Ray port every POLL_S seconds; once none has succeeded for GONE_S seconds, it runs `ray stop` on this node
and exits. Only one watcher runs per user and node: a new one (the next `ray up`) replaces the old one.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 2.0
GONE_S = 10.0  # long enough for a head that is busy, short enough that `ray down` leaves nothing for long
PID_FILE = Path.home() / ".cache" / "hypersweep" / "headwatch.pid"


def answers(host: str, port: int, timeout: float) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def watch(host: str, port: int, gone_s: float = GONE_S) -> None:
    """Return once `host:port` has refused or ignored every connection for `gone_s` seconds."""
    poll_s = min(POLL_S, gone_s / 5)
    last_seen = time.monotonic()
    while time.monotonic() - last_seen < gone_s:
        if answers(host, port, timeout=poll_s):
            last_seen = time.monotonic()
        time.sleep(poll_s)


def replace_previous_watcher() -> None:
    """Stop the watcher an earlier `ray up` started on this node, and record this one."""
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError, ValueError):
        pid = int(PID_FILE.read_text())
        if pid != os.getpid() and b"hypersweep.headwatch" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
    PID_FILE.write_text(str(os.getpid()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hypersweep.headwatch", description=__doc__.splitlines()[0])
    p.add_argument("head", help="the head's Ray address, HOST:PORT (the worker's `ray start --address`)")
    p.add_argument("--gone-after", type=float, default=GONE_S, metavar="SECONDS",
                   help=f"stop this node's Ray once the head has not answered for this long (default {GONE_S:g})")
    args = p.parse_args(argv)
    host, _, port = args.head.rpartition(":")
    if not host or not port.isdigit():
        p.error(f"{args.head}: give the head's address as HOST:PORT")
    replace_previous_watcher()
    watch(host.strip("[]"), int(port), args.gone_after)
    # The `ray` command of the python that runs us (the login shell's, which started this node's Ray).
    ray = Path(sys.executable).parent / "ray"
    subprocess.run([str(ray) if ray.exists() else "ray", "stop"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    with contextlib.suppress(OSError, ValueError):
        if int(PID_FILE.read_text()) == os.getpid():
            PID_FILE.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
