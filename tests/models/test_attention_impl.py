"""The two per-edge attention implementations: equal values and gradients, symmetries, config.

``reference`` (formula-level, plain autograd) and ``fused`` (the blocked ``_EdgeAttention``)
run the same weights; here they are compared on small random graphs in float64 that include an
isolated atom, an edge exactly at the cutoff, one just inside it and an atom's own periodic
image (``src == dst``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmpretrain.models import ModelConfig, build_backbone, et

CUTOFF = 4.0
TINY = dict(hidden_channels=32, num_layers=3, num_rbf=16, num_heads=4, cutoff=CUTOFF)
#: float64 agreement of the two implementations (outputs and every gradient).
TOLERANCE = 1e-10


def random_graph(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(z, pos, edge_index, shift)`` in float64: every ordered pair with ``r <= CUTOFF``.

    Atoms 0..7 are random in a 5 Å box; atom 8 sits exactly ``CUTOFF`` from atom 0 (along x;
    the difference is exact in binary) and atom 9 just inside the cutoff from atom 1; atom 10
    is isolated. Atom 2 also sees its own image at ``shift`` and ``-shift`` (``src == dst``).
    """
    rng = np.random.default_rng(seed)
    pos = np.concatenate(
        [
            [[0.5, 0.25, 0.75]],
            rng.uniform(0.0, 5.0, size=(7, 3)),
            [[0.5 + CUTOFF, 0.25, 0.75]],
            [[0.0, 0.0, 0.0]],
            [[60.0, 60.0, 60.0]],
        ]
    )
    pos[9] = pos[1] + np.array([0.0, CUTOFF * (1 - 1e-9), 0.0])
    n = len(pos)
    src, dst, shifts = [], [], []
    for i in range(n):
        for j in range(n):
            if i != j and np.linalg.norm(pos[j] - pos[i]) <= CUTOFF:
                src.append(j)
                dst.append(i)
                shifts.append([0.0, 0.0, 0.0])
    image = [0.0, 3.1, -1.7]
    for s in (image, [-c for c in image]):
        src.append(2)
        dst.append(2)
        shifts.append(s)
    z = torch.as_tensor(rng.integers(1, 30, size=n))
    edge_index = torch.tensor([src, dst])
    return z, torch.as_tensor(pos), edge_index, torch.tensor(shifts, dtype=torch.float64)


def perturbed_backbone(**overrides) -> torch.nn.Module:
    """A float64 backbone whose zero-initialised biases are perturbed (so they matter)."""
    torch.manual_seed(0)
    model = build_backbone(ModelConfig(**{**TINY, **overrides})).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def run(model, impl: str, z, pos, edge_index, shift):
    """Outputs ``(x, vec)`` and gradients of a fixed linear functional of both."""
    model.attention_impl = impl
    model.zero_grad()
    pos = pos.clone().requires_grad_(True)
    edge_vec = pos[edge_index[0]] - pos[edge_index[1]] + shift
    x, vec = model.encode(z, edge_index, edge_vec, return_vec=True)
    weights = torch.linspace(-1.0, 1.0, x.numel(), dtype=x.dtype).view_as(x)
    loss = (x * weights).sum()
    if vec is not None:
        loss = loss + (vec * vec.detach().sign()).sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return x.detach(), None if vec is None else vec.detach(), pos.grad, grads


def assert_same(a, b) -> None:
    torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=TOLERANCE)


def test_random_graph_has_the_edge_cases():
    _, pos, edge_index, shift = random_graph(0)
    src, dst = edge_index
    r = (pos[src] - pos[dst] + shift).norm(dim=-1)
    assert (r == CUTOFF).sum() == 2  # atoms 0 and 8, both directions
    assert ((r < CUTOFF) & (r > CUTOFF - 1e-6)).sum() >= 2  # atoms 1 and 9
    assert not ((src == 10) | (dst == 10)).any()  # isolated
    assert (src == dst).sum() == 2
    assert et.pair_edges(src, dst, pos[src] - pos[dst] + shift) is not None


@pytest.mark.parametrize(
    ("overrides", "drop_edge"),
    [
        ({}, False),  # paired radial rows
        ({"pair_edges": False}, False),  # one radial row per edge
        ({}, True),  # not symmetric: per-edge fallback
        ({"vector_cutoff": True}, False),
        ({"activation": "ssp", "attn_activation": "tanh"}, False),  # not SiLU
        ({"num_layers": 1}, False),  # no vector features at all
        ({"num_layers": 2, "neighbor_embedding": False}, False),  # no layer with v_1
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_equals_fused_with_gradients(overrides, drop_edge, seed):
    z, pos, edge_index, shift = random_graph(seed)
    if drop_edge:
        edge_index, shift = edge_index[:, 1:], shift[1:]
    model = perturbed_backbone(**overrides)
    ref = run(model, "reference", z, pos, edge_index, shift)
    fused = run(model, "fused", z, pos, edge_index, shift)
    x, vec, force, grads = ref
    assert vec is None if model.num_layers == 1 else vec.abs().max() > 1e-3
    assert force[:10].abs().max() > 1e-3 and not force[10].any()  # isolated atom: no force
    assert_same(fused[0], x)
    if vec is not None:
        assert_same(fused[1], vec)
    assert_same(fused[2], force)
    assert grads.keys() == fused[3].keys()
    for name, g in grads.items():
        torch.testing.assert_close(fused[3][name], g, atol=TOLERANCE, rtol=TOLERANCE, msg=name)


def test_fused_blocks_equal_reference(monkeypatch):
    """Many small blocks in the fused kernel (its CPU block size forced down) change nothing."""
    z, pos, edge_index, shift = random_graph(2)
    model = perturbed_backbone()
    ref = run(model, "reference", z, pos, edge_index, shift)
    monkeypatch.setattr(et, "CPU_BLOCK_ELEMENTS", 32 * 5)
    fused = run(model, "fused", z, pos, edge_index, shift)
    for a, b in zip(ref[:3], fused[:3], strict=True):
        assert_same(b, a)
    for name, g in ref[3].items():
        torch.testing.assert_close(fused[3][name], g, atol=TOLERANCE, rtol=TOLERANCE, msg=name)


def _rotation(seed: int) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return torch.as_tensor(q)


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_rotation_rotates_vectors_and_keeps_scalars(impl):
    z, pos, edge_index, shift = random_graph(3)
    model = perturbed_backbone(attention_impl=impl)
    rot = _rotation(4)
    src, dst = edge_index
    with torch.no_grad():
        x, vec = model.encode(z, edge_index, pos[src] - pos[dst] + shift, return_vec=True)
        pos_r, shift_r = pos @ rot.T, shift @ rot.T
        xr, vecr = model.encode(z, edge_index, pos_r[src] - pos_r[dst] + shift_r, return_vec=True)
    assert vec.abs().max() > 1e-3
    torch.testing.assert_close(xr, x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(vecr, torch.einsum("ij,njh->nih", rot, vec), atol=1e-10, rtol=1e-10)


def test_reference_supports_a_loss_on_forces():
    """Second derivatives through the reference layers are right (directional difference)."""
    z, pos, edge_index, shift = random_graph(5)
    model = perturbed_backbone(num_layers=2, attention_impl="reference")  # not "auto"
    src, dst = edge_index
    names, params = zip(*model.named_parameters(), strict=True)

    def force_loss() -> torch.Tensor:
        p = pos.clone().requires_grad_(True)
        energy = model.encode(z, edge_index, p[src] - p[dst] + shift).sum()
        (force,) = torch.autograd.grad(energy, p, create_graph=True)
        return force.square().sum()

    grads = torch.autograd.grad(force_loss(), params, allow_unused=True)
    unused = {name for name, g in zip(names, grads, strict=True) if g is None}
    assert unused == {"out_norm.bias"}  # the only parameter that no force depends on
    torch.manual_seed(1)
    direction = [torch.randn_like(p) for p in params]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction, strict=True) if g is not None)
    eps, values = 1e-6, []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(sign * eps * d)
        values.append(force_loss().item())
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic.item()) > 1e-3
    assert abs(numeric - analytic.item()) <= 1e-6 * abs(analytic.item())


def test_auto_resolution_and_validation():
    assert et.resolve_attention_impl("auto", torch.device("cpu")) == "fused"
    assert et.resolve_attention_impl("auto", torch.device("cuda")) == "reference"
    assert et.resolve_attention_impl("auto", torch.device("meta")) == "reference"
    for impl in ("reference", "fused"):
        assert et.resolve_attention_impl(impl, torch.device("cuda")) == impl
    with pytest.raises(ValueError, match="attention_impl"):
        et.resolve_attention_impl("fast", torch.device("cpu"))
    model = build_backbone(ModelConfig(**TINY))
    with pytest.raises(ValueError, match="attention_impl"):
        model.attention_impl = "fast"
    assert model.attention_impl == "auto"  # the default: fused on CPU, reference elsewhere


@pytest.mark.parametrize(
    ("impl", "runs"), [("auto", "fused"), ("fused", "fused"), ("reference", "reference")]
)
def test_config_selects_the_implementation(monkeypatch, impl, runs):
    """``ModelConfig.attention_impl`` reaches every layer; ``auto`` on CPU runs the fused one."""
    calls: list[str] = []
    for name in ("reference", "fused"):
        method = getattr(et.EquivariantAttention, f"messages_{name}")

        def spy(self, *args, _method=method, _name=name):
            calls.append(_name)
            return _method(self, *args)

        monkeypatch.setattr(et.EquivariantAttention, f"messages_{name}", spy)
    model = build_backbone(ModelConfig(**TINY, attention_impl=impl))
    z, pos, edge_index, shift = random_graph(6)
    src, dst = edge_index
    model.encode(z, edge_index, (pos[src] - pos[dst] + shift).float())
    assert calls == [runs] * TINY["num_layers"]


def test_config_round_trip_and_old_configs():
    cfg = ModelConfig(**TINY, attention_impl="fused")
    assert cfg.to_dict()["attention_impl"] == "fused"
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "attention_impl"}  # older release
    assert ModelConfig.from_dict(old).attention_impl == "auto"
    assert ModelConfig().attention_impl == "auto"
    with pytest.raises(ValueError, match="attention_impl"):
        ModelConfig(attention_impl="fast")
    named = ModelConfig.from_name("small", {"attention_impl": "reference"})
    assert named.attention_impl == "reference"
    assert build_backbone(named).attention_impl == "reference"
