"""Parameter counts of the three families, in closed form and without torch.

The search (`hypersweep.search`), the search-space checks and the analysis need a model's
size before or without building it; importing torch for that would cost seconds per process.
`hypersweep.models` builds the models these counts describe (a test checks they agree).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypersweep.config import MLPConfig, ModelConfig


def layer_shapes(fan_in: int, fan_out: int, mlp: MLPConfig) -> list[tuple[int, int]]:
    """(in, out) of each linear layer of an MLP with `mlp.depth` hidden layers."""
    dims = [fan_in] + [mlp.width] * mlp.depth + [fan_out]
    return list(itertools.pairwise(dims))


def mlp_params(fan_in: int, fan_out: int, mlp: MLPConfig, bias: bool = True) -> int:
    """a*w + w + (d-1)*(w*w + w) + w*o + o with biases: the convention of docs/theory.md."""
    return sum(i * o + (o if bias else 0) for i, o in layer_shapes(fan_in, fan_out, mlp))


@dataclass(frozen=True)
class ParamCounts:
    primary: int
    conditioner: int
    total: int

    def as_dict(self) -> dict[str, int]:
        return {
            "params_primary": self.primary,
            "params_conditioner": self.conditioner,
            "params_total": self.total,
        }


def param_counts(cfg: ModelConfig, dim_i: int, dim_x: int, dim_out: int) -> ParamCounts:
    """Closed-form parameter counts of one replica (docs/theory.md, "Counting parameters")."""
    pbias = cfg.has_primary_bias
    if cfg.family == "hyper":
        primary = mlp_params(dim_x, dim_out, cfg.primary, pbias)
        conditioner = mlp_params(dim_i, primary, cfg.conditioner, cfg.bias)
        return ParamCounts(primary, conditioner, conditioner)
    if cfg.family == "embedding":
        primary = mlp_params(dim_x + cfg.embedding_dim, dim_out, cfg.primary, pbias)
        conditioner = mlp_params(dim_i, cfg.embedding_dim, cfg.conditioner, cfg.bias)
        return ParamCounts(primary, conditioner, primary + conditioner)
    primary = mlp_params(dim_x + dim_i, dim_out, cfg.primary, pbias)
    return ParamCounts(primary, 0, primary)
