"""Writes trials FIRST..LAST-1 of two families through a ResultStore that compacts every MERGE_AT small
files, as a sweep's driver does; tests kill it at a compaction's failpoints and read beside it.

    python tests/compaction_writer.py OUT FIRST LAST MERGE_AT FAN_IN
"""
import sys
from datetime import datetime, timezone

from hypersweep.results import ResultStore
from hypersweep.tasks import load_config

FAMILIES = ("hyper", "standard")


def row(family: str, trial: int) -> dict:
    return {"experiment": "x", "study": f"x-{family}", "variant": "", "trial": trial, "trial_id": f"r{trial}",
            "status": "ok", "val_error": 1 / (trial + 1), "params_primary": 17, "params_conditioner": 5,
            "params_total": 22, "epochs": 3, "retries": 0, "finished_at": datetime.now(timezone.utc)}


def curve(trial: int) -> list[dict]:
    return [{"epoch": e, "val_error": 1 / (trial + e), "train_loss": 1.0} for e in (1, 2, 3)]


def write(out: str, first: int, last: int, merge_at: int, fan_in: int) -> ResultStore:
    store = ResultStore(out, merge_at=merge_at, fan_in=fan_in)
    cfgs = {f: load_config({"task": {"name": "teacher"}, "model": {"family": f}}) for f in FAMILIES}
    for trial in range(first, last):
        for family in FAMILIES:
            if trial in store.finished(family, f"x-{family}"):  # a resume: written before the kill
                continue
            store.write_trial(family, f"x-{family}", cfgs[family], row(family, trial), curve(trial))
    return store


if __name__ == "__main__":
    out, *numbers = sys.argv[1:]
    write(out, *map(int, numbers))
