"""The ET backbone and its heads: symmetries, batching, pooling, sizes, checkpointing, configs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from torch_geometric.data import Batch

from fmpretrain.data.graphs import build_graph, edge_vectors
from fmpretrain.models import (
    ModelConfig,
    build_backbone,
    build_fingerprint_model,
    build_property_model,
    count_parameters,
    et,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"
CUTOFF = 4.0
TINY = dict(hidden_channels=32, num_layers=3, num_rbf=16, num_heads=4, cutoff=CUTOFF)


def _graph(atoms, cutoff: float = CUTOFF):
    return build_graph(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, cutoff)


def _structures():
    """Three small periodic crystals of different sizes and species."""
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    si = bulk("Si", "diamond", a=5.43)
    tio = bulk("Ti", "hcp", a=2.95, c=4.68).repeat((1, 1, 2))
    tio.numbers[1] = 8  # a Ti/O hcp variant: two species, four atoms
    tio.rattle(0.05, seed=1)
    return [nacl, si, tio]


def _random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_fingerprint_model(ModelConfig(**TINY), out_dim=7).double().eval()
    return m


def _graph64(atoms, cutoff: float = CUTOFF):
    """The graph in float64, positions and image shifts exact (``build_graph`` stores float32)."""
    g = _graph(atoms, cutoff)
    cell = torch.as_tensor(atoms.cell.array, dtype=torch.float64)
    images = torch.round(g.edge_shift.double() @ torch.linalg.inv(cell))
    g.pos = torch.as_tensor(atoms.positions, dtype=torch.float64)
    g.edge_shift = images @ cell
    return g


def test_rotation_invariance_and_vec_equivariance(model):
    atoms = _structures()[2]
    rot = _random_rotation(0)
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell.array @ rot.T, scale_atoms=True)
    g, gr = _graph64(atoms), _graph64(rotated)
    with torch.no_grad():
        torch.testing.assert_close(model(gr), model(g), atol=1e-10, rtol=1e-8)
        x, vec = model.backbone(g, return_vec=True)
        xr, vecr = model.backbone(gr, return_vec=True)
    assert vec.abs().max() > 1e-3  # vector features are really there
    torch.testing.assert_close(xr, x, atol=1e-10, rtol=1e-8)
    expected = torch.einsum("ij,njh->nih", torch.as_tensor(rot), vec)
    torch.testing.assert_close(vecr, expected, atol=1e-10, rtol=1e-8)


def test_translation_invariance(model):
    g = _graph64(_structures()[2])
    moved = g.clone()
    moved.pos = moved.pos + torch.tensor([1.3, -7.2, 0.4], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(moved), model(g), atol=1e-10, rtol=1e-8)


def test_permutation_equivariance(model):
    atoms = _structures()[0].repeat((2, 1, 1))
    atoms.rattle(0.05, seed=2)
    perm = np.random.default_rng(0).permutation(len(atoms))
    g, gp = _graph64(atoms), _graph64(atoms[perm])
    with torch.no_grad():
        torch.testing.assert_close(model(gp), model(g)[perm], atol=1e-10, rtol=1e-8)


def test_supercell_matches_primitive_cell(model):
    prim = bulk("NaCl", "rocksalt", a=5.64)
    prim.rattle(0.05, seed=3)  # break symmetry: atoms of a cell are then all different
    sc = prim.repeat((2, 2, 2))
    with torch.no_grad():
        out_p = model(_graph64(prim))
        out_s = model(_graph64(sc))
    torch.testing.assert_close(out_s, out_p.repeat(8, 1), atol=1e-10, rtol=1e-8)


def test_batch_matches_single_graphs(model):
    graphs = [_graph(a) for a in _structures()]
    batch = Batch.from_data_list(graphs)
    m = model.float()
    try:
        with torch.no_grad():
            out = m(batch)
            singles = torch.cat([m(g) for g in graphs])
    finally:
        model.double()
    torch.testing.assert_close(out, singles, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_property_model_pooling(pooling):
    torch.manual_seed(0)
    model = build_property_model(ModelConfig(**TINY), out_dim=3, pooling=pooling).eval()
    graphs = [_graph(a) for a in _structures()]
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        out = model(batch)
        per_atom = model.head.mlp(model.backbone(batch))
        single = torch.cat([model(g) for g in graphs])
    assert out.shape == (3, 3)
    reduce = torch.mean if pooling == "mean" else torch.sum
    expected = torch.stack([reduce(per_atom[batch.batch == k], 0) for k in range(3)])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(single, out, atol=1e-5, rtol=1e-5)


def test_property_head_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        build_property_model(ModelConfig(**TINY), pooling="max")


@pytest.mark.parametrize(
    ("name", "target", "tolerance"), [("small", 1e6, 0.3), ("base", 1e7, 0.3), ("large", 1e8, None)]
)
def test_yaml_parameter_counts(name, target, tolerance):
    cfg = ModelConfig.from_yaml(CONFIGS / f"{name}.yaml")
    with torch.device("meta"):  # no memory for the large model's weights
        n = count_parameters(build_fingerprint_model(cfg, out_dim=64))
    if tolerance is None:
        assert n >= target
    else:
        assert abs(n - target) <= tolerance * target, n


def test_activation_checkpointing_is_exact():
    torch.manual_seed(0)
    plain = build_fingerprint_model(ModelConfig(**TINY), out_dim=5).double().train()
    ckpt = build_fingerprint_model(
        ModelConfig(**TINY, activation_checkpointing=True), out_dim=5
    ).double()
    ckpt.load_state_dict(plain.state_dict())
    ckpt.train()
    g = _graph64(_structures()[2])
    g.pos.requires_grad_(True)
    target = torch.randn(len(g.z), 5, dtype=torch.float64)
    results = []
    for m in (plain, ckpt):
        m.zero_grad()
        g.pos.grad = None
        out = m(g)
        ((out - target) ** 2).mean().backward()
        results.append((out.detach(), g.pos.grad.clone(), [p.grad.clone() for p in m.parameters()]))
    (o1, f1, g1), (o2, f2, g2) = results
    torch.testing.assert_close(o2, o1, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(f2, f1, atol=1e-12, rtol=1e-10)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = build_fingerprint_model(ModelConfig(**TINY), out_dim=5).train()
    batch = Batch.from_data_list([_graph(a) for a in _structures()])
    model(batch).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_autocast_bfloat16_runs():
    torch.manual_seed(0)
    model = build_fingerprint_model(ModelConfig(**TINY), out_dim=5).train()
    batch = Batch.from_data_list([_graph(a) for a in _structures()])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
    out.float().square().mean().backward()
    assert torch.isfinite(out.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():
        ref = model(batch)
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_isolated_atom_and_single_layer():
    """A graph without edges works, and so does a one-layer model (no vector features)."""
    cfg = ModelConfig(**{**TINY, "num_layers": 1})
    model = build_fingerprint_model(cfg, out_dim=2)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.center(vacuum=10.0)
    atoms.pbc = False
    g = build_graph(atoms.numbers[:1], atoms.positions[:1], atoms.cell.array, atoms.pbc, CUTOFF)
    assert g.edge_index.shape[1] == 0
    out = model(g)
    assert out.shape == (1, 2) and torch.isfinite(out).all()
    x, vec = model.backbone(_graph(_structures()[0]), return_vec=True)
    assert vec is None and x.shape == (2, cfg.hidden_channels)


def test_atomic_number_beyond_max_z_is_rejected():
    model = build_backbone(ModelConfig(**{**TINY, "max_z": 12}))
    with pytest.raises(ValueError, match="max_z"):
        model(_graph(_structures()[0]))  # NaCl: Z = 17 >= 12


def test_yaml_loads_and_unknown_keys_fail(tmp_path):
    cfg = ModelConfig.from_yaml(CONFIGS / "base.yaml", overrides=["num_layers=2"])
    assert cfg.hidden_channels == 352 and cfg.num_layers == 2 and cfg.cutoff == 6.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("hidden_channels: 64\nnum_layer: 4\n")
    with pytest.raises(ValueError, match=r"unknown model config key\(s\) \['num_layer'\]"):
        ModelConfig.from_yaml(bad)
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(hidden_channels=30, num_heads=8)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_backbone_state_dict_round_trip_into_property_model():
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    pretrained = build_fingerprint_model(cfg, out_dim=9)
    finetune = build_property_model(cfg, out_dim=1, pooling="sum")
    result = finetune.backbone.load_state_dict(pretrained.backbone.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    g = _graph(_structures()[1])
    with torch.no_grad():
        torch.testing.assert_close(finetune.backbone(g), pretrained.backbone(g))
        out = finetune(g)
    assert out.shape == (1, 1)
    assert math.isfinite(float(out))


def reference_backbone(model, data):
    """The ET forward in plain autograd ops, one row per edge, from ``model``'s weights.

    Written from the architecture's formulas; shares no code with the model's implementations
    (``reference``, and the fused, paired, blocked one), which must give the same outputs and
    gradients.
    """
    src, dst = data.edge_index
    vec_e = edge_vectors(data)
    r = vec_e.norm(dim=-1)
    unit = vec_e / r[:, None]
    rc = model.cutoff
    cut = 0.5 * (torch.cos(math.pi * r / rc) + 1) * (r < rc)
    rb = model.rbf
    rbf = cut[:, None] * torch.exp(-rb.betas * (torch.exp(-rb.alpha * r)[:, None] - rb.means) ** 2)
    n, e = data.z.shape[0], src.shape[0]

    def scatter(msg):
        return torch.zeros((n, *msg.shape[1:]), dtype=msg.dtype).index_add(0, dst, msg)

    ne = model.neighbor_embedding
    x = model.embedding(data.z)
    w = ne.distance_proj(rbf) * cut[:, None]
    x = ne.combine(torch.cat([x, scatter(ne.embedding(data.z)[src] * w)], dim=1))
    vec = torch.zeros((n, 3, x.shape[1]), dtype=x.dtype)
    for layer in model.layers:
        H, nh = layer.hidden_channels, layer.num_heads
        q, k, vx, *rest = layer.qkv(layer.layernorm(x)).split(H, dim=1)
        dk, dvx, *drest = torch.nn.functional.silu(layer.dkv(rbf)).split(H, dim=1)
        s = (q[dst] * k[src] * dk).view(e, nh, -1).sum(-1)
        attn = torch.nn.functional.silu(s) * cut[:, None]
        xa = scatter(((vx[src] * dvx).view(e, nh, -1) * attn[..., None]).view(e, H))
        va = None
        if layer.vec_out:
            dv2 = drest[0] * cut[:, None] if layer.vector_cutoff else drest[0]
            vmsg = (rest[0][src] * dv2)[:, None, :] * unit[:, :, None]
            if layer.vec_in:
                dv1 = drest[1] * cut[:, None] if layer.vector_cutoff else drest[1]
                vmsg = vmsg + vec[src] * (rest[1][src] * dv1)[:, None, :]
            va = scatter(vmsg)
        o3, *o21 = layer.o_proj(xa).split(H, dim=1)
        if layer.vec_in:
            u1, u2, *u3 = layer.vec_proj(vec).split(H, dim=-1)
            dx = (u1 * u2).sum(1) * o21[0] + o3
            dvec = u3[0] * o21[1][:, None, :] + va if layer.vec_out else None
        else:
            dx, dvec = o3, va
        x = x + dx
        if dvec is not None:
            vec = vec + dvec
    return model.out_norm(x)


@pytest.mark.parametrize(
    ("pair", "block_elements", "vector_cutoff", "drop_edge"),
    [
        (True, 1 << 30, False, False),  # paired, one block
        (True, 32 * 7, False, False),  # paired, blocks of 7 pairs
        (False, 32 * 5, False, False),  # one row per edge, blocks of 5 edges
        (True, 32 * 7, True, False),  # vector_cutoff
        (True, 32 * 7, False, True),  # a graph that is not symmetric: per-edge fallback
    ],
)
@pytest.mark.parametrize("impl", ["reference", "fused"])  # blocks matter only to fused
def test_matches_plain_reference_with_gradients(
    monkeypatch, impl, pair, block_elements, vector_cutoff, drop_edge
):
    monkeypatch.setattr(et, "CPU_BLOCK_ELEMENTS", block_elements)
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY, pair_edges=pair, vector_cutoff=vector_cutoff, attention_impl=impl)
    model = build_backbone(cfg).double()
    for p in model.parameters():  # break the zero-bias initialisation
        p.data.add_(0.05 * torch.randn_like(p))
    graphs = [_graph64(a) for a in _structures()]
    batch = Batch.from_data_list(graphs)
    if drop_edge:
        batch.edge_index = batch.edge_index[:, 1:]
        batch.edge_shift = batch.edge_shift[1:]
    src, dst = batch.edge_index
    paired = et.pair_edges(src, dst, edge_vectors(batch)) is not None
    assert paired == (not drop_edge)

    results = []
    pos0 = batch.pos.detach().clone()
    for fn in (model, lambda b: reference_backbone(model, b)):
        model.zero_grad()
        batch.pos = pos = pos0.clone().requires_grad_(True)
        out = fn(batch)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append((out.detach(), pos.grad, {n: p.grad for n, p in model.named_parameters()}))
    (out, force, grads), (ref, ref_force, ref_grads) = results
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(force, ref_force, atol=1e-10, rtol=1e-9)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], atol=1e-10, rtol=1e-9, msg=name)
