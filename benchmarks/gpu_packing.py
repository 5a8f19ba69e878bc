"""`gpu_packing`: member trials trained per second in packs of K on one device, vs one trial at a time.

On a GPU a tiny model's step is kernel launches, not arithmetic, so one trial per process
leaves the device almost idle; a pack (`hypersweep.train.train_pack`) trains K configurations
with the same launches. This measures that on the teacher_scaling experiment's task
(`search_spaces/teacher_scaling.yaml`: its fixed task, model and train sections, the mlp
teacher) at its small widths, with fewer epochs:

- hyper: g of widths 1-16 (conditioner 128 x 2, as the space fixes it);
- standard: N of widths 2-32;

each at depth 1, with learning rates spread over the space's range (per member in a pack).
For K in (64, 256) a pack of K such members is timed (best of two after a warm-up); the
baseline trains a sample of the same members one after another with `train` on the same
device, and `per_process` adds what starting a fresh trial process costs (Python, importing
torch and the trainer, and on a GPU creating the CUDA context), measured once with a
subprocess: what one trial per process pays. Packs are formed as
`hypersweep.packing.plan_packs` forms them on a GPU, so a K too wide for its activation cap
would show up as several packs.

    python -m benchmarks.gpu_packing [--device cuda|cpu] [--quick]   # prints one JSON

With `--device cuda` (the default) and no CUDA device it prints one line and exits 2.
`--device cpu --quick` is a smoke run (packs of 16 and 64, one epoch, a smaller task) for a
machine without a GPU: its figures say nothing about a GPU. Not part of `benchmarks.run`
(CI has no GPU).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "search_spaces" / "teacher_scaling.yaml"
WIDTHS = {"hyper": (1, 16), "standard": (2, 32)}  # the small end of each family's width range
# size -> (pack sizes K, epochs, members trained one at a time, train_instances or None for the space's)
SIZES = {"full": ((64, 256), 5, 16, None), "quick": ((16, 64), 1, 4, 500)}


def configs(family: str, count: int, epochs: int, device: str, train_instances: int | None) -> list:
    """`count` configurations of `family` at depth 1: widths cycling over WIDTHS, lrs log-spaced."""
    from hypersweep.tasks import load_config

    space = yaml.safe_load(SPACE.read_text())
    searched = space["families"][family]
    low, high = WIDTHS[family]
    lr = searched["train"]["lr"]
    task = {**space["task"], "target": "mlp"}  # the experiment's generic teacher (its variants' first)
    if train_instances:
        task["train_instances"] = train_instances
    cfgs = []
    for m in range(count):
        model = {**space["model"], "family": family, "primary": {"width": low + m % (high - low + 1), "depth": 1}}
        if "conditioner" in searched:
            model["conditioner"] = searched["conditioner"]
        rate = math.exp(math.log(lr["low"]) + (math.log(lr["high"]) - math.log(lr["low"])) * (m % 7) / 6)
        cfgs.append(load_config({"task": task, "model": model,
                                 "train": {**space["train"], "epochs": epochs, "lr": rate, "device": device}}))
    return cfgs


def process_start_s(device: str) -> float:
    """Seconds a fresh trial process takes before it can train: Python, torch, the trainer, the device."""
    touch = "torch.zeros(1, device='cuda'); torch.cuda.synchronize()" if device == "cuda" else "torch.zeros(1)"
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import torch, hypersweep.train; {touch}"], cwd=ROOT, check=True)
        best = min(best, time.perf_counter() - start)
    return best


def measure(device: str, size: str) -> dict:
    import torch

    from benchmarks.measure import best_times, synchronize, torch_threads
    from hypersweep.packing import ACTIVATION_CAP, plan_packs
    from hypersweep.tasks import build_task
    from hypersweep.train import train, train_pack

    ks, epochs, alone_count, train_instances = SIZES[size]
    name = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    start_s = process_start_s(device)
    threads = torch.get_num_threads() if device == "cuda" else 1  # on a shared CPU: one thread, as a 1-CPU trial
    figures: dict[str, dict] = {}
    with torch_threads(threads):
        for family in WIDTHS:
            cfgs = configs(family, max(ks), epochs, device, train_instances)
            task = build_task(cfgs[0].task)
            # One at a time: a sample spread over the widths, after one warm-up trial (kernels, caches)
            sample = cfgs[:: max(1, len(cfgs) // alone_count)][:alone_count]
            train(sample[0], task=task)
            synchronize()
            begin = time.perf_counter()
            for cfg in sample:
                train(cfg, task=task)
            synchronize()
            alone_s = (time.perf_counter() - begin) / len(sample)
            row = {"alone_s_per_trial": round(alone_s, 4), "alone_trials_per_s": round(1 / alone_s, 2),
                   "per_process_trials_per_s": round(1 / (alone_s + start_s), 3)}
            for k in ks:
                dims = (task.dim_i, task.dim_x, task.dim_out)
                cap = ACTIVATION_CAP["gpu" if device == "cuda" else "cpu"]
                packs = plan_packs(cfgs[:k], dims, task.train.points, k, cap)
                groups = [[cfgs[i] for i in pack] for pack in packs]
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                (packed_s,) = best_times([lambda: [train_pack(g, task=task) for g in groups]], 2)  # noqa: B023
                row[f"K{k}"] = {"packs": len(groups), "seconds": round(packed_s, 3),
                                "trials_per_s": round(k / packed_s, 2),
                                "vs_sequential": round(k / packed_s * alone_s, 2),
                                "vs_per_process": round(k / packed_s * (alone_s + start_s), 2)}
                if device == "cuda":
                    row[f"K{k}"]["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            figures[family] = row
    return {"device": device, "device_name": name, "size": size, "torch": torch.__version__, "threads": threads,
            "epochs": epochs, "train_instances": train_instances or "the space's",
            "process_start_s": round(start_s, 2), **figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_packing", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="packs of 16 and 64, one epoch, a smaller task")
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_packing: no CUDA device visible (use --device cpu for a smoke run)", file=sys.stderr)
        return 2
    print(json.dumps(measure(args.device, "quick" if args.quick else "full")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
