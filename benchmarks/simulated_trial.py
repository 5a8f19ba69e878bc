"""The trials `sweep_scale` runs on each slot: answers from the tabulated teacher benchmark.

`simulated` (one configuration per Tune trial) sleeps as long as the architecture took to
train when the table was built (`wall_s`, times `HYPERSWEEP_SIM_SCALE`), reporting at the
scheduler's rung epochs on the way, then reports the table's errors as its result. The
learning rate (searched in the benchmark so that no study runs out of new points) and the
seed perturb the errors a little, deterministically.

`simulated_pack` is the same for a pack of configurations (`hypersweep.sweep.run_pack`'s
reports and early stopping): an epoch of the pack sleeps its live members' table time for
one epoch, summed, divided by the speedup `train_pack` was measured to give a pack of that
many members (`pack_speedup`, from data/pack_speedup.json: `python -m benchmarks.sweep_scale
--measure-packing`).

Run on every Ray worker of the simulated cluster, so it imports only ray, the standard
library and pyarrow (to read the table once per worker process): no torch, no trainer, no
`hypersweep` module (64 workers importing torch would need ~14 GiB here).
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
import zlib
from pathlib import Path

import ray
from ray import tune

TABLE = Path(__file__).resolve().parent / "data" / "tabulated_teacher.parquet"
# train_pack's measured speedup over its members trained one after another (sweep_scale --measure-packing)
PACKING = Path(__file__).resolve().parent / "data" / "pack_speedup.json"
SCALE_ENV = "HYPERSWEEP_SIM_SCALE"  # trial time = the recorded wall_s times this
EPOCHS = 30  # epochs of the table's trials (benchmarks/tabulated_teacher.yaml)
WIDTH, DEPTH, LR, SEED = "model.primary.width", "model.primary.depth", "train.lr", "train.seed"
_rows: dict[tuple[int, int], dict] | None = None
_extra_member_cost: dict[str, float] | None = None  # depth -> c


def rows() -> dict[tuple[int, int], dict]:
    """The table by (width, depth), read once per process."""
    global _rows
    if _rows is None:
        import pyarrow.parquet as pq

        table = pq.read_table(TABLE).to_pylist()
        _rows = {(r["config.model.primary.width"], r["config.model.primary.depth"]): r for r in table}
    return _rows


def jitter(*key) -> float:
    """A deterministic number in [0, 1) for `key`."""
    return (zlib.crc32(repr(key).encode()) % 100_000) / 100_000


def answer(config: dict) -> tuple[dict, float]:
    """The table's result for `config` (errors perturbed by lr and seed) and the seconds to sleep."""
    row = rows()[(config[WIDTH], config[DEPTH])]
    lr = config.get(LR, 0.003)
    seed = config.get(SEED, 0)
    factor = (1 + 0.15 * abs(math.log10(lr / 0.003))) * (1 + 0.05 * (jitter(row["key"], seed) - 0.5))
    result = {k: row[k] for k in ("params_primary", "params_conditioner", "params_total")}
    result.update(val_error=row["val_error"] * factor, test_error=row["test_error"] * factor)
    return result, row["wall_s"] * float(os.environ.get(SCALE_ENV, "1"))


def simulated(config: dict, spaces: dict | None = None, report_epochs: dict | None = None) -> None:
    """A Tune trainable with `hypersweep.sweep.run_trial`'s reports, answered from the table."""
    started = time.time()
    result, seconds = answer(config)
    rungs = sorted((report_epochs or {}).get(config["study"], ()))
    # node_id carries the worker's pid too, so that the benchmark can follow each slot's trials
    meta = {"node": socket.gethostname(), "node_id": f"{ray.get_runtime_context().get_node_id()}:{os.getpid()}",
            "threads": 1,
            "device": "cpu", "started_at": started}
    history: list[dict] = []
    for epoch in range(1, EPOCHS + 1):
        # The error falls towards the table's value; the trial sleeps its share of the time per epoch.
        val = result["val_error"] * (1 + 2 * (1 - epoch / EPOCHS) ** 2)
        history.append({"epoch": epoch, "val_error": val, "train_loss": val})
        time.sleep(max(0.0, started + seconds * epoch / EPOCHS - time.time()))
        if epoch in rungs:
            tune.report({"epoch": epoch, "val_error": val, **meta, "wall_s": time.time() - started,
                         "history": history.copy()})
            history.clear()
    tune.report({**result, **meta, "final": True, "status": "ok", "epoch": EPOCHS, "train_loss": result["val_error"],
                 "wall_s": time.time() - started, "samples_per_s": 0.0, "history": history})


def pack_speedup(members: int, depth: int) -> float:
    """How many times faster `train_pack` trains `members` configurations of one depth than `train`
    one after another: k / (1 + c (k - 1)), c fitted per depth on packs of the table's architectures
    (see `PACKING`)."""
    global _extra_member_cost
    if _extra_member_cost is None:
        if not PACKING.exists():
            raise FileNotFoundError(f"{PACKING}: measure it first (python -m benchmarks.sweep_scale --measure-packing)")
        _extra_member_cost = json.loads(PACKING.read_text())["extra_member_cost"]
    return members / (1 + _extra_member_cost[str(depth)] * (members - 1))


def simulated_pack(config: dict, spaces: dict | None = None, report_epochs: dict | None = None,
                   metric: str = "val_error", rungs: str | None = None) -> None:
    """A Tune trainable with `hypersweep.sweep.run_pack`'s reports for a pack, answered from the table.

    Members are judged by the `Rungs` actor named `rungs` at their study's rung epochs, and a
    stopped one is reported at once as `pruned`; the rest are reported together at the end.
    Each member's `wall_s` is its share of the pack's time, as `train_pack` splits it (so the
    members' times add up to the pack's).
    """
    started = time.time()
    study, members = config["study"], config["pack"]
    answers = [answer(m["params"]) for m in members]
    depth = members[0]["params"][DEPTH]  # shared by a pack's members (part of hypersweep.packing.pack_key)
    rung_epochs = frozenset((report_epochs or {}).get(study, ()))
    judge = ray.get_actor(rungs) if rungs else None
    meta = {"node": socket.gethostname(), "node_id": f"{ray.get_runtime_context().get_node_id()}:{os.getpid()}",
            "threads": 1, "device": "cpu", "started_at": started,
            "pack": min(m["number"] for m in members), "pack_size": len(members)}
    live = list(range(len(members)))
    share = [0.0] * len(members)
    history: list[list[dict]] = [[] for _ in members]
    planned = started  # when the current epoch ends: sleeping to a plan absorbs the rungs' round trips

    def val(m: int, epoch: int) -> float:
        return answers[m][0]["val_error"] * (1 + 2 * (1 - epoch / EPOCHS) ** 2)  # as `simulated`'s curve

    def report(done: list[dict], final: bool = False) -> None:
        best = min((r["val_error"] for r in done), default=math.nan)
        tune.report({metric: best, "final": final, "members": done})

    def member(m: int, status: str, epoch: int) -> dict:
        result = {**answers[m][0], "val_error": val(m, epoch)}
        if status != "ok":
            result.pop("test_error")  # stopped before the test set
        return {**result, **meta, "status": status, "epoch": epoch, "epochs": epoch, "train_loss": val(m, epoch),
                "wall_s": share[m], "samples_per_s": 0.0, "number": members[m]["number"], "history": history[m]}

    epoch = 0
    for epoch in range(1, EPOCHS + 1):
        seconds = sum(answers[m][1] for m in live) / EPOCHS / pack_speedup(len(live), depth)
        planned += seconds
        for m in live:
            share[m] += seconds / len(live)
            history[m].append({"epoch": epoch, "val_error": val(m, epoch), "train_loss": val(m, epoch)})
        time.sleep(max(0.0, planned - time.time()))
        if judge is not None and epoch in rung_epochs:
            stop = set(ray.get(judge.judge.remote(study, epoch, {m: val(m, epoch) for m in live})))
            if stop:
                report([member(m, "pruned", epoch) for m in live if m in stop])
                live = [m for m in live if m not in stop]
        if not live:
            break
    report([member(m, "ok", epoch) for m in live], final=True)


def replay(config: dict) -> None:
    """A bare Tune trainable that sleeps `config["seconds"]`, reporting `config["reports"]` times on the way
    (the baseline `sweep_scale --tune-alone` runs the sweep's own trials through plain Ray Tune)."""
    started = time.time()
    config = config.get("trial", config)
    reports = max(1, config["reports"])
    for k in range(1, reports + 1):
        time.sleep(max(0.0, started + config["seconds"] * k / reports - time.time()))
        tune.report({"k": k, "started_at": started, "wall_s": time.time() - started, "pid": os.getpid()})
