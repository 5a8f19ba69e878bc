"""Run a sweep: `python -m hypersweep.launch [SPACE.yaml] [--out DIR] [--resume] ...`

On a laptop it starts an embedded Ray on all local CPUs; on a cluster it joins the
running one (`--address auto`, or RAY_ADDRESS), e.g. through
`ray submit CLUSTER.yaml hypersweep/launch.py -- SPACE.yaml --address auto --out /data/run`.
"""
from __future__ import annotations

if __package__ in (None, ""):  # run as a script path (ray submit): import the installed package
    import sys
    from pathlib import Path

    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import uuid
from pathlib import Path

# SIGTERM (a scheduler's, `kill`'s) and SIGHUP (the terminal or the SSH connection of `ray submit` went away)
# stop a sweep as Ctrl-C does. The first one is turned into a SIGINT: while Tune runs, its handler ends the
# running trials and keeps every finished one; before that, Python raises KeyboardInterrupt. `received`
# remembers which signal it was, for the exit code (128 + signal) and the message.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
received: list[int] = []


def on_stop_signal(signum: int, frame) -> None:
    first = not received
    received.append(signum)
    if signum == signal.SIGHUP:
        detach_from_terminal()
        if not first:
            return  # a shell that goes away may hang up twice; one stop is enough
    if callable(signal.getsignal(signal.SIGINT)):  # Tune's handler or Python's default one
        os.kill(os.getpid(), signal.SIGINT)
    else:  # SIGINT ignored (a background job) or left to the system: stop here instead
        raise KeyboardInterrupt


def detach_from_terminal() -> None:
    """After a hang-up, writing to the terminal fails (EIO): send stdout and stderr to /dev/null. What the
    sweep says from now on still reaches its log in --out (OUT/launch.log)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(devnull, fd)
    os.close(devnull)


def install_stop_handlers() -> None:
    """Here, before the heavy imports; `cluster.connect` keeps them through ray.init (which puts in a SIGTERM
    handler of its own), and `_sweep` installs them again once Ray is up, to be sure."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, on_stop_signal)


install_stop_handlers()

try:
    from hypersweep import __version__, frontier, search_space
    from hypersweep.config import ArgumentParser, ConfigError
    from hypersweep.manifest import MANIFEST, parse_manifest
    from hypersweep.results import ResultStore, is_remote, load_epochs, load_trials, source_id
    from hypersweep.vocab import PENDING_ENV
except KeyboardInterrupt:  # a stop while Python still imports torch: nothing has started
    print("interrupted before the sweep started: nothing to resume", file=sys.stderr)
    sys.exit(128 + (received[0] if received else signal.SIGINT))

DEFAULT_SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "quickstart.yaml"
SPACE_COPY = "space.yaml"  # the search space a sweep ran, kept in its --out for --resume
LOG = "launch.log"  # every line the driver printed to its terminal, kept in a local --out (and after a hang-up)
STORAGE_ENV = "HYPERSWEEP_STORAGE"  # --storage's default: keeps a database password off the command line


class Refusal(Exception):
    """A launch that must not start (bad paths, a busy or foreign --out, a storage it cannot trust)."""


@dataclasses.dataclass
class Plan:
    """A launch that passed every check: what to run, where, and what to record."""

    spec: search_space.SweepSpec
    out: str
    store: ResultStore
    storage: str  # the Optuna storage URL, password included
    manifest: dict  # sweep.json as it will be after this launch
    space_text: str | None  # the space file to save (a new sweep), else None
    resume: bool
    address: str | None = None  # the Ray cluster joined (--address or RAY_ADDRESS); None: an embedded Ray


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m hypersweep.launch", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="store_true",
                   help="print the version and the source identifier that trial rows record (git_commit)")
    p.add_argument("space", nargs="?", help=f"search-space YAML (default: {DEFAULT_SPACE.name}; "
                                            f"with --resume: the one saved in --out)")
    p.add_argument("--out", help="results directory or URI (default: results/<experiment>)")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="Ray cluster to join ('auto' for the local cluster); default: an embedded local Ray")
    p.add_argument("--num-samples", type=int, help="trials per study (overrides budget.trials; recorded)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (overrides budget.max_concurrent)")
    p.add_argument("--storage", default=os.environ.get(STORAGE_ENV),
                   help=f"Optuna storage URL (default: ${STORAGE_ENV}, else sqlite:///OUT/optuna.db; "
                        "with --resume: the one the sweep recorded)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep in --out")
    args = p.parse_args(argv)
    if args.version:
        print(f"hypersweep {__version__} (source {source_id()})")
        p.exit(0)
    for name in ("num_samples", "max_concurrent"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.num_samples is not None and args.num_samples > search_space.MAX_TRIALS:
        p.error(f"--num-samples must be <= {search_space.MAX_TRIALS:,} (trials per study, as budget.trials)")
    if args.resume and not args.out:
        p.error("--resume needs --out (the sweep to continue)")
    # The environment is input too: checked here, like the flags, before anything is written.
    pending = os.environ.get(PENDING_ENV)
    # What int() reads, as Ray does: ASCII digits, blanks around them (str.isdigit passes '²', which int() refuses).
    if pending is not None and not (re.fullmatch(r"\s*[0-9]+\s*", pending, re.ASCII) and int(pending) >= 1):
        p.error(f"{PENDING_ENV}={pending!r}: must be a whole number >= 1 (Ray Tune's limit on trials waiting "
                "for a slot), or unset")
    given = any(a == "--storage" or a.startswith("--storage=") for a in (sys.argv[1:] if argv is None else argv))
    args.storage_source = "--storage" if given or args.storage is None else f"${STORAGE_ENV}"
    return args


def redact(url: str) -> str:
    """A storage URL without its password, for sweep.json and messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: check_storage says so later
        shown = url.split("@", 1)[-1] if "@" in url else url
        return shown if shown.isprintable() else ascii(shown)  # one line, whatever it holds


def check_out(out: str, resume: bool) -> ResultStore:
    """Refuse an --out that could mix two sweeps, escape where the user pointed, or cannot be written."""
    if ".." in out.split("/"):
        raise Refusal(f"--out {out}: paths with '..' are refused; give the directory plainly")
    if not is_remote(out):
        check_writable(Path(out), "--out")
    try:
        store = ResultStore(out)
        has_sweep = store.read_text(MANIFEST) is not None
        empty = store.is_empty()
    except (OSError, ValueError) as err:  # pyarrow raises these for a URI it cannot reach or parse
        raise Refusal(f"--out {out}: {first_line(err)}") from None
    if resume and not has_sweep:
        raise Refusal(f"--out {out}: no sweep to resume there ({MANIFEST} missing)")
    if not resume and not empty:
        what = "already holds a sweep; pass --resume to continue it" if has_sweep else "is not empty"
        raise Refusal(f"--out {out}: {what}, or choose another --out")
    return store


def check_writable(path: Path, what: str) -> None:
    """A local directory that exists and is writable, or could be created; nothing is created here."""
    if path.exists() and not path.is_dir():
        raise Refusal(f"{what} {path}: exists and is not a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise Refusal(f"{what} {path}: {existing} is a file, not a directory")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise Refusal(f"{what} {path}: {existing} is on a read-only file system")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise Refusal(f"{what} {path}: {existing} is not writable")


def check_names(spec: search_space.SweepSpec, out: str) -> None:
    """Every file and directory name the sweep will create must fit the file system's limit."""
    if is_remote(out):
        return
    existing = Path(out).resolve()
    while not existing.exists():
        existing = existing.parent
    limit = os.pathconf(existing, "PC_NAME_MAX")
    longest = max([f"{s.study}-000000.parquet" for s in spec.studies] + [f"{spec.experiment}-20260101T000000"],
                  key=len)
    if len(longest.encode()) > limit:
        raise Refusal(f"{spec.path}: experiment or variant names too long: {longest!r} would exceed the file "
                      f"system's {limit}-byte limit for a name")


def sqlite_database(url: str) -> str | None:
    """The database of a SQLite storage URL ('' or ':memory:' in memory), else None (another database, or
    not a URL at all)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL: check_storage names it
        return None
    return (parsed.database or "") if parsed.get_backend_name() == "sqlite" else None


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite storage URL, else None."""
    database = sqlite_database(url)
    return Path(database) if database not in (None, "", ":memory:") else None


def check_storage(url: str, source: str = "--storage") -> None:
    """Open the Optuna storage once, so a bad URL is refused before any compute; `source` names where
    the URL came from (the flag or $HYPERSWEEP_STORAGE). A SQLite file that does not exist yet is not
    opened, since opening it would create it: its directory is checked instead."""
    import optuna

    if sqlite_database(url) in ("", ":memory:"):
        raise Refusal(f"{source} {redact(url)}: an in-memory database keeps no study for --resume; give a file "
                      "(sqlite:///PATH) or a database server")
    db = sqlite_file(url)
    if db is not None and not db.exists():
        if not db.parent.is_dir():
            raise Refusal(f"{source} {redact(url)}: cannot open it (directory {db.parent} does not exist)")
        if not os.access(db.parent, os.W_OK | os.X_OK):
            raise Refusal(f"{source} {redact(url)}: cannot open it (directory {db.parent} is not writable)")
        return
    try:
        optuna.storages.RDBStorage(url).remove_session()
    except Exception as err:  # SQLAlchemy raises many kinds: a missing driver, a refused connection, ...
        raise Refusal(f"{source} {redact(url)}: cannot open it ({first_line(err)})") from None


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def read_manifest(store: ResultStore, out: str) -> dict:
    text = store.read_text(MANIFEST)
    if text is None:
        return {}
    try:
        manifest = parse_manifest(text)
    except ValueError as err:
        raise Refusal(f"{out}/{MANIFEST}: unreadable ({first_line(err)}); it cannot be resumed") from None
    return manifest


def resolve_space(args: argparse.Namespace, scratch: Path) -> str:
    """The space file to run: as given, else (resuming) the one saved in --out, else quickstart."""
    if args.space:
        return args.space
    if args.resume:
        saved = ResultStore(args.out).read_text(SPACE_COPY) if is_remote(args.out) else None
        if not is_remote(args.out):
            return str(Path(args.out) / SPACE_COPY)
        if saved is not None:
            (scratch / SPACE_COPY).write_text(saved)
            return str(scratch / SPACE_COPY)
    return str(DEFAULT_SPACE)


def plan(args: argparse.Namespace, scratch: Path) -> Plan:
    """Every check a launch needs, before anything is created or Ray is started."""
    if args.resume:  # the sweep to continue first: its space is read from there
        check_out(args.out, resume=True)
    space_path = resolve_space(args, scratch)
    spec = search_space.load(space_path)
    out = args.out or f"results/{spec.experiment}"
    store = check_out(out, args.resume)
    check_names(spec, out)
    saved = read_manifest(store, out)
    if saved and saved["experiment"] != spec.experiment:
        raise Refusal(f"--out {out}: holds experiment {saved['experiment']!r}, not {spec.experiment!r}")
    if saved:
        return _plan_resume(args, spec, out, store, saved)
    if is_remote(out) and not args.storage:
        raise Refusal(f"--out {out}: a remote --out needs --storage (an Optuna RDB URL, e.g. postgresql://)")
    storage = args.storage or f"sqlite:///{Path(store.root) / 'optuna.db'}"
    if args.storage:
        check_storage(storage, args.storage_source)
        check_studies(spec, storage, sweep_id=None)
    budgets = {s.study: args.num_samples or spec.trials(s) for s in spec.studies}
    manifest = {"experiment": spec.experiment, "version": __version__, "sweep_id": uuid.uuid4().hex,
                "storage": None if not args.storage else redact(storage), "studies": list(budgets),
                "budgets": budgets, "num_samples": args.num_samples, "space": search_space.meaning(spec)}
    return Plan(spec, out, store, storage, manifest, Path(space_path).read_bytes().decode(), resume=False)


def _plan_resume(args: argparse.Namespace, spec: search_space.SweepSpec, out: str, store: ResultStore,
                 saved: dict) -> Plan:
    if "sweep_id" not in saved:
        raise Refusal(f"--out {out}: made by hypersweep {saved.get('version', '?')}, which recorded no sweep id; "
                      "it cannot be resumed safely")
    # The whole space as the sweep began it (sweeps before 2026-12-04 recorded only their studies).
    if "space" in saved and (where := search_space.first_difference(saved["space"], search_space.meaning(spec))):
        raise Refusal(f"{spec.path}: {where} differs from the space the sweep in {out} began with; a resume may "
                      f"change only budget.{', budget.'.join(search_space.RESUMABLE)} (to search another space, "
                      "start a new sweep in another --out)")
    unknown = [s.study for s in spec.studies if s.study not in saved["budgets"]]
    if unknown:
        raise Refusal(f"{spec.path}: study {unknown[0]!r} is not part of the sweep in {out}; "
                      "to search another space, start a new sweep (another --out)")
    recorded = saved.get("storage")  # None: the sweep's own SQLite file in --out
    if recorded is None:
        if args.storage:
            raise Refusal(f"--storage {redact(args.storage)}: the sweep in {out} keeps its studies in "
                          f"{out}/optuna.db; resume without --storage")
        if is_remote(out):
            raise Refusal(f"--out {out}: no storage recorded")
        db = Path(store.root) / "optuna.db"
        if not db.is_file():
            raise Refusal(f"--out {out}: its study database optuna.db is missing; the trials cannot be "
                          "resumed without it (start a new sweep in another --out)")
        storage = f"sqlite:///{db}"
    else:
        storage = args.storage or recorded
        if redact(storage) != recorded:
            raise Refusal(f"--storage {redact(storage)}: the sweep in {out} recorded {recorded}; resume with that")
        if "***" in recorded and storage == recorded:
            raise Refusal(f"--out {out}: its storage {recorded} needs the password again: give --storage "
                          f"or ${STORAGE_ENV} with it")
    if (db := sqlite_file(storage)) is not None and not db.exists():
        raise Refusal(f"--storage {redact(storage)}: the sweep in {out} keeps its studies there, and the file is "
                      "missing; the trials cannot be resumed without it")
    check_storage(storage, args.storage_source)
    check_studies(spec, storage, sweep_id=saved["sweep_id"])
    budgets = dict(saved["budgets"])
    if args.num_samples:
        budgets.update({s.study: args.num_samples for s in spec.studies})
    manifest = {**saved, "version": __version__, "budgets": budgets,
                "num_samples": args.num_samples or saved.get("num_samples")}
    return Plan(spec, out, store, storage, manifest, None, resume=True)


def check_studies(spec: search_space.SweepSpec, storage: str, sweep_id: str | None) -> None:
    """Refuse a storage whose studies of these names belong to another sweep or space."""
    import optuna

    from hypersweep.search import StudyMismatch, check_study

    if (db := sqlite_file(storage)) is not None and not db.exists():
        return  # no studies yet (and opening the file would create it)
    rdb = optuna.storages.RDBStorage(storage)
    try:
        names = set(optuna.get_all_study_names(rdb))
        for space in spec.studies:
            if space.study not in names:
                continue
            if sweep_id is None:
                raise Refusal(f"--storage {redact(storage)}: already holds study {space.study!r} of another "
                              "sweep; use another --storage, or another experiment name")
            check_study(spec, space, rdb, sweep_id)
    except StudyMismatch as err:
        raise Refusal(f"--storage {redact(storage)}: {err}") from None
    except Exception as err:  # a database that opens but is not Optuna's
        raise Refusal(f"--storage {redact(storage)}: cannot read its studies ({first_line(err)})") from None
    finally:
        rdb.remove_session()


@dataclasses.dataclass
class Lock:
    """The lock of a local --out, and the directories taking it created (outermost first)."""

    path: Path
    made: list[Path]

    def release(self) -> None:
        """Remove the lock, and the directories it created if they are still empty: a launch that never
        started leaves no --out behind, nor removes an empty one the user made."""
        self.path.unlink(missing_ok=True)
        for directory in reversed(self.made):
            with contextlib.suppress(OSError):
                directory.rmdir()


@dataclasses.dataclass
class Claim:
    """The studies a new sweep created in its storage before anything else, and the SQLite file that
    created (None: it was there)."""

    storage: str
    studies: list[str]
    db: Path | None

    def undo(self) -> None:
        """Delete those studies (no trial has run) and the file, unless another sweep's studies are in it."""
        import optuna

        from hypersweep.search import rdb_storage

        storage = rdb_storage(self.storage)
        try:
            for name in self.studies:
                with contextlib.suppress(KeyError):  # gone already
                    optuna.delete_study(study_name=name, storage=storage)
            others = optuna.get_all_study_names(storage)
        finally:
            storage.remove_session()
            storage.engine.dispose()
        if self.db is not None and not others:
            for path in (self.db, Path(f"{self.db}-wal"), Path(f"{self.db}-shm")):
                path.unlink(missing_ok=True)


def claim_studies(launch: Plan) -> Claim | None:
    """Create a new sweep's studies, stamped with its id, before anything else is written or Ray starts.
    Study names are unique in a storage, so of two sweeps racing for one storage the second is refused
    here, its --out as it was. None for a resume: its studies are its own (check_studies said so)."""
    if launch.resume:
        return None
    import optuna

    from hypersweep.search import StudyMismatch, claim_study, rdb_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in RDB ..."
    db = sqlite_file(launch.storage)
    claim = Claim(launch.storage, [], db if db is not None and not db.exists() else None)
    storage = rdb_storage(launch.storage)
    try:
        for space in launch.spec.studies:
            claim_study(launch.spec, space, storage, launch.manifest["sweep_id"])
            claim.studies.append(space.study)
    except StudyMismatch as err:
        claim.undo()
        raise Refusal(f"--storage {redact(launch.storage)}: {err}") from None
    except Exception as err:  # SQLAlchemy's errors: a database that opened but cannot be written
        with contextlib.suppress(Exception):
            claim.undo()
        raise Refusal(f"--storage {redact(launch.storage)}: cannot create its studies ({first_line(err)})") from None
    finally:
        storage.remove_session()
        storage.engine.dispose()
    return claim


def acquire_lock(out: str) -> Lock | None:
    """One sweep at a time per local --out; a lock left by a dead process is taken over."""
    if is_remote(out):
        return None
    lock = Path(out) / ".lock"
    made = [d for d in (lock.parent, *lock.parent.parents) if not d.exists()][::-1]
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            host, _, pid = lock.read_text().partition(":")
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)
                continue
            raise Refusal(f"--out {out}: another sweep is running into it (process {pid} on {host})") from None
        os.write(fd, f"{socket.gethostname()}:{os.getpid()}".encode())
        os.close(fd)
        return Lock(lock, made)
    raise Refusal(f"--out {out}: could not take the lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def print_frontier(spec: search_space.SweepSpec, out: str, write=print) -> None:
    trials = load_trials(out)
    o = spec.objective
    table = frontier.smallest(trials, o.error_targets or list(frontier.DEFAULT_TARGETS), o.metric, o.report, o.count,
                              epochs=load_epochs(out))
    write(f"\nSmallest architecture per error target ({o.metric} <= target; {o.report} reported):")
    write(frontier.format_table(table, o.count, o.report))
    ratio = frontier.ratios(table, o.count)
    if not ratio["variant"].astype(bool).any():
        ratio = ratio.drop(columns="variant")
    if any("/" in c for c in ratio.columns):
        write(f"\nRatio of {o.count} to the hypernetwork's at equal target:")
        write(ratio.to_string(index=False, formatters={c: "{:,.1f}x".format for c in ratio.columns if "/" in c},
                              na_rep="-"))
    counts = trials.groupby(["family", "status"], observed=True).size().unstack(fill_value=0)
    write(f"\n{len(trials)} trials in {out}/trials ({', '.join(f'{k}: {v}' for k, v in counts.sum().items())})")


class Stopped(Exception):
    """The sweep was asked to stop (Ctrl-C or SIGTERM) before every trial was done."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before the sweep's lock was taken (or after it was released)
        print("\ninterrupted before the sweep started: nothing to resume", file=sys.stderr)
        return 128 + stop_signal(signal.SIGINT)


def stop_signal(default: int) -> int:
    """The signal that stopped the sweep: the first SIGTERM or SIGHUP received, else `default`."""
    return received[0] if received else default


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            launch = dataclasses.replace(plan(args, Path(scratch)), address=args.address)
        except (ConfigError, Refusal) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except OSError as err:  # a file we only read (the space, --out's manifest) that cannot be read
            print(f"error: {err.filename or ''}: {err.strerror or first_line(err)}", file=sys.stderr)
            return 2
        return start(launch, args)


def start(launch: Plan, args: argparse.Namespace) -> int:
    """Run a planned launch: take --out's lock, claim the studies, then start Ray and the sweep. A refusal
    or a stop before the sweep is recorded in --out removes what this launch created, and only that."""
    try:
        lock = acquire_lock(launch.out)
    except Refusal as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: --out {launch.out}: {err.strerror or first_line(err)}", file=sys.stderr)
        return 2
    claim = signum = None
    try:
        claim = claim_studies(launch)
        return _run(launch, args)
    except KeyboardInterrupt:
        signum = stop_signal(signal.SIGINT)
    except Stopped as stop:
        signum = stop.signum
    except Refusal as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        say(launch.out, f"error: {launch.out}: {first_line(err)}; free the space or fix the permissions, "
                        f"then continue with  {resume_command(launch)}", err=True)
        return 1
    finally:
        if claim and launch.store.read_text(MANIFEST) is None:  # the sweep never started: nobody's studies
            claim.undo()
        if lock:
            lock.release()
    if launch.store.read_text(MANIFEST) is not None:
        say(launch.out, f"\ninterrupted{' (hang-up)' if signum == signal.SIGHUP else ''}: continue with  "
                        f"{resume_command(launch)}", err=True)
    else:
        print("\ninterrupted before the sweep started: nothing to resume", file=sys.stderr)
    return 128 + signum


def say(out: str, line: str, err: bool = False) -> None:
    """Print a line of the sweep's own and keep it in OUT/launch.log (a local --out), so that what a
    driver said survives its terminal: a `ray submit` whose SSH connection closed, a closed laptop.

    It takes the output directory alone: the progress callback that calls it is pickled into Tune's
    experiment state, where nothing may hold the storage URL (a password)."""
    with contextlib.suppress(OSError):  # a terminal gone since (before SIGHUP arrived)
        print(line, file=sys.stderr if err else sys.stdout, flush=True)
    if not is_remote(out):
        with contextlib.suppress(OSError), open(Path(out) / LOG, "a") as fh:
            fh.write(line.lstrip("\n") + "\n")


def resume_command(launch: Plan) -> str:
    """The command that continues this sweep, to paste where it ran: the head of a cluster (with the
    same `--address`; the output directory made absolute, as `ray submit` runs from the home directory),
    or this machine. The storage is recorded; its password is not."""
    needs_password = "***" in (launch.manifest.get("storage") or "")
    out = launch.out
    if launch.address is not None and not is_remote(out):
        out = str(Path(out).resolve())
    return (f"python -m hypersweep.launch --resume --out {out}"
            + (f" --address {launch.address}" if launch.address is not None else "")
            + (f"  (with ${STORAGE_ENV} or --storage giving the password)" if needs_password else ""))


def _run(launch: Plan, args: argparse.Namespace) -> int:
    """Join or start Ray, record the sweep in --out, run every study in one Tuner, print the answer."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own one line per trial instead of Tune's tables
    import optuna

    from hypersweep import cluster

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A failed trial is one progress line with its error's last line, and its error column; Tune would
    # also log each failure's whole traceback, every retry's included.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    spec = launch.spec
    try:
        resources = cluster.connect(args.address)
        try:
            cluster.check_fits(spec.resources.cpus, spec.resources.gpus)
            return _sweep(launch, args, resources)
        finally:
            cluster.disconnect()
    except cluster.ClusterError as err:
        raise Refusal(str(err)) from None


def _sweep(launch: Plan, args: argparse.Namespace, resources: dict[str, float]) -> int:
    """On a connected Ray: record the sweep in --out, run every study in one Tuner, print the answer."""
    spec, store = launch.spec, launch.store
    install_stop_handlers()
    if launch.space_text is not None:
        store.write_text(SPACE_COPY, launch.space_text)
    store.write_text(MANIFEST, json.dumps(launch.manifest, indent=2))
    shown = launch.manifest["storage"] or f"sqlite:///{Path(store.root) / 'optuna.db'}"
    packing = f"packs of up to {spec.pack}" if spec.pack > 1 else "no packing"
    say(launch.out, f"hypersweep {__version__}: {spec.experiment} -> {launch.out} "
                    f"({len(spec.studies)} studies; {packing}; Ray: {resources.get('CPU', 0):g} CPUs, "
                    f"{resources.get('GPU', 0):g} GPUs; Optuna: {shown}; source {source_id()})")
    from hypersweep.search import StudyMismatch
    from hypersweep.sweep import run_sweep

    try:
        owed = run_sweep(spec, launch.out, launch.storage, launch.manifest["sweep_id"], launch.manifest["budgets"],
                         args.max_concurrent, log=functools.partial(say, launch.out))
    except StudyMismatch as err:
        raise Refusal(str(err)) from None
    if owed:
        raise Stopped(stop_signal(signal.SIGINT))
    print_frontier(spec, launch.out, write=functools.partial(say, launch.out))
    trials = load_trials(launch.out)
    if not (trials["status"] != "failed").any():
        say(launch.out, f"error: every trial failed (see the error column of {launch.out}/trials)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
