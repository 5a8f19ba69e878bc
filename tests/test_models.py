"""Shapes, exact parameter counts and the maths of the three model families."""
import pytest
import torch
import torch.nn.functional as F

from hypersweep.config import MLPConfig, ModelConfig
from hypersweep.counts import layer_shapes, param_counts
from hypersweep.models import build_model, generated_layout


def paper_formula(a: int, o: int, w: int, d: int) -> int:
    """docs/theory.md: a*w + w + (d-1)*(w*w + w) + w*o + o."""
    return a * w + w + (d - 1) * (w * w + w) + w * o + o


SIZES = [(1, 1), (4, 1), (8, 2), (16, 3), (5, 4)]


@pytest.mark.parametrize("w,d", SIZES)
def test_counts_follow_the_papers_formula(w, d):
    m, n, k, E = 2, 4, 3, 6
    cond = MLPConfig(width=7, depth=2)
    hyper = param_counts(ModelConfig("hyper", MLPConfig(w, d), cond), n, m, k)
    g = paper_formula(m, k, w, d)
    assert hyper.primary == g
    assert hyper.conditioner == paper_formula(n, g, 7, 2) == hyper.total

    emb = param_counts(ModelConfig("embedding", MLPConfig(w, d), cond, embedding_dim=E), n, m, k)
    assert emb.primary == paper_formula(m + E, k, w, d)
    assert emb.conditioner == paper_formula(n, E, 7, 2)
    assert emb.total == emb.primary + emb.conditioner

    std = param_counts(ModelConfig("standard", MLPConfig(w, d)), n, m, k)
    assert (std.primary, std.conditioner, std.total) == (paper_formula(m + n, k, w, d), 0, std.primary)


def test_counts_without_bias_and_for_a_linear_net():
    cfg = ModelConfig("hyper", MLPConfig(10, 1), MLPConfig(100, 2), primary_bias=False)
    # The paper's rotation g: image (64) -> 10 -> 12 logits, no biases.
    assert param_counts(cfg, 64, 64, 12).primary == 64 * 10 + 10 * 12
    assert layer_shapes(3, 2, MLPConfig(5, 0)) == [(3, 2)]


def test_gs_layout_tiles_theta_in_order_weight_then_bias():
    # g: 2 -> 4 -> 4 -> 3; f emits W_1 (4x2), b_1, W_2 (4x4), b_2, W_3 (3x4), b_3.
    layers = generated_layout(2, 3, MLPConfig(4, 2), bias=True)
    assert [(g.fan_in, g.fan_out) for g in layers] == [(2, 4), (4, 4), (4, 3)]
    assert [(g.weight.start, g.weight.stop, g.bias.start, g.bias.stop) for g in layers] == [
        (0, 8, 8, 12), (12, 28, 28, 32), (32, 44, 44, 47)]
    assert param_counts(ModelConfig("hyper", MLPConfig(4, 2)), 5, 2, 3).primary == 47
    without = generated_layout(2, 3, MLPConfig(4, 2), bias=False)
    assert [(g.weight.start, g.weight.stop, g.bias) for g in without] == [(0, 8, None), (8, 24, None), (24, 36, None)]


@pytest.mark.parametrize("family", ["hyper", "embedding", "standard"])
@pytest.mark.parametrize("replicas", [1, 3])
@pytest.mark.parametrize("w,d", [(1, 1), (8, 2), (5, 3)])
def test_trainable_parameters_are_the_reported_total(family, replicas, w, d):
    cfg = ModelConfig(family, MLPConfig(w, d), MLPConfig(6, 2), embedding_dim=5, bias=d != 3)
    model = build_model(cfg, dim_i=4, dim_x=2, dim_out=3, replicas=replicas)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == replicas * param_counts(cfg, 4, 2, 3).total
    out = model(torch.randn(7, 4), torch.randn(7, 11, 2))
    assert out.shape == (replicas, 7, 11, 3)


@pytest.mark.parametrize("points", [9, 300])  # g runs elementwise for few points, as bmm for many
def test_hypernetwork_applies_generated_weights_per_instance(points):
    cfg = ModelConfig("hyper", MLPConfig(5, 2), MLPConfig(8, 1), activation="tanh")
    model = build_model(cfg, dim_i=3, dim_x=2, dim_out=4)
    I, x = torch.randn(6, 3), torch.randn(6, points, 2)
    theta = model.generated(I)[0]
    expected = []
    for b in range(6):  # the slow reference: one instance at a time
        h, start = x[b], 0
        for k, (i, o) in enumerate(layer_shapes(2, 4, cfg.primary)):
            W = theta[b, start:start + i * o].view(o, i)
            bias = theta[b, start + i * o:start + i * o + o]
            start += i * o + o
            h = F.linear(h, W, bias)
            h = torch.tanh(h) if k < 2 else h
        expected.append(h)
    torch.testing.assert_close(model(I, x)[0], torch.stack(expected))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_g_elementwise_and_as_bmm_agree_in_value_and_gradient(activation):
    cfg = ModelConfig("hyper", MLPConfig(5, 2), MLPConfig(8, 1), activation=activation)
    model = build_model(cfg, dim_i=3, dim_x=2, dim_out=4, replicas=3)
    I, x = torch.randn(6, 3), torch.randn(6, 9, 2)
    results = []
    for g in (model._g_elementwise, model._g_bmm):
        theta = model.generated(I).detach().requires_grad_()
        out = g(theta, x)
        out.pow(2).sum().backward()
        results.append((out.detach(), theta.grad))
    (out_e, grad_e), (out_b, grad_b) = results
    torch.testing.assert_close(out_e, out_b)
    torch.testing.assert_close(grad_e, grad_b)


@pytest.mark.parametrize("family", ["embedding", "standard"])
def test_concat_models_equal_an_mlp_on_the_concatenation(family):
    cfg = ModelConfig(family, MLPConfig(6, 2), MLPConfig(5, 1), embedding_dim=3)
    model = build_model(cfg, dim_i=4, dim_x=2, dim_out=1)
    I, x = torch.randn(5, 4), torch.randn(5, 7, 2)
    code = model.e(I[None])[0] if family == "embedding" else I
    h = torch.cat([x, code[:, None, :].expand(-1, 7, -1)], dim=-1)
    for k, layer in enumerate(model.q.layers):
        h = F.linear(h, layer.weight[0], layer.bias[0, 0])
        h = torch.relu(h) if k < len(model.q.layers) - 1 else h
    torch.testing.assert_close(model(I, x)[0], h)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_hyperfan_in_gives_generated_layers_a_kaiming_scale(activation):
    torch.manual_seed(0)
    cfg = ModelConfig("hyper", MLPConfig(32, 2), MLPConfig(64, 3), activation=activation, bias=False)
    model = build_model(cfg, dim_i=8, dim_x=16, dim_out=1, replicas=4)
    theta = model.generated(torch.randn(256, 8))
    gain2 = 2.0 if activation == "relu" else (5 / 3) ** 2
    start = 0
    for k, (i, o) in enumerate(layer_shapes(16, 1, cfg.primary)):
        target = (gain2 if k < 2 else 1.0) / i
        var = theta[..., start:start + i * o].var().item()
        start += i * o
        assert 0.6 * target < var < 1.6 * target, (k, var, target)


def test_replicas_are_independent():
    cfg = ModelConfig("hyper", MLPConfig(4, 1), MLPConfig(8, 2))
    model = build_model(cfg, dim_i=3, dim_x=2, dim_out=1, replicas=3)
    out = model(torch.randn(5, 3), torch.randn(5, 6, 2))
    out[1].sum().backward()  # a loss on replica 1 only
    for p in model.parameters():
        if p.grad is not None:
            assert p.grad[0].abs().sum() == 0 and p.grad[2].abs().sum() == 0
    assert not torch.allclose(out[0], out[1])  # different initialisations
