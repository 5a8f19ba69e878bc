"""Join or start Ray for a sweep, and refuse what the cluster can never run.

    resources = connect(args.address)      # embedded Ray when the address is None
    check_fits(cpus=1, gpus=0.25)          # before any trial is submitted

The traps of joining Ray live here, so that launch.py does not have to know about them:

- Ray puts the driver's working directory on every worker's `sys.path`. Under `ray submit` that is the
  home directory of the head node, which holds the checkout `~/hypersweep` (a directory without
  `__init__.py`). When hypersweep is installed editable, the install is found by a meta-path finder that
  runs only after the ordinary path scan, so `~/hypersweep` wins as a namespace package and every trial
  fails with `cannot import name '__version__' from 'hypersweep' (unknown location)`. `connect` therefore
  calls `ray.init` from an empty directory of its own: the path Ray hands the workers holds nothing.
- `ray.init` on an address where no Ray listens retries for minutes, printing warnings. `connect` first
  opens a TCP connection to it with a short timeout and checks that an HTTP/2 (gRPC) server answers,
  which Ray's GCS is; anything else is refused in one line.
- A cluster in token mode (Ray's token authentication, on by default since Ray 2.59 wherever a local
  `ray.init()` left ~/.ray/auth_token) refuses a driver without its token: `ray.init` then prints a warning a
  second for 20 s and fails with a message that hides why. `connect` holds Ray's warnings back and names
  the cause in one line (RAY_AUTH_MODE and the token file), as Ray joins a named address in token mode only
  when RAY_AUTH_MODE=token says so (`--address auto` turns it on by itself where the token file exists).
- A trial that asks for resources no node has (a GPU on a CPU-only machine) waits forever in Tune's
  queue without a word. `check_fits` refuses it at once when we started Ray ourselves (nothing can be
  added to it), and on a joined cluster waits a bounded time for one, with a task of one trial's size
  pending so that an autoscaler starts such a node.

- `ray.init` puts in a SIGTERM handler of its own (`sys.exit(15)`) as it starts: a SIGTERM while Ray starts
  would end the driver with no word. `connect` hands such a signal to the handler the caller had, and puts
  that handler back.

Only public Ray APIs are used: `ray.init`, `ray.is_initialized`, `ray.cluster_resources`, `ray.nodes`,
`ray.remote`, `ray.wait` and `ray.cancel`.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

CONNECT_TIMEOUT_S = 5.0  # a GCS on a reachable host answers in milliseconds
WAIT_FOR_NODE_S = 900.0  # a cloud GPU node takes minutes to boot and run the cluster file's setup
POLL_S = 5.0

# HTTP/2 connection preface followed by an empty SETTINGS frame (RFC 9113, 3.4 and 6.5). A gRPC server,
# which Ray's GCS is, answers with a SETTINGS frame of its own; an HTTP/1 server (the dashboard's port,
# a common mix-up) or any other service does not.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_HTTP2_SETTINGS = 4

# Whether the Ray we are connected to may still gain nodes (a cluster we joined, which may autoscale)
# or is fixed (the embedded Ray that `connect(None)` started on this machine). Set by `connect`.
_joined = False
_ours = False  # connect() called ray.init (not the caller): disconnect() shuts it down


class ClusterError(Exception):
    """One line for the user."""


def connect(address: str | None) -> dict[str, float]:
    """Join the Ray cluster at `address` ('auto', 'host:port', 'ray://host:port'), or start an embedded
    one on this machine when it is None; return `ray.cluster_resources()`. Raises ClusterError."""
    global _joined, _ours
    if address == "auto" and "RAY_AUTH_MODE" not in os.environ and _has_token():
        # What `ray.init(address="auto")` does itself since Ray 2.59: a cluster found on this machine is
        # joined in token mode when this machine has a token (the head of cluster/*.yaml has). Ray 2.52-2.58
        # joined without one, and a token-mode head refused the driver. Ray reads the mode once, when it is
        # first imported, so this comes before that.
        os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    _joined = address is not None
    if ray.is_initialized():  # the caller (a test, a notebook) already connected this process
        return ray.cluster_resources()
    _ours = True
    if address is not None:
        _check_answers(address)
    said: list[str] = []
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with _empty_working_directory(), _stderr_held(said):
            # 'local' always starts a new Ray: with None, ray.init would join a cluster that `ray start`
            # left on this machine, which is not what "embedded" promises.
            ray.init(address=address or "local", include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False)
    except SystemExit as stop:
        # ray.init first puts in a SIGTERM handler of its own, sys.exit(15): a SIGTERM while it runs goes to
        # the caller's handler instead, as it would at any other time (a bare exit 15 says nothing).
        if stop.code == signal.SIGTERM and callable(on_sigterm):
            on_sigterm(signal.SIGTERM, None)
        raise
    except Exception as err:  # ray.init raises ConnectionError, ValueError, RuntimeError, ... by case
        if _AUTH_REFUSED in said[0] or _AUTH_REFUSED in str(err):
            raise ClusterError(_auth_refused(address)) from None
        what = f"--address {address}: cannot join that Ray cluster" if address else "cannot start a local Ray"
        raise ClusterError(f"{what} ({_first_line(err)})") from None
    finally:
        if on_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)  # the caller's again, not ray.init's
    sys.stderr.write(said[0])  # joined: Ray's warnings, if any, are the user's to see
    return ray.cluster_resources()


_AUTH_REFUSED = "InvalidAuthToken"  # what Ray's GCS answers a client without the cluster's token


def _has_token() -> bool:
    """Whether Ray would find a token here: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or os.path.isfile(path)


def _auth_refused(address: str | None) -> str:
    where = f"--address {address}" if address else "the local Ray"
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return (f"{where}: the cluster refused this machine's Ray token; copy the head's ~/.ray/auth_token to "
                "~/.ray/auth_token here (mode 600), or point RAY_AUTH_TOKEN_PATH at a copy")
    return (f"{where}: the cluster uses Ray's token authentication; run with RAY_AUTH_MODE=token and the "
            "cluster's token in ~/.ray/auth_token (or RAY_AUTH_TOKEN_PATH), or on the head with --address auto")


@contextlib.contextmanager
def _stderr_held(said: list[str]) -> Iterator[None]:
    """Collect what is written to file descriptor 2 in the block (Ray's C++ core writes there) into
    `said[0]`, instead of showing it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            said.append(held.read().decode(errors="replace"))


def disconnect() -> None:
    """Leave the cluster `connect` joined (stop the embedded Ray it started); a connection the caller
    made stays. Done explicitly because Ray's own exit hook takes ~0.7 s longer than this call."""
    global _ours
    if _ours:
        import ray

        ray.shutdown()
        _ours = False


def check_fits(cpus: float, gpus: float, wait_s: float = WAIT_FOR_NODE_S) -> None:
    """Return when some node could place one trial of `cpus` CPUs and `gpus` GPUs.

    On the embedded Ray refuse at once. On a joined cluster, which may autoscale, print one line and wait
    up to `wait_s` seconds for such a node; then refuse. Raises ClusterError.
    """
    import ray

    if _fits(cpus, gpus):
        return
    need = _amount(cpus, gpus)
    if not _joined:
        raise ClusterError(f"a trial asks for {need} (resources: in the search space), but this machine's Ray "
                           f"has {_largest_node()}; lower the request or join a cluster that has it (--address)")
    print(f"waiting up to {wait_s:g} s for a node with {need} (largest node now: {_largest_node()}) ...",
          flush=True)
    # An autoscaler adds nodes only for demand: a task of one trial's size is that demand. It belongs to
    # this job, so it vanishes if the driver dies (a request_resources() call would outlive it and keep
    # a GPU node running), and its running proves that a trial can be placed.
    probe = ray.remote(_placed).options(num_cpus=cpus, num_gpus=gpus).remote()
    ready, _ = ray.wait([probe], timeout=wait_s)
    if ready:
        return
    ray.cancel(probe)
    raise ClusterError(f"a trial asks for {need} (resources: in the search space), but after {wait_s:g} s "
                       f"no node of the cluster has it (largest: {_largest_node()})")


def _check_answers(address: str) -> None:
    """Refuse in seconds an address where no gRPC server (Ray's GCS) listens.

    'auto' and 'local' name no host; ray.init resolves them itself and fails fast when there is nothing.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit():
        return  # not host:port ('auto', or a malformed address that ray.init will name)
    try:
        conn = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S)
    except OSError as err:  # refused, unreachable, timed out, unknown host
        raise ClusterError(f"--address {address}: no Ray cluster answers there "
                           f"({err.strerror or 'timed out'})") from None
    with conn:
        try:  # a TLS server drops the connection on the preface; the check below then skips the reply
            conn.sendall(_HTTP2_PREFACE)
            reply = conn.recv(9)  # the first frame header: length (3 bytes), type, flags, stream id
        except OSError:
            reply = b""
    tls = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")  # then the reply is a TLS handshake
    if not tls and (len(reply) < 4 or reply[3] != _HTTP2_SETTINGS):
        raise ClusterError(f"--address {address}: something listens there, but not a Ray cluster "
                           f"(give the port of `ray start --head --port`, 6379 by default)")


@contextlib.contextmanager
def _empty_working_directory() -> Iterator[None]:
    """Run the block from an empty directory, then return to where we were (see the module doc).

    The directory outlives the block: the Ray processes started here keep it as their working
    directory, and torch's MKL fails to load in a process whose working directory was deleted.
    """
    before = os.getcwd()
    os.chdir(_private_empty_directory())
    try:
        yield
    finally:
        os.chdir(before)


def _private_empty_directory() -> Path:
    """~/.cache/hypersweep/ray-cwd, empty and writable by us alone; else a fresh temporary directory.

    Its path goes on every worker's sys.path, on every node. In a shared /tmp another user could create a
    directory of that name first, on any node, with a package in it that our trials would import; in our
    home directory nobody else can.
    """
    try:
        path = Path.home() / ".cache" / "hypersweep" / "ray-cwd"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = path.lstat()
        if (stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and not found.st_mode & 0o077
                and not any(path.iterdir())):
            return path
    except (OSError, RuntimeError):  # no home directory, or one we cannot write to
        pass
    return Path(tempfile.mkdtemp(prefix="hypersweep-ray-cwd-"))  # left in place too


def _placed() -> None:
    """The probe task of check_fits: it does nothing, where a trial could run."""


def slots(cpus: float, gpus: float) -> int:
    """How many trials of `cpus` CPUs and `gpus` GPUs the live nodes hold at once (0 if none fits)."""
    import ray

    total = 0
    for node in ray.nodes():
        if node["Alive"]:
            have = node["Resources"]
            fit = [have.get(name, 0) // amount for name, amount in _bundle(cpus, gpus).items()]
            total += int(min(fit, default=0))
    return total


def _fits(cpus: float, gpus: float) -> bool:
    import ray

    return any(node["Resources"].get("CPU", 0) >= cpus and node["Resources"].get("GPU", 0) >= gpus
               for node in ray.nodes() if node["Alive"])


def _largest_node() -> str:
    """The most CPUs and the most GPUs any one live node has, e.g. '2 CPUs, 0 GPUs'."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    return _amount(max((n.get("CPU", 0) for n in nodes), default=0), max((n.get("GPU", 0) for n in nodes), default=0))


def _amount(cpus: float, gpus: float) -> str:
    return f"{cpus:g} CPU{'' if cpus == 1 else 's'}, {gpus:g} GPU{'' if gpus == 1 else 's'}"


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    return {name: amount for name, amount in (("CPU", cpus), ("GPU", gpus)) if amount > 0}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
