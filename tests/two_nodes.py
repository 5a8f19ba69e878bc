"""Two machines on one: a head and a worker node for `ray up`, plus the user's laptop, in namespaces.

    with TwoNodes(tmp_path) as nodes:
        nodes.laptop(["ray", "up", "-y", "cluster.yaml"])      # run on the laptop, from its checkout
        nodes.ssh(nodes.head, "ray status")                      # run in a node's login shell
        nodes.processes(nodes.worker)                            # what still runs on a node

Each node is a network, PID, mount and UTS namespace with its own address, hostname, sshd (PID 1 there:
stopping it ends everything the node runs), home directory (its own ~/.ssh/authorized_keys, ~/.ray,
~/.bashrc), /tmp/ray, /dev/shm and /run. The laptop is a namespace too, holding the bridge that joins the
three, a checkout of this repository and the SSH key; `ray up`, `ray submit` and `ray down` run there.
Every address lives inside these namespaces, in a documentation range (RFC 5737: reserved for examples, never
routed) that this machine's own interfaces and routes do not use; nothing here reaches or listens on any other
network.

The nodes have no route to a package index. Their login shell's `python` is a venv of this interpreter that
sees the test environment's packages through a .pth file, so the cluster file's setup commands (`pip install
torch`, `pip install ~/hypersweep[postgres]`) find every dependency installed and only install hypersweep
itself, from the copy `ray up` made, without a build environment from the index.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
SUBNETS = ("198.51.100", "203.0.113", "192.0.2")  # TEST-NET-2, -3 and -1, for the first this machine lacks


def free_subnet() -> str:
    """A /24 of SUBNETS that no address or route of this machine's own network mentions."""
    used = run(["ip", "-4", "-o", "addr"]).stdout + run(["ip", "-4", "route"]).stdout
    for subnet in SUBNETS:
        if f" {subnet}." not in used:
            return subnet
    raise Unavailable(f"this machine's network uses every test range ({', '.join(SUBNETS)})")


class Unavailable(Exception):
    """This machine cannot build the namespaces (not root, no `ip netns`, no sshd, ...): one line why."""


@dataclass
class Node:
    name: str  # hostname and namespace suffix
    ip: str
    dir: Path  # home/, sshd files, log
    netns: str
    proc: subprocess.Popen | None = None  # `unshare`, whose child is the node's PID 1 (sshd)

    @property
    def home(self) -> Path:
        return self.dir / "home"

    def init_pid(self) -> int:
        """The node's PID 1 (its sshd), as a PID of this machine."""
        children = psutil.Process(self.proc.pid).children()
        if not children:
            raise RuntimeError(f"node {self.name} has stopped ({self.dir / 'sshd.log'})")
        return children[0].pid


class TwoNodes:
    """Builds the laptop and two nodes in `root` on entry; removes every namespace and process on exit."""

    def __init__(self, root: Path):
        check_available()  # raises Unavailable, with one line why
        self.root = root
        tag = "hs" + uuid.uuid4().hex[:4]  # names unique to this run; interface names stay under 16 bytes
        self.tag = tag
        self.lan = f"{tag}-lan"
        subnet = free_subnet()
        self.laptop_ip = f"{subnet}.1"
        self.head = Node("hs-head", f"{subnet}.20", root / "head", f"{tag}-head")
        self.worker = Node("hs-worker", f"{subnet}.21", root / "worker", f"{tag}-worker")
        self.nodes = (self.head, self.worker)
        self.laptop_home = root / "laptop" / "home"
        self.checkout = self.laptop_home / "hypersweep"
        self.key = self.laptop_home / ".ssh" / "id_ed25519"
        self.python = root / "python"  # the nodes' login-shell python
        self.made_netns: list[str] = []

    # -- building ----------------------------------------------------------------------------------------

    def __enter__(self) -> TwoNodes:
        try:
            self._files()
            self._network()
            for node in self.nodes:
                self._start(node)
            for node in self.nodes:
                self._wait_for_ssh(node)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _files(self) -> None:
        hosts = "127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for ip, name in
                                                   [(self.laptop_ip, "laptop")] + [(n.ip, n.name) for n in self.nodes])
        (self.root / "hosts").write_text(hosts)
        (self.root / "resolv.conf").write_text("")  # no name server: a lookup fails at once, offline
        for home in (self.laptop_home, *(n.home for n in self.nodes)):
            (home / ".ssh").mkdir(parents=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hypersweep two-node test", "-f", str(self.key)])
        (self.root / "laptop" / "tmp-ray").mkdir()
        self._node_python()
        self._laptop_checkout()
        for node in self.nodes:
            (node.home / ".ssh" / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(node.dir / "host_key")])
            (node.dir / "sshd_config").write_text(
                f"ListenAddress {node.ip}\nHostKey {node.dir / 'host_key'}\nPidFile none\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                "UsePAM no\nStrictModes yes\nPrintMotd no\nMaxStartups 100\nMaxSessions 100\n")
            # The login shell `ray up` runs every command in: the nodes' python first, and pip offline.
            (node.home / ".bashrc").write_text(
                f"export PATH={self.python}/bin:/usr/local/bin:/usr/bin:/bin\n"
                "export PIP_NO_INDEX=1 PIP_NO_BUILD_ISOLATION=0 PIP_DISABLE_PIP_VERSION_CHECK=1\n"
                "export RAY_USAGE_STATS_ENABLED=0\n")
            (node.home / ".profile").write_text(". ~/.bashrc\n")

    def _node_python(self) -> None:
        """A venv of this interpreter (without pip of its own) that sees this environment's packages."""
        run([sys.executable, "-m", "venv", "--without-pip", str(self.python)])
        purelib = Path(run([str(self.python / "bin" / "python"), "-c",
                            "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
        (purelib / "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        ray = self.python / "bin" / "ray"  # the `ray` command, run by this python (not the test env's)
        ray.write_text(f"#!{self.python}/bin/python\nimport sys\nfrom ray.scripts.scripts import main\n"
                       "sys.exit(main())\n")
        ray.chmod(0o755)

    def _laptop_checkout(self) -> None:
        """The user's checkout: the files git tracks (as a clone has them), nothing built or ignored."""
        files = run(["git", "ls-files", "-z"], cwd=REPO).stdout.split("\0")
        for name in filter(None, files):
            source = REPO / name
            if source.is_file():
                (self.checkout / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, self.checkout / name)

    def _network(self) -> None:
        """The laptop's namespace holds a bridge; each node hangs on it by a veth pair."""
        for ns in (self.lan, *(n.netns for n in self.nodes)):
            run(["ip", "netns", "add", ns])
            self.made_netns.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.lan, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.lan, "addr", "add", f"{self.laptop_ip}/24", "dev", "br0"])
        run(["ip", "-n", self.lan, "link", "set", "br0", "up"])
        for i, node in enumerate(self.nodes):
            port = f"{self.tag}p{i}"
            run(["ip", "link", "add", port, "netns", self.lan, "type", "veth", "peer", "name", "eth0",
                 "netns", node.netns])
            run(["ip", "-n", self.lan, "link", "set", port, "master", "br0", "up"])
            run(["ip", "-n", node.netns, "addr", "add", f"{node.ip}/24", "dev", "eth0"])
            run(["ip", "-n", node.netns, "link", "set", "eth0", "up"])
            # Ray finds a node's address by the route to a public one: the default route gives it eth0's.
            # Nothing forwards beyond the laptop's namespace, so no packet leaves.
            run(["ip", "-n", node.netns, "route", "add", "default", "via", self.laptop_ip])

    def _mounts(self, hostname: str, home: Path, tmp_ray: Path | None) -> str:
        """Shell lines that make a fresh mount namespace look like a machine of its own.

        Its home replaces /root. This interpreter and the test environment stay where they are, also when
        they live under /root (pyenv, a clone in root's home): they are mounted into the new home first.
        """
        ray_dir = f"mount --bind {tmp_ray} /tmp/ray" if tmp_ray else "mount -t tmpfs -o mode=1777 tmpfs /tmp/ray"
        keep = ""
        for path in sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}):
            if path.is_relative_to(Path.home().resolve()):
                inside = home / path.relative_to(Path.home().resolve())
                inside.mkdir(parents=True, exist_ok=True)
                keep += f"mount --bind {path} {inside}; "
        return (f"set -e; hostname {hostname}; {keep}mount --rbind {home} /root; mkdir -p /tmp/ray; {ray_dir}; "
                f"mount -t tmpfs -o mode=1777 tmpfs /dev/shm; "
                f"mount --bind {self.root / 'hosts'} /etc/hosts; "
                f"mount --bind {self.root / 'resolv.conf'} /etc/resolv.conf; ")

    def _start(self, node: Node) -> None:
        script = (self._mounts(node.name, node.home, None)
                  + "mount -t tmpfs -o mode=755 tmpfs /run; mkdir -p /run/sshd; "
                  + f"exec /usr/sbin/sshd -D -e -f {node.dir / 'sshd_config'}")
        log = open(node.dir / "sshd.log", "wb")  # noqa: SIM115 (the node's lifetime, closed by the child)
        node.proc = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, "unshare", "--mount", "--pid", "--uts", "--fork", "--kill-child",
             "--mount-proc", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=clean_env())
        log.close()

    def _wait_for_ssh(self, node: Node, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self.ssh(node, "true", timeout=20)
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline or node.proc.poll() is not None:
                raise RuntimeError(f"sshd of {node.name} does not answer: {proc.stderr.strip()} "
                                   f"{(node.dir / 'sshd.log').read_text()[-500:]}")
            time.sleep(0.5)

    # -- using -------------------------------------------------------------------------------------------

    def laptop_command(self, command: list[str]) -> list[str]:
        """`command` as run on the laptop, from its checkout (as the README's commands are)."""
        script = (self._mounts("laptop", self.laptop_home, self.root / "laptop" / "tmp-ray")
                  + f'cd {self.checkout}; exec "$@"')
        return ["ip", "netns", "exec", self.lan, "unshare", "--mount", "--uts", "--propagation", "private",
                "sh", "-c", script, "sh", *command]

    def laptop(self, command: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.laptop_command(command), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=laptop_env(), **kwargs)

    def ssh_command(self, node: Node, command: str) -> list[str]:
        """`command` in the node's login shell, over SSH from the laptop (for laptop_command)."""
        return ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"root@{node.ip}",
                f"bash --login -c {shlex.quote(command)}"]

    def ssh(self, node: Node, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.laptop(self.ssh_command(node, command), timeout=timeout)

    def processes(self, node: Node) -> list[psutil.Process]:
        """Every process of `node` but its sshd (PID 1 there) and SSH sessions."""
        init = node.init_pid()
        ns = os.readlink(f"/proc/{init}/ns/pid")
        found = []
        for proc in psutil.process_iter(["pid", "name", "status"]):
            try:
                if (proc.pid != init and os.readlink(f"/proc/{proc.pid}/ns/pid") == ns and proc.info["name"] != "sshd"
                        and proc.info["status"] != psutil.STATUS_ZOMBIE):  # ended, about to be reaped
                    found.append(proc)
            except (OSError, psutil.Error):
                continue  # ended while we looked
        return found

    # -- tearing down ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every node (its PID namespace with it) and remove the namespaces; keeps `root` for the logs."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()  # unshare --kill-child: its child, the node's PID 1, gets SIGKILL
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(node.proc.pid, signal.SIGKILL)
                    node.proc.wait(10)
        for ns in reversed(self.made_netns):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        self.made_netns.clear()
        key = Path(self.key)
        for path in (key, Path(f"{key}.pub")):
            path.unlink(missing_ok=True)


def check_available() -> None:
    if os.geteuid() != 0:
        raise Unavailable("needs root (network namespaces and bind mounts)")
    for tool in ("ip", "unshare", "sshd", "ssh", "ssh-keygen", "rsync", "git"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise Unavailable(f"`{tool}` is not installed")
    probe = subprocess.run(["unshare", "--net", "--pid", "--mount", "--uts", "--fork", "true"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        raise Unavailable(f"namespaces are not available here ({probe.stderr.strip() or probe.returncode})")


def clean_env() -> dict[str, str]:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def laptop_env() -> dict[str, str]:
    """The laptop's shell: this environment's `ray` first (the CLI the user installed), HOME its own."""
    env = clean_env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return {**env, "HOME": "/root", "RAY_USAGE_STATS_ENABLED": "0"}


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {proc.stderr.strip()}")
    return proc

