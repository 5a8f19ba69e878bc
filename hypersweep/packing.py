"""Trial packing: several configurations of one study trained as one stacked model.

The models a sweep trains are tiny, so one per process leaves the CPU (and far more a GPU)
waiting on per-operation overhead and on the per-trial machinery of Ray Tune. A pack stacks
M members x R replicas on the leading axis that `hypersweep.models` already gives replicas:

- What can be padded exactly differs between members: the widths of g / q / N and of f / e,
  and `embedding_dim`. The pack's model has the largest of each; a member's weights sit in the
  first units of each layer (hyper: in g's padded layout of theta), the rest are zeros that
  stay zero (their gradients are zero), and for the sigmoid, whose act(0) is 0.5, masks zero
  its padded units after every activation. A member thus computes its own model's outputs
  and gradients.
- `lr`, `weight_decay` and `momentum` are per member: `StackedOptimizer` steps every member
  with its own values (torch's optimisers take one learning rate per tensor).
- Everything else (depth, activation, batch size, optimiser, schedule, epochs, seed, the
  task) is shared: `pack_key` groups configurations by it. A shared seed means a shared
  batch order; each member is initialised exactly as it would be alone (same seed, its own
  fan-in), by building its own model and copying it into its slots.

Parameter counts stay each member's own. `hypersweep.train.train_pack` trains a pack.
"""
from __future__ import annotations

import dataclasses
import json
import math

import torch
from torch import nn

from hypersweep.config import MLPConfig, RunConfig, to_dict
from hypersweep.counts import param_counts
from hypersweep.models import ACTIVATIONS, HyperModel, build_model, generated_layout

# What a pack's members may differ in: padded widths, and the optimiser's per-member values.
PADDED = ("model.primary.width", "model.conditioner.width", "model.embedding_dim")
PER_MEMBER = ("train.lr", "train.weight_decay", "train.momentum")


def pack_key(cfg: RunConfig) -> str:
    """What every member of a pack must share: the config without PADDED and PER_MEMBER values."""
    plain = {"task": to_dict(cfg.task), "task_type": type(cfg.task).__module__,
             "model": to_dict(cfg.model), "train": to_dict(cfg.train)}
    for dotted in (*PADDED, *PER_MEMBER):
        *path, last = dotted.split(".")
        node = plain
        for key in path:
            node = node[key]
        node.pop(last)
    for unused in ("max_params", "threads"):  # checked per member / the same for a whole trial
        plain["train"].pop(unused)
    return json.dumps(plain, sort_keys=True, default=str)


def padded_config(cfgs: list[RunConfig]) -> RunConfig:
    """The pack's model: the members' shared config with the largest of each padded width."""
    first = cfgs[0].model
    widest = dataclasses.replace(
        first,
        primary=MLPConfig(max(c.model.primary.width for c in cfgs), first.primary.depth),
        conditioner=MLPConfig(max(c.model.conditioner.width for c in cfgs), first.conditioner.depth),
        embedding_dim=max(c.model.embedding_dim for c in cfgs),
    )
    return dataclasses.replace(cfgs[0], model=widest)


def build_pack(cfgs: list[RunConfig], dim_i: int, dim_x: int, dim_out: int) -> nn.Module:
    """One model holding every member of `cfgs` (same pack_key), member m in slots m*R .. m*R+R-1.

    Each member's weights are those its own model gets from `torch.manual_seed(train.seed)`,
    so a member starts exactly where it would alone.
    """
    if len(cfgs) == 1:
        torch.manual_seed(cfgs[0].train.seed)
        return build_model(cfgs[0].model, dim_i, dim_x, dim_out, replicas=cfgs[0].train.seeds)
    R = cfgs[0].train.seeds
    pack = build_model(padded_config(cfgs).model, dim_i, dim_x, dim_out, replicas=len(cfgs) * R)
    params = dict(pack.named_parameters())
    with torch.no_grad():
        for p in params.values():
            p.zero_()
        for m, cfg in enumerate(cfgs):
            torch.manual_seed(cfg.train.seed)
            own = build_model(cfg.model, dim_i, dim_x, dim_out, replicas=R)
            slots = slice(m * R, (m + 1) * R)
            for name, p in own.named_parameters():
                target = params[name][slots]
                if isinstance(pack, HyperModel) and name.startswith(f"f.layers.{len(pack.f.layers) - 1}."):
                    # f's head emits theta: the member's entries go to their places in the padded layout
                    target[:, :p.shape[1], theta_index(cfg, pack)] = p
                else:
                    target[tuple(slice(0, n) for n in (R, *p.shape[1:]))] = p
    _set_masks(pack, cfgs, R)
    return pack


def theta_index(cfg: RunConfig, pack: HyperModel) -> torch.Tensor:
    """Where each entry of the member `cfg`'s theta (g's weights and biases) lies in `pack`'s wider theta."""
    fan_in, fan_out = pack.g_layers[0].fan_in, pack.g_layers[-1].fan_out
    index: list[int] = []
    for mine, padded in zip(generated_layout(fan_in, fan_out, cfg.model.primary, cfg.model.has_primary_bias),
                            pack.g_layers, strict=True):
        index += [padded.weight.start + o * padded.fan_in + i for o in range(mine.fan_out) for i in range(mine.fan_in)]
        if mine.bias is not None:
            index += range(padded.bias.start, padded.bias.start + mine.fan_out)
    return torch.tensor(index)


def _set_masks(pack: nn.Module, cfgs: list[RunConfig], R: int) -> None:
    """Register the 0/1 masks of each member's own units, where an activation of 0 is not 0.

    Elsewhere none is needed: a padded unit's weights and bias are 0, so its pre-activation
    and activation are 0, its outgoing weights (0) pass nothing on, and every padded weight
    gets a zero gradient, so Adam, SGD and weight decay all leave it 0.
    """
    if ACTIVATIONS[cfgs[0].model.activation](torch.zeros(1)).item() == 0:
        return

    def mask(widths: list[int]) -> torch.Tensor | None:
        if min(widths) == max(widths):
            return None
        units = torch.arange(max(widths))
        return torch.stack([(units < w).float() for w in widths for _ in range(R)])[:, None, :]

    conditioner = getattr(pack, "f", None) or getattr(pack, "e", None)
    if conditioner is not None:
        conditioner.unit_mask = mask([c.model.conditioner.width for c in cfgs])
    if not isinstance(pack, HyperModel):
        pack.q.unit_mask = mask([c.model.primary.width for c in cfgs])
    elif len({c.model.primary.width for c in cfgs}) > 1:  # g's padded units: their outgoing weights stay 0
        own = torch.zeros(len(cfgs) * R, 1, pack.f.layers[-1].weight_t.shape[-1])
        for m, cfg in enumerate(cfgs):
            own[m * R:(m + 1) * R, 0, theta_index(cfg, pack)] = 1.0
        pack.theta_mask = own


def keep_slots(model: nn.Module, slots: torch.Tensor) -> None:
    """Cut every stacked parameter and mask of `model` down to `slots` (members that go on training)."""
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            setattr(module, name, nn.Parameter(p.detach()[slots]))
        for name, b in list(module.named_buffers(recurse=False)):
            if b is not None:
                module.register_buffer(name, b[slots])


class StackedOptimizer:
    """Adam, AdamW or SGD over stacked parameters [S, ...], each slot with its own lr, weight decay
    and momentum; `factor` scales every slot's lr (the schedule). Same update rules as torch.optim.

    Written out because torch's optimisers take one learning rate per tensor. The gradients
    are gathered into one [S, n] tensor per step, so a step is a dozen operations however
    many tensors the model has (a tiny model's step is per-operation overhead). The
    arithmetic is elementwise: a slot's update depends only on its own values and gradients,
    so a diverging member leaves the others alone.
    """

    BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which make_optimizer uses too

    def __init__(self, kind: str, params: list[nn.Parameter], lr: torch.Tensor, weight_decay: torch.Tensor,
                 momentum: torch.Tensor):
        self.kind, self.params = kind, params
        self.lr, self.weight_decay, self.momentum = lr[:, None], weight_decay[:, None], momentum[:, None]  # [S, 1]
        self.decays = bool(weight_decay.any())
        self.state: dict[str, torch.Tensor] = {}  # [S, n] each: SGD's momentum, Adam's two averages
        self.steps, self.factor = 0, 1.0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def _flat(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        lr = self.lr * self.factor
        grad = self._flat([p.grad for p in self.params])
        update = None  # AdamW's decay, added to the step
        if self.decays:
            weights = self._flat(self.params)
            if self.kind == "adamw":  # decoupled: shrink the weights, not the gradient
                update = weights * (lr * self.weight_decay)
            else:
                grad = grad + self.weight_decay * weights
        if self.kind == "sgd":
            buf = self.state.setdefault("momentum", torch.zeros_like(grad))
            buf.mul_(self.momentum).add_(grad)
            step = lr * buf
        else:
            b1, b2 = self.BETAS
            m = self.state.setdefault("exp_avg", torch.zeros_like(grad))
            v = self.state.setdefault("exp_avg_sq", torch.zeros_like(grad))
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (v.sqrt() / math.sqrt(1 - b2 ** self.steps)).add_(self.EPS)
            step = (lr / (1 - b1 ** self.steps)) * m / denom
        if update is not None:
            step = step + update
        start = 0
        for p in self.params:
            n = p[0].numel()
            p.sub_(step[:, start:start + n].view_as(p))
            start += n

    def keep(self, params: list[nn.Parameter], slots: torch.Tensor) -> None:
        """Follow `keep_slots`: the new parameters, and each state cut to `slots`."""
        self.params = params
        self.state = {k: v[slots] for k, v in self.state.items()}
        self.lr, self.weight_decay, self.momentum = self.lr[slots], self.weight_decay[slots], self.momentum[slots]


def stacked_optimizer(cfgs: list[RunConfig], model: nn.Module, device: torch.device) -> StackedOptimizer:
    """The pack's optimiser: each member's lr, weight decay and momentum repeated over its replicas."""
    R = cfgs[0].train.seeds

    def per_slot(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, device=device).repeat_interleave(R)

    return StackedOptimizer(cfgs[0].train.optimizer, list(model.parameters()),
                            per_slot([c.train.lr for c in cfgs]), per_slot([c.train.weight_decay for c in cfgs]),
                            per_slot([c.train.momentum for c in cfgs]))


def cosine(step: int, total: int) -> float:
    """CosineAnnealingLR's factor (to eta_min 0) after `step` of `total` steps."""
    return (1 + math.cos(math.pi * step / total)) / 2


class CosineFactor:
    """The cosine schedule for a StackedOptimizer: each slot's lr times CosineAnnealingLR's factor."""

    def __init__(self, optimizer: StackedOptimizer, total: int):
        self.optimizer, self.total, self.steps = optimizer, total, 0

    def step(self) -> None:
        self.steps += 1
        self.optimizer.factor = cosine(self.steps, self.total)


# Floats in one hidden layer's activations of a whole pack (members x seeds x batch x points x width)
# up to which packing pays. Past it a CPU's caches overflow and the pack trains slower than its
# members one after another (quickstart's standard q, BENCHMARKS.md trial_packing: width 8 gained
# 3.1x at 8 members, width 32 1.8x at 4 and 0.8x at 8, width 128 0.8x at 2). A GPU's figure is a
# guess to be measured (benchmarks/gpu_packing.py): it only bounds memory there.
ACTIVATION_CAP = {"cpu": 2**18, "gpu": 2**26}


def activations(cfg: RunConfig, points: int) -> int:
    """Floats in the widest hidden layer's activations of one member for one batch."""
    model = cfg.model
    per_point = max(model.primary.width, model.embedding_dim if model.family == "embedding" else 0)
    per_instance = model.conditioner.width if model.family != "standard" else 0
    return cfg.train.seeds * cfg.train.batch_size * max(points * per_point, per_instance)


# How much more a member may compute padded in its pack than alone: at most PAD_RATIO x its own
# multiply-adds per step, or any amount up to PAD_FREE of them (a step that small is per-operation
# overhead on a CPU: a standard q of 526k multiply-adds per step gained 1.8x in a pack of 4, one of
# 2.1M lost). Padding costs W/w in each layer to or from the hidden units and (W/w)^2 between two
# of them: in sweep_scale's space, widths 29 and 2 at depth 2 trained 0.57x as fast packed as alone.
PAD_RATIO, PAD_FREE = 2.0, 2**18


def step_macs(cfg: RunConfig, dims: tuple[int, int, int], points: int) -> int:
    """Multiply-adds of one member's forward pass on a batch: its primary net on every point
    (a parameter is one multiply-add per point), its conditioner once per instance."""
    counts = param_counts(cfg.model, *dims)
    return cfg.train.seeds * cfg.train.batch_size * (points * counts.primary + counts.conditioner)


def plan_packs(cfgs: list[RunConfig], dims: tuple[int, int, int], points: int, most: int, cap: int) -> list[list[int]]:
    """Group configurations (by index) into packs: one pack_key each, at most `most` members,
    no more than fit under `cap` (ACTIVATION_CAP) at the pack's padded width, and none that
    computes more than PAD_RATIO times its own work padded (beyond PAD_FREE).

    Members are taken largest first, so each pack holds members of similar sizes.
    """
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(pack_key(cfg), []).append(i)
    own = [step_macs(cfg, dims, points) for cfg in cfgs]
    packs = []
    for members in groups.values():
        members.sort(key=lambda i: own[i], reverse=True)
        while members:
            pack = [members[0]]
            for i in members[1:]:
                padded = padded_config([cfgs[k] for k in (*pack, i)])
                work = step_macs(padded, dims, points)
                if (len(pack) < most and (len(pack) + 1) * activations(padded, points) <= cap
                        and all(work <= max(PAD_RATIO * own[k], PAD_FREE) for k in (*pack, i))):
                    pack.append(i)
            packs.append(sorted(pack))
            members = [i for i in members if i not in pack]
    return packs
