"""`results_scale`: how a sweep's results read back at 100,000 trials, compacted, against one file per trial.

Synthetic trials (the quickstart's three families, widths and learning rates drawn at random, a
10-epoch curve each) are written through the sweep's own recording path,
`hypersweep.results.ResultStore.write_trial`, into two stores side by side:

- **compacted** (today's layout): small files merged as they gather, then one file per family at
  the end of the sweep (`ResultStore.compact(final=True)`);
- **one file per trial** (the layout before compaction): the same store with merging turned off and
  each file encoded as it was then (pyarrow's defaults; a small file is now written plainly, as it
  lives only until its merge).

Figures: the time `pd.read_parquet(OUT/trials)` takes (best of 3), also with DuckDB and Polars
where installed, bytes on disk per trial row, and the driver's write cost per trial (compactions
included, amortised): wall and CPU seconds over all trials, the two layouts written 100 trials at a
time in turn at equal rows, each by its own process; the median of 3 such rounds (fresh stores each).
`ratio` is the one-file-per-trial read time over the compacted one at equal rows; the goals (all must
hold for `met`): 100,000 compacted rows read by pandas in <= 5 s, ratio >= 10, <= 1 KB per row, and a
write cost per trial no higher than one file per trial's.

    [TMPDIR=PATH] python -m benchmarks.results_scale [tiny|quick|full]   # prints JSON; stores under PATH
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from benchmarks.measure import Result, Size
from hypersweep.results import ResultStore, load_trials
from hypersweep.search_space import load

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "search_spaces" / "quickstart.yaml"
# size -> (trials in the compacted store, trials at which both layouts are compared)
SIZES: dict[str, tuple[int, int]] = {"tiny": (300, 100), "quick": (10_000, 2_000), "full": (100_000, 20_000)}
GOAL_RATIO, GOAL_READ_S, GOAL_BYTES = 10.0, 5.0, 1024
EPOCHS = 10
NEVER = 10**9  # merge_at for the one-file-per-trial layout
ROUNDS: dict[str, int] = {"tiny": 1, "quick": 3, "full": 3}  # rounds of the write-cost comparison


def filler(out: str, merge_at: int | None):
    """A generator that writes the next `n` synthetic trials into a store at `out` each time it is sent
    `n` (0: end the sweep); it yields the driver's wall and CPU seconds for them."""
    from hypersweep.tasks import load_config
    spec = load(str(SPACE), build_tasks=True)
    rng = random.Random(0)
    # The layout before compaction also encoded each file with pyarrow's defaults.
    store = ResultStore(out) if merge_at is None else ResultStore(out, merge_at=merge_at, small_files={})
    number, seconds = 0, (0.0, 0.0)
    while True:
        n = yield seconds
        cases = []
        for _ in range(n):  # drawn outside the timing: the benchmark's own work, not the driver's
            space = spec.studies[number % len(spec.studies)]
            values = {p.name: rng.randint(int(p.low), int(p.high)) if p.kind == "int" else
                      rng.uniform(p.low, p.high) if p.kind == "float" else rng.choice(p.choices) for p in space.params}
            cases.append((space, load_config(space.config(values)), number, rng.random()))
            number += 1
        started, cpu = time.perf_counter(), time.process_time()
        for space, cfg, trial, error in cases:
            store.write_trial(space.family, space.study, cfg, row(spec, space, trial, error, rng), curve(error))
        if n == 0 and merge_at is None:
            store.compact(final=True)  # what the end of a sweep does
        seconds = time.perf_counter() - started, time.process_time() - cpu


def row(spec, space, number: int, error: float, rng: random.Random) -> dict:
    return {"experiment": spec.experiment, "study": space.study, "variant": space.label, "trial": number,
            "trial_id": f"{number:08x}", "status": "ok", "val_error": error, "test_error": error * 1.1,
            "params_primary": rng.randint(10, 10_000), "params_total": rng.randint(10, 100_000), "epochs": EPOCHS,
            "seed": 0, "seeds": 1, "retries": 0, "wall_s": rng.random() * 60, "device": "cpu", "node": "head",
            "pack": number, "pack_size": 1, "git_commit": "0" * 40 + "+sha256:" + "0" * 16,
            "started_at": datetime.now(timezone.utc), "finished_at": datetime.now(timezone.utc)}


def curve(error: float) -> list[dict]:
    return [{"epoch": e, "val_error": error + 1 / e, "train_loss": error + 2 / e} for e in range(1, EPOCHS + 1)]


def fill_side_by_side(outs: dict[str, int | None], trials: int, chunk: int = 100) -> dict[str, tuple[float, float]]:
    """Write `trials` trials into each store, `chunk` at a time in turn, and return each store's wall and
    CPU seconds per trial: all its chunks and its final merge over all its trials.

    Small chunks in turn put both sides under the same swings of the machine (flushing what was
    written, load from elsewhere). Each store is written by its own process, as a sweep's driver
    writes its own, so one side's heap (and the garbage collections it triggers) does not bill the
    other. Totals, not a median chunk: a merge lands in some chunks only, and its cost counts."""
    writers = {out: subprocess.Popen([sys.executable, "-m", "benchmarks.results_scale", "--fill", out, str(merge_at)],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
               for out, merge_at in outs.items()}

    def send(writer: subprocess.Popen, n: int) -> tuple[float, float]:
        writer.stdin.write(f"{n}\n")
        writer.stdin.flush()
        wall, cpu = writer.stdout.readline().split()
        return float(wall), float(cpu)

    seconds = {out: (0.0, 0.0) for out in outs}

    def add(out: str, n: int) -> None:
        wall, cpu = send(writers[out], n)
        seconds[out] = (seconds[out][0] + wall, seconds[out][1] + cpu)

    try:
        for writer in writers.values():
            send(writer, 50)  # imports and caches, outside either side's figure (its trials stay in the store)
        for done in range(0, trials, chunk):
            for out in outs:
                add(out, min(chunk, trials - done))
        for out in outs:
            add(out, 0)  # the end of the sweep: the final merge
    finally:
        for writer in writers.values():
            writer.stdin.close()
            writer.wait()
    return {out: (wall / trials, cpu / trials) for out, (wall, cpu) in seconds.items()}


def serve_fill(out: str, merge_at: str) -> None:
    """The writer process of `fill_side_by_side`: `n` on a line in, the wall and CPU seconds those n took out."""
    fill = filler(out, None if merge_at == "None" else int(merge_at))
    next(fill)
    for line in sys.stdin:
        print(*fill.send(int(line)), flush=True)


def read_time(out: str, reader) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        rows = reader(out)
        best = min(best, time.perf_counter() - started)
    assert rows == expected_rows(out), (rows, out)
    return best


def expected_rows(out: str) -> int:
    return len(load_trials(out))


def by_pandas(out: str) -> int:
    return len(pd.read_parquet(Path(out) / "trials"))


def by_duckdb(out: str) -> int:
    import duckdb
    return duckdb.sql(f"select count(*) from read_parquet('{out}/trials/*/*.parquet', hive_partitioning = true)"
                      ).fetchall()[0][0]


def by_polars(out: str) -> int:
    import polars
    return polars.read_parquet(f"{out}/trials/*/*.parquet", hive_partitioning=True).height


def bytes_per_row(out: str) -> float:
    files = [p for p in (Path(out) / "trials").rglob("*.parquet")]
    return sum(p.stat().st_size for p in files) / expected_rows(out)


def file_system(path: str) -> str:
    """The type of the file system `path` is on, from /proc/mounts (Linux; "unknown" elsewhere): file
    creation costs differ between them (see run)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    path = str(Path(path).resolve())
    found = max((m for m in mounts if path == m[0] or path.startswith(m[0].rstrip("/") + "/")),
                key=lambda m: len(m[0]), default=None)
    return found[1] if found else "unknown"


def run(size: Size) -> Result:
    """Measure in a temporary directory: under $TMPDIR, so `TMPDIR=PATH` picks the file system."""
    many, equal = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        old, small, big = f"{tmp}/per_trial", f"{tmp}/compacted_equal", f"{tmp}/compacted"
        # The write cost is the median of rounds, each a fresh pair of stores written in turn. No store is
        # deleted before the end: on an ext4 without a journal, the kernel skips inodes freed in the last
        # half minute when it makes a file, one by one, so deleting thousands would bill the next round.
        rounds = []
        for k in range(ROUNDS[size]):
            pair = (old, small) if k == 0 else (f"{tmp}/per_trial_{k}", f"{tmp}/compacted_equal_{k}")
            writes = fill_side_by_side({pair[0]: NEVER, pair[1]: None}, equal)
            rounds.append((writes[pair[0]], writes[pair[1]]))
        middle = sorted(rounds, key=lambda r: r[1][0] / r[0][0])[len(rounds) // 2]
        (old_write, old_cpu), (small_write, small_cpu) = middle
        big_write = fill_side_by_side({big: None}, many)[big][0]
        old_read, small_read = read_time(old, by_pandas), read_time(small, by_pandas)
        details = {"trials": many, "equal_rows": equal, "file_system": file_system(tmp),
                   "pandas_s": round(read_time(big, by_pandas), 3),
                   "per_trial_pandas_s": round(old_read, 3), "compacted_pandas_s": round(small_read, 3),
                   "bytes_per_row": round(bytes_per_row(big)), "per_trial_bytes_per_row": round(bytes_per_row(old)),
                   "write_ms": round(small_write * 1e3, 3), "per_trial_write_ms": round(old_write * 1e3, 3),
                   "write_cpu_ms": round(small_cpu * 1e3, 3), "per_trial_write_cpu_ms": round(old_cpu * 1e3, 3),
                   "write_ratio_by_round": [round(c[0] / o[0], 3) for o, c in rounds],
                   "write_ms_at_all_trials": round(big_write * 1e3, 3),
                   "files": sum(1 for _ in (Path(big) / "trials").rglob("*.parquet"))}
        for name, reader in (("duckdb", by_duckdb), ("polars", by_polars)):
            try:
                details[f"{name}_s"] = round(read_time(big, reader), 3)
            except ImportError:
                details[f"{name}_s"] = "not installed"
    ratio = old_read / small_read
    met = (ratio >= GOAL_RATIO and details["bytes_per_row"] <= GOAL_BYTES and details["write_ms"] <= details["per_trial_write_ms"]
           and (size != "full" or details["pandas_s"] <= GOAL_READ_S))
    return Result(small_read, old_read, "s read", ratio, GOAL_RATIO, met, details)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fill"]:
        serve_fill(*sys.argv[2:4])
        sys.exit()
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "quick").as_json(), indent=1))
