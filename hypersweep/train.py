"""Train one configuration: the function every sweep trial calls, and a CLI.

    python -m hypersweep.train CONFIG.yaml [--json]

The data live on the device as tensors for the whole run and batches are index
selections; the loss is read back once per epoch, never per step. `train.seeds: R`
trains R replicas as one model with stacked parameters (see hypersweep.models).

The CLI ends in exactly one line on stderr when it cannot train: `error: FILE: KEY:
message` and exit 2 for a bad config (including one asking for more memory than there
is), `interrupted` and exit 130 on Ctrl-C. It writes no file.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

INTERRUPTED = 130  # the shell's exit code for a process ended by SIGINT (128 + 2)

try:
    import torch
    import torch.nn.functional as F

    from hypersweep.config import ConfigError, RunConfig, null_if_nan, read_yaml
    from hypersweep.counts import param_counts
    from hypersweep.models import build_model
    from hypersweep.tasks import Kind, Split, Task, build_task, load_config  # load_config: also imported from here
    from hypersweep.vocab import DIVERGED, OK
except KeyboardInterrupt:  # Ctrl-C while the CLI still imports torch (seconds); a library import re-raises
    if __name__ != "__main__":
        raise
    print("interrupted", file=sys.stderr)
    sys.exit(INTERRUPTED)

EVAL_CHUNK = 512  # instances per evaluation forward pass, to bound memory


def loss(kind: Kind, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Training loss per replica: out [R, B, P, k] -> [R] (MSE or cross-entropy)."""
    if kind == "regression":
        return (out - y).pow(2).flatten(1).mean(1)
    logits = out.flatten(1, 2)  # [R, B*P, k]
    target = y.flatten().expand(out.shape[0], -1)
    return F.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(1)


def error(kind: Kind, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Error per replica: normalised MSE (MSE / variance of y) or 0-1 error."""
    if kind == "regression":
        return (out - y).pow(2).flatten(1).mean(1) / y.var(unbiased=False).clamp_min(1e-12)
    return (out.argmax(-1) != y).flatten(1).float().mean(1)


def prediction(kind: Kind, out: torch.Tensor) -> torch.Tensor:
    """What the model predicts: the output itself, or class probabilities."""
    return out if kind == "regression" else out.softmax(-1)


def resolve_device(name: str) -> torch.device:
    """`auto` means CUDA when this process can see a GPU, else the CPU.

    A CUDA device this process cannot see is refused here, where training runs, rather
    than when the config is parsed: a sweep's driver may have no GPU while its workers do.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible == 0:
            build = "" if torch.version.cuda else f" (torch {torch.__version__} is a CPU-only build)"
            raise ConfigError("train.device", f"{name}: no CUDA device is visible to this process{build}; "
                                              "use auto or cpu")
        if device.index is not None and device.index >= visible:
            raise ConfigError("train.device", f"{name}: only {visible} CUDA device(s) are visible")
    return device


# How torch words a failed allocation: on the CPU a plain RuntimeError, not OutOfMemoryError.
_ALLOCATION_FAILED = ("can't allocate memory", "Storage size calculation overflowed")


@contextlib.contextmanager
def refuse_out_of_memory() -> Iterator[None]:
    """Turn a failed allocation into a ConfigError: the config asked for more than the machine has."""
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        if not isinstance(err, (MemoryError, torch.OutOfMemoryError)) and not any(
                phrase in str(err) for phrase in _ALLOCATION_FAILED):
            raise
        size = re.search(r"allocate (\d+) bytes", str(err))
        what = f" ({int(size[1]) / 2**30:,.3g} GiB at once)" if size else ""
        raise ConfigError("", f"out of memory{what}: make the task, the model, train.batch_size "
                              "or train.seeds smaller") from None


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, kind: Kind) -> tuple[torch.Tensor, float]:
    """Error per replica [R] and the replicas' disagreement on `split`.

    Disagreement is the mean squared difference between two replicas' predictions,
    averaged over ordered pairs: 2 x the unbiased variance across replicas (NaN for R=1).
    """
    out = torch.cat([model(split.I[i:i + EVAL_CHUNK], split.x[i:i + EVAL_CHUNK])
                     for i in range(0, len(split), EVAL_CHUNK)], dim=1)
    errors = error(kind, out, split.y)
    if out.shape[0] == 1:
        return errors, math.nan
    pred = prediction(kind, out)
    # Two-pass variance written out: torch's var over the leading dim is ~30x slower here.
    variance = (pred - pred.mean(0)).pow_(2).sum(0).div_(out.shape[0] - 1)
    return errors, 2 * variance.mean().item()


# How a split's per-replica errors are summarised: `val_error`, `val_error_std`, `val_error_max`, ...
ERROR_STATS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "": torch.mean,
    "_std": lambda e: e.std(unbiased=False),
    "_max": torch.max,
}


def _summary(split: str, errors: torch.Tensor) -> dict[str, float]:
    """`{split}_error` and its spread over the replicas (ERROR_STATS); NaN for a run that diverged."""
    e = errors.double()
    return {f"{split}_error{stat}": reduce(e).item() for stat, reduce in ERROR_STATS.items()}


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    """The configured optimizer; Adam and AdamW fused into one kernel per step where torch has one."""
    t = cfg.train
    if t.optimizer == "sgd":  # its fused kernel measured no faster here
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    opt = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    params = list(params)
    try:
        # A small model's step is mostly per-tensor overhead, which the fused kernel removes.
        return opt(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)
    except RuntimeError:  # no fused kernel for this device (the CPU before torch 2.4)
        return opt(params, lr=t.lr, weight_decay=t.weight_decay)


def train(cfg: RunConfig, on_epoch: Callable[[dict], None] | None = None,
          task: Task | None = None) -> dict[str, Any]:
    """Train `cfg`, calling `on_epoch(metrics)` after every epoch; return the final metrics.

    `status` is `diverged` (and training stops) as soon as an epoch's loss is not finite.
    Pass `task` to reuse data already built for `cfg.task`.
    """
    start = time.perf_counter()
    device = resolve_device(cfg.train.device)
    with refuse_out_of_memory():
        return _train(cfg, task or build_task(cfg.task), device, on_epoch, start)


def _train(cfg: RunConfig, task: Task, device: torch.device, on_epoch: Callable[[dict], None] | None,
           start: float) -> dict[str, Any]:
    """`train` once the device is known, inside its out-of-memory guard."""
    t = cfg.train
    counts = param_counts(cfg.model, task.dim_i, task.dim_x, task.dim_out)
    if t.max_params is not None and counts.total > t.max_params:
        raise ConfigError("train.max_params", f"model has {counts.total} parameters, over the cap of {t.max_params}")
    if t.threads:
        torch.set_num_threads(t.threads)

    torch.manual_seed(t.seed)
    model = build_model(cfg.model, task.dim_i, task.dim_x, task.dim_out, replicas=t.seeds).to(device)
    data = {name: split.to(device) for name, split in task.splits().items()}
    train_split, n = data["train"], len(task.train)
    steps_per_epoch = math.ceil(n / t.batch_size)
    optimizer = make_optimizer(cfg, model.parameters())
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, t.epochs * steps_per_epoch)
                if t.schedule == "cosine" else None)
    order = torch.Generator().manual_seed(t.seed)

    status, epoch, train_s, metrics = OK, 0, 0.0, {}
    for epoch in range(1, t.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        loss_sum = torch.zeros(t.seeds, device=device)
        perm = torch.randperm(n, generator=order).to(device)
        for k in range(steps_per_epoch):
            batch = train_split.take(perm[k * t.batch_size:(k + 1) * t.batch_size])
            losses = loss(task.kind, model(batch.I, batch.x), batch.y)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # a sum keeps each replica's gradient its own
            optimizer.step()
            if schedule:
                schedule.step()
            loss_sum += losses.detach()
        train_loss = (loss_sum / steps_per_epoch).mean().item()
        train_s += time.perf_counter() - epoch_start
        if not math.isfinite(train_loss):
            status = DIVERGED
            break
        model.eval()
        val_errors, disagreement = evaluate(model, data["val"], task.kind)
        metrics = {"epoch": epoch, "train_loss": train_loss, **_summary("val", val_errors),
                   "replica_disagreement": disagreement}
        if not math.isfinite(metrics["val_error"]):
            status = DIVERGED
            break
        if on_epoch:
            on_epoch(metrics)

    if status == OK:
        test_errors, disagreement = evaluate(model, data["test"], task.kind)
        final = {**metrics, **_summary("test", test_errors), "replica_disagreement": disagreement}
    else:
        nan = torch.tensor([math.nan])
        final = {"epoch": epoch, "train_loss": math.nan, "replica_disagreement": math.nan,
                 **_summary("val", nan), **_summary("test", nan)}
    samples = (epoch if status == OK else epoch - 1) * n * task.train.points
    return {
        "status": status,
        **final,
        **counts.as_dict(),
        "epochs": epoch,
        "seeds": t.seeds,
        "device": str(device),
        "wall_s": time.perf_counter() - start,
        "samples_per_s": samples / train_s if train_s else 0.0,
    }


class _Parser(argparse.ArgumentParser):
    """argparse, ending a usage error in one line like every other refusal (still exit 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (usage: {self.format_usage().strip().removeprefix('usage: ')})\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m hypersweep.train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML file with task, model and train sections")
    parser.add_argument("--json", action="store_true", help="print only one JSON object on stdout")
    args = parser.parse_args(argv)
    log = sys.stderr if args.json else sys.stdout

    def progress(m: dict) -> None:
        print(f"epoch {m['epoch']:4d}  train_loss {m['train_loss']:.4g}  val_error {m['val_error']:.4g}",
              file=log, flush=True)

    try:
        cfg = load_config(read_yaml(args.config))
        result = train(cfg, on_epoch=progress)
    except ConfigError as err:
        print(f"error: {err if err.file else err.in_file(args.config)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    if args.json:
        print(json.dumps({k: null_if_nan(v) for k, v in result.items()}))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value:.4g}" if isinstance(value, float) else f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
