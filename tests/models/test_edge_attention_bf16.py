"""bf16 reaches the edge attention, both implementations: under autocast it computes in bfloat16.

The ``reference`` path is plain autograd, so autocast reaches it directly; it casts the fp32
cutoff, unit vectors and ``vec`` to the projections' dtype. ``fused`` (``_EdgeAttention``)
turns autocast off inside, but casts its inputs to ``q``'s dtype, and ``q`` comes from an
autocast ``Linear``. So under bf16 autocast the edge work runs in bf16 either way, close to
fp32 (CPU autocast stands in for CUDA here; the CUDA variant runs where a GPU is present).
"""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk
from torch_geometric.data import Batch

from fmpretrain.data.graphs import build_graph
from fmpretrain.models import ModelConfig, build_fingerprint_model, et

TINY = dict(hidden_channels=32, num_layers=3, num_rbf=16, num_heads=4, cutoff=4.0)
#: bf16 keeps 8 bits of mantissa (relative step 2^-8 ≈ 0.4 %); through three layers the
#: outputs stay within this fraction of their largest magnitude (measured on CPU: 0.3-0.5 %
#: for seeds 0-2, the same for both implementations).
MODEL_TOLERANCE = 0.02
#: One call of the edge kernel, bf16 inputs against the same values in fp32.
KERNEL_TOLERANCE = 0.02


def _batch(device: str) -> Batch:
    crystals = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)]
    graphs = [
        build_graph(a.numbers, a.positions, a.cell.array, a.pbc, TINY["cutoff"]) for a in crystals
    ]
    return Batch.from_data_list(graphs).to(device)


def _edge_dtypes(monkeypatch, impl: str) -> list[torch.dtype]:
    """Record the dtype the per-edge part computed in (that of its outputs), call by call."""
    seen: list[torch.dtype] = []
    name = f"messages_{impl}"
    messages = getattr(et.EquivariantAttention, name)

    def spy(self, *args):
        out = messages(self, *args)
        seen.extend(t.dtype for t in out if t is not None)
        return out

    monkeypatch.setattr(et.EquivariantAttention, name, spy)
    return seen


def _check_model(device: str, monkeypatch, impl: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY, attention_impl=impl)
    model = build_fingerprint_model(cfg, out_dim=5).to(device).train()
    batch = _batch(device)
    seen = _edge_dtypes(monkeypatch, impl)
    with torch.no_grad():
        ref = model(batch)
    assert seen and set(seen) == {torch.float32}
    seen.clear()
    with torch.autocast(device, dtype=torch.bfloat16):
        out = model(batch)
    # every layer's edge work in bf16: scalar messages, and vector messages but in the last
    assert seen == [torch.bfloat16] * (2 * TINY["num_layers"] - 1)
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    err = (out.float() - ref).abs().max().item()
    assert err <= MODEL_TOLERANCE * ref.abs().max().item(), err


def _check_kernel(device: str) -> None:
    """The kernel is dtype-generic: bf16 inputs give bf16 outputs close to the fp32 ones."""
    torch.manual_seed(1)
    n, e, hidden, rbf, heads = 12, 60, 32, 16, 4
    src = torch.randint(0, n, (e,), device=device)
    dst = torch.randint(0, n, (e,), device=device)
    unit = torch.nn.functional.normalize(torch.randn(e, 3, device=device), dim=-1)
    inputs = [
        torch.randn(n, hidden, device=device),  # q
        torch.randn(n, 3 * hidden, device=device),  # k, v_x, v_2
        torch.randn(n, 3, hidden, device=device),  # w
        torch.rand(e, rbf, device=device),  # rbf
        0.3 * torch.randn(4 * hidden, rbf, device=device),  # filter weight
        0.1 * torch.randn(4 * hidden, device=device),  # filter bias
        torch.rand(e, device=device),  # cut
    ]
    act = torch.nn.functional.silu

    def run(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        args = [t.to(dtype) for t in inputs]
        return et._EdgeAttention.apply(*args, unit.to(dtype), src, dst, heads, act, act, False)

    ref, low = run(torch.float32), run(torch.bfloat16)
    for r, b in zip(ref, low, strict=True):
        assert b.dtype == torch.bfloat16
        err = (b.float() - r).abs().max().item()
        assert err <= KERNEL_TOLERANCE * r.abs().max().item(), err


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_bf16_autocast_reaches_edge_attention_cpu(monkeypatch, impl):
    _check_model("cpu", monkeypatch, impl)


def test_edge_kernel_bf16_matches_fp32_cpu():
    _check_kernel("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_bf16_autocast_reaches_edge_attention_cuda(monkeypatch, impl):
    _check_model("cuda", monkeypatch, impl)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_edge_kernel_bf16_matches_fp32_cuda():
    _check_kernel("cuda")
