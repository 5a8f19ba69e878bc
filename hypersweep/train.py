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

import contextlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

INTERRUPTED = 130  # the shell's exit code for a process ended by SIGINT (128 + 2)

try:
    import torch
    import torch.nn.functional as F

    from hypersweep.config import ArgumentParser, ConfigError, RunConfig, null_if_nan, read_yaml
    from hypersweep.counts import param_counts
    from hypersweep.packing import CosineFactor, build_pack, keep_slots, stacked_optimizer
    from hypersweep.tasks import Kind, Split, Task, build_task, load_config  # load_config: also imported from here
    from hypersweep.vocab import DIVERGED, OK, PRUNED
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
def evaluate(model: torch.nn.Module, split: Split, kind: Kind, members: int = 1) -> tuple[torch.Tensor, list[float]]:
    """Error per member and replica [M, R] and each member's replica disagreement on `split`.

    Disagreement is the mean squared difference between two replicas' predictions,
    averaged over ordered pairs: 2 x the unbiased variance across replicas (NaN for R=1).
    """
    out = torch.cat([model(split.I[i:i + EVAL_CHUNK], split.x[i:i + EVAL_CHUNK])
                     for i in range(0, len(split), EVAL_CHUNK)], dim=1)
    errors = error(kind, out, split.y).view(members, -1)
    replicas = errors.shape[1]
    if replicas == 1:
        return errors, [math.nan] * members
    pred = prediction(kind, out).view(members, replicas, *out.shape[1:])
    # Two-pass variance written out: torch's var over the replicas' dim is ~30x slower here.
    variance = (pred - pred.mean(1, keepdim=True)).pow_(2).sum(1).div_(replicas - 1)
    return errors, (2 * variance.flatten(1).mean(1)).tolist()


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
    each = None if on_epoch is None else (lambda _, metrics: on_epoch(metrics))
    return train_pack([cfg], each, task)[0]


def train_pack(cfgs: list[RunConfig], on_epoch: Callable[[int, dict], None] | None = None, task: Task | None = None,
               stop: Callable[[int, dict[int, dict]], Iterable[int]] | None = None,
               on_leave: Callable[[int, dict], None] | None = None) -> list[dict[str, Any]]:
    """Train configurations with one `hypersweep.packing.pack_key` as one stacked model; return each one's
    final metrics, in order, as `train` would for it alone.

    `on_epoch(m, metrics)` runs for each member m once before the first step (epoch 0, its
    train_loss NaN) and after every epoch while m is still training. After it,
    `stop(epoch, {m: metrics})` names members to stop early (`pruned`); a member whose loss
    is not finite stops as `diverged`. A stopped member leaves the model, so its compute
    stops too, and `on_leave(m, result)` gets its final metrics at once. Members share the
    task's data and batch order (the seed is part of the pack key).
    """
    start = time.perf_counter()
    device = resolve_device(cfgs[0].train.device)
    with refuse_out_of_memory():
        return _train(cfgs, task or build_task(cfgs[0].task), device, on_epoch, stop, on_leave, start)


def _train(cfgs: list[RunConfig], task: Task, device: torch.device, on_epoch: Callable[[int, dict], None] | None,
           stop: Callable[[int, dict[int, dict]], Iterable[int]] | None, on_leave: Callable[[int, dict], None] | None,
           start: float) -> list[dict[str, Any]]:
    """`train_pack` once the device is known, inside its out-of-memory guard."""
    t, M = cfgs[0].train, len(cfgs)
    counts = [param_counts(c.model, task.dim_i, task.dim_x, task.dim_out) for c in cfgs]
    for c, n in zip(cfgs, counts, strict=True):
        if c.train.max_params is not None and n.total > c.train.max_params:
            raise ConfigError("train.max_params",
                              f"model has {n.total} parameters, over the cap of {c.train.max_params}")
    if t.threads:
        torch.set_num_threads(t.threads)

    model = build_pack(cfgs, task.dim_i, task.dim_x, task.dim_out).to(device)
    data = {name: split.to(device) for name, split in task.splits().items()}
    train_split, n = data["train"], len(task.train)
    steps_per_epoch = math.ceil(n / t.batch_size)
    if M == 1:  # torch's own (fused) optimiser: one lr per tensor is all a lone model needs
        optimizer = make_optimizer(cfgs[0], model.parameters())
        schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, t.epochs * steps_per_epoch)
                    if t.schedule == "cosine" else None)
    else:
        optimizer = stacked_optimizer(cfgs, model, device)
        schedule = CosineFactor(optimizer, t.epochs * steps_per_epoch) if t.schedule == "cosine" else None
    order = torch.Generator().manual_seed(t.seed)

    # Epoch 0: each member as initialised, before any step, so that a learning curve (and Assumption 1's
    # replica disagreement) starts where training does. Evaluating draws no random numbers, so the
    # training that follows is the same as without it.
    if on_epoch:
        model.eval()
        val_errors, disagreement = evaluate(model, data["val"], task.kind, M)
        for m in range(M):
            on_epoch(m, {"epoch": 0, "train_loss": math.nan, **_summary("val", val_errors[m]),
                         "replica_disagreement": disagreement[m]})

    live = list(range(M))  # members still training, in slot order
    seconds = [(time.perf_counter() - start) / M] * M  # each member's share of the pack's time
    train_s, last = [0.0] * M, [{} for _ in range(M)]
    results: list[dict[str, Any] | None] = [None] * M

    def finish(m: int, status: str, epoch: int, final: dict) -> None:
        samples = (epoch if status != DIVERGED else epoch - 1) * n * task.train.points
        results[m] = {"status": status, **final, **counts[m].as_dict(), "epochs": epoch, "seeds": t.seeds,
                      "device": str(device), "wall_s": seconds[m],
                      "samples_per_s": samples / train_s[m] if train_s[m] else 0.0}

    epoch = 0
    for epoch in range(1, t.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        loss_sum = torch.zeros(len(live) * t.seeds, device=device)
        perm = torch.randperm(n, generator=order).to(device)
        for k in range(steps_per_epoch):
            batch = train_split.take(perm[k * t.batch_size:(k + 1) * t.batch_size])
            losses = loss(task.kind, model(batch.I, batch.x), batch.y)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # a sum keeps each member's and replica's gradient its own
            optimizer.step()
            if schedule:
                schedule.step()
            loss_sum += losses.detach()
        train_loss = (loss_sum / steps_per_epoch).view(len(live), t.seeds).mean(1).tolist()
        trained = time.perf_counter() - epoch_start
        model.eval()
        val_errors, disagreement = evaluate(model, data["val"], task.kind, len(live))
        leaving: dict[int, str] = {}
        for j, m in enumerate(live):
            train_s[m] += trained / len(live)
            metrics = {"epoch": epoch, "train_loss": train_loss[j], **_summary("val", val_errors[j]),
                       "replica_disagreement": disagreement[j]}
            if not (math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_error"])):
                leaving[m] = DIVERGED
                continue
            last[m] = metrics
            if on_epoch:
                on_epoch(m, metrics)
        if stop:
            leaving.update((m, PRUNED) for m in stop(epoch, {m: last[m] for m in live if m not in leaving}))
        for m in live:
            seconds[m] += (time.perf_counter() - epoch_start) / len(live)
        for m, status in leaving.items():
            finish(m, status, epoch, _diverged(epoch) if status == DIVERGED else last[m] | _summary("test", _NAN))
            if on_leave:
                on_leave(m, results[m])
        kept = [j for j, m in enumerate(live) if m not in leaving]
        if leaving and kept:
            slots = torch.tensor([j * t.seeds + r for j in kept for r in range(t.seeds)], device=device)
            keep_slots(model, slots)
            if M > 1:
                optimizer.keep(list(model.parameters()), slots)
        live = [live[j] for j in kept]
        if not live:
            break

    if live:
        test_start = time.perf_counter()
        test_errors, disagreement = evaluate(model, data["test"], task.kind, len(live))
        for j, m in enumerate(live):
            seconds[m] += (time.perf_counter() - test_start) / len(live)
            finish(m, OK, epoch, {**last[m], **_summary("test", test_errors[j]),
                                  "replica_disagreement": disagreement[j]})
    return results


_NAN = torch.tensor([math.nan])


def _diverged(epoch: int) -> dict[str, float]:
    """The final metrics of a run whose loss was not finite at `epoch`."""
    return {"epoch": epoch, "train_loss": math.nan, "replica_disagreement": math.nan,
            **_summary("val", _NAN), **_summary("test", _NAN)}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m hypersweep.train", description=__doc__.splitlines()[0])
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
