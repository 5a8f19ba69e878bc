"""Run a sweep: `python -m hypersweep.launch [SPACE.yaml] [--out DIR] [--resume] ...`

On a laptop it starts an embedded Ray on all local CPUs; on a cluster it joins the
running one (`--address auto`, or RAY_ADDRESS), e.g. through
`ray submit CLUSTER.yaml hypersweep/launch.py -- SPACE.yaml --out s3://bucket/run`.
"""
from __future__ import annotations

if __package__ in (None, ""):  # run as a script path (ray submit): import the installed package
    import sys
    from pathlib import Path

    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

from hypersweep import __version__, frontier, search_space
from hypersweep.config import ConfigError
from hypersweep.results import ResultStore, load_trials

DEFAULT_SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "quickstart.yaml"
MANIFEST = "sweep.json"
SPACE_COPY = "space.yaml"  # the search space a sweep ran, kept in its --out for --resume


class Refusal(Exception):
    """A launch that must not start (bad paths, a busy or foreign --out)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hypersweep.launch", description=__doc__.splitlines()[0])
    p.add_argument("space", nargs="?", help=f"search-space YAML (default: {DEFAULT_SPACE.name}; "
                                            f"with --resume: the one saved in --out)")
    p.add_argument("--out", help="results directory or URI (default: results/<experiment>)")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="Ray cluster to join ('auto' for the local cluster); default: an embedded local Ray")
    p.add_argument("--num-samples", type=int, help="trials per family (overrides budget.trials)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (overrides budget.max_concurrent)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/optuna.db)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep in --out")
    args = p.parse_args(argv)
    for name in ("num_samples", "max_concurrent"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def check_out(store: ResultStore, out: str, resume: bool) -> None:
    """Refuse paths that could mix two experiments or escape where the user pointed."""
    if ".." in out.split("/"):
        raise Refusal(f"--out {out}: paths with '..' are refused; give the directory plainly")
    if "://" not in out and Path(out).exists() and not Path(out).is_dir():
        raise Refusal(f"--out {out}: exists and is not a directory")
    has_sweep = store.read_text(MANIFEST) is not None
    if resume and not has_sweep:
        raise Refusal(f"--out {out}: no sweep to resume there ({MANIFEST} missing)")
    if not resume and not store.is_empty():
        what = "already holds a sweep; pass --resume to continue it" if has_sweep else "is not empty"
        raise Refusal(f"--out {out}: {what}, or choose another --out")


def check_storage(url: str) -> None:
    """Open the Optuna storage once, so a bad URL is refused before any compute."""
    import optuna

    try:
        optuna.storages.RDBStorage(url).remove_session()
    except Exception as err:  # SQLAlchemy raises many kinds: a missing driver, a refused connection, ...
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise Refusal(f"--storage {url}: cannot open it ({message})") from None


def acquire_lock(out: str) -> Path | None:
    """One sweep at a time per local --out; a lock left by a dead process is taken over."""
    if "://" in out:
        return None
    lock = Path(out) / ".lock"
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
        return lock
    raise Refusal(f"--out {out}: could not take the lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_space(args: argparse.Namespace, scratch: Path) -> str:
    """The space file to run: as given, else (resuming) the one saved in --out, else quickstart."""
    if args.space:
        return args.space
    if args.resume and args.out:
        if "://" not in args.out:
            return str(Path(args.out) / SPACE_COPY)
        saved = ResultStore(args.out).read_text(SPACE_COPY)
        if saved is not None:
            (scratch / SPACE_COPY).write_text(saved)
            return str(scratch / SPACE_COPY)
    return str(DEFAULT_SPACE)


def print_frontier(spec: search_space.SweepSpec, out: str) -> None:
    trials = load_trials(out)
    o = spec.objective
    targets = o.error_targets or [0.1, 0.01]
    table = frontier.smallest(trials, targets, o.metric, o.report, o.count)
    print(f"\nSmallest architecture per error target ({o.metric} <= target; {o.report} reported):")
    print(frontier.format_table(table, o.count, o.report))
    ratio = frontier.ratios(table, o.count)
    if not ratio["variant"].astype(bool).any():
        ratio = ratio.drop(columns="variant")
    if any("/" in c for c in ratio.columns):
        print(f"\nRatio of {o.count} to the hypernetwork's at equal target:")
        print(ratio.to_string(index=False, formatters={c: "{:,.1f}x".format for c in ratio.columns if "/" in c},
                              na_rep="-"))
    counts = trials.groupby(["family", "status"], observed=True).size().unstack(fill_value=0)
    print(f"\n{len(trials)} trials in {out}/trials ({', '.join(f'{k}: {v}' for k, v in counts.sum().items())})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        space_path = resolve_space(args, Path(scratch))
        try:
            spec = search_space.load(space_path)
            out = args.out or f"results/{spec.experiment}"
            store = ResultStore(out)
            check_out(store, out, args.resume)
            if "://" in out and not args.storage:
                raise Refusal(f"--out {out}: a remote --out needs --storage (an Optuna RDB URL, e.g. postgresql://)")
            saved = json.loads(store.read_text(MANIFEST) or "{}")
            if saved and saved["experiment"] != spec.experiment:
                raise Refusal(f"--out {out}: holds experiment {saved['experiment']!r}, not {spec.experiment!r}")
            if args.storage:
                check_storage(args.storage)
            lock = acquire_lock(out)
        except (ConfigError, Refusal) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        try:
            return _run(spec, out, store, args, None if saved else Path(space_path).read_text())
        except KeyboardInterrupt:
            print(f"\ninterrupted: continue with  python -m hypersweep.launch --resume --out {out}", file=sys.stderr)
            return 130
        finally:
            if lock:
                lock.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # leave no empty --out behind a launch that never started
                    lock.parent.rmdir()


def _run(spec: search_space.SweepSpec, out: str, store: ResultStore, args: argparse.Namespace,
         space_text: str | None) -> int:
    """Join or start Ray, record a new sweep's space in --out, run every study, print the answer."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own one line per trial instead of Tune's tables
    import optuna
    import ray

    from hypersweep.sweep import run_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = args.storage or f"sqlite:///{Path(store.root) / 'optuna.db'}"
    if not ray.is_initialized():
        try:
            ray.init(address=args.address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, ValueError) as err:
            print(f"error: --address {args.address}: cannot join that Ray cluster ({err})", file=sys.stderr)
            return 2
    if space_text is not None:
        store.write_text(SPACE_COPY, space_text)
        store.write_text(MANIFEST, json.dumps({"experiment": spec.experiment, "version": __version__,
                                               "studies": [s.study for s in spec.studies]}, indent=2))
    resources = ray.cluster_resources()
    print(f"hypersweep {__version__}: {spec.experiment} -> {out} "
          f"(Ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; Optuna: {storage})", flush=True)
    for space in spec.studies:
        trials = args.num_samples or spec.trials(space)
        run_study(spec, space, out, storage, trials, args.max_concurrent, log=lambda line: print(line, flush=True))
    print_frontier(spec, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
