"""The equivariant transformer backbone (TorchMD-Net ET family, Thölke & De Fabritiis, ICLR 2022).

Architecture, as in the paper's pre-training setup (see ``shared/paper-notes.md``):

- atom embedding ``x_i = E[z_i]`` refined by a neighbour embedding
  ``x_i <- W_c [x_i, sum_j E'[z_j] * (W_d f(r_ij)) * C(r_ij)]``;
- ``f(r)``: trainable exponential-normal radial basis (PhysNet) times the cosine cutoff ``C(r)``;
- ``L`` layers of equivariant multi-head attention on scalar features ``x [N, H]`` and vector
  features ``vec [N, 3, H]``: pre-layer norm, ``q, k, v`` projections, distance filters
  ``dk, dv = act(W f(r_ij))``, attention weights ``attn_act(sum_head q_i * k_j * dk) * C(r_ij)``
  (no softmax, as in ET), vector messages ``vec_j * v1 + v2 * r_ij_hat``, and the node update
  ``dx = <U1 vec, U2 vec> * o2 + o3``, ``dvec = U3 vec * o1 + sum_j vec_msg``; residual adds;
- a final layer norm; the output is the per-atom scalar representation ``[N, H]``.

Edges come from the graph (``fmpretrain.data.graphs``): every periodic image is already in
``edge_index``/``edge_shift`` and there is no radius search inside the model. As in the
paper's MatDeepLearn variant, an atom has no self loop (its own periodic images are ordinary
neighbours). Everything is invariant to rotations and translations (scalars), equivariant for
``vec``, permutation equivariant, and a supercell gives the same per-atom outputs as its cell.

Two implementations of a layer's per-edge part (``attention_impl``), equal in value and
gradient (``tests/models/test_attention_impl.py``, float64, 1e-10):

- ``"reference"``: :meth:`EquivariantAttention.messages_reference`, the formulas
  above in plain autograd ops, one row per edge. The place to read or change the architecture;
  autocast reaches all of it, and it supports a second derivative (a loss on forces);
- ``"fused"``: :class:`_EdgeAttention`, a hand-written autograd function that walks the edges
  in cache-sized blocks on CPU and keeps only node tensors and the ``[E, heads]`` attention
  logits for the backward, which recomputes each block: an order of magnitude less memory
  kept for the backward, and on CPU faster than the reference where cells have many
  neighbours (``benchmarks/attention_impl.py`` measures the two). It computes in ``q``'s dtype
  (bf16 under bf16 autocast); no second derivative;
- ``"auto"`` (the default): ``"fused"`` on CPU, ``"reference"`` elsewhere (see
  :func:`resolve_attention_impl`), so a GPU runs the readable path.

Both share the rest (speed; the arithmetic is that of the architecture above):

- the radial basis, cutoff and unit vectors are computed once per forward and shared by all
  layers, and once per *pair* of opposite edges: a radius graph over periodic images is
  symmetric and the reverse of an edge has the bitwise-negated vector, so every radial
  quantity (basis, cutoff, the layers' distance filters) needs ``E / 2`` rows
  (:func:`pair_edges`; a graph that is not symmetric falls back to one row per edge);
- each layer has one fused ``q, k, v`` ``Linear`` and one fused distance-filter ``Linear``;
- the first layer receives ``vec = 0``, so it has no ``vec`` projection and no vector gather;
  the last layer's vector output is read by nothing, so it computes no vector messages. The
  parameters that would only ever multiply zeros or feed unused outputs are not created.

The cosine cutoff is the descriptors' (:func:`fmpretrain.descriptors.base.cosine_cutoff`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from fmpretrain.data.graphs import edge_vectors
from fmpretrain.descriptors.base import cosine_cutoff


def _shifted_softplus(x: Tensor) -> Tensor:
    return F.softplus(x) - math.log(2.0)


#: Activation functions by name (``ModelConfig.activation`` / ``attn_activation``).
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "ssp": _shifted_softplus,
}


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}"
        ) from None


def _xavier_(weight: Tensor, blocks: list[tuple[int, int]]) -> None:
    """Xavier-uniform init of row blocks of a fused weight, each with its own ``fan_out``.

    ``blocks`` lists ``(rows, fan_out)``: a fused projection is initialised exactly as the
    separate ``Linear`` layers it replaces (``fan_out`` is that of the unfused layer).
    """
    fan_in = weight.shape[1]
    start = 0
    with torch.no_grad():
        for rows, fan_out in blocks:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            weight[start : start + rows].uniform_(-bound, bound)
            start += rows
    if start != weight.shape[0]:
        raise AssertionError("init blocks do not cover the weight")


class ExpNormalRBF(nn.Module):
    """PhysNet's exponential-normal radial basis times the cosine cutoff.

    ``f_k(r) = C(r) exp(-beta_k (exp(-alpha r) - mu_k)^2)``, ``alpha = 5 / r_c``; ``mu`` evenly
    spaced in ``[exp(-r_c), 1]``, ``beta = (2 / K (1 - exp(-r_c)))^-2``; trainable or not.
    """

    def __init__(self, cutoff: float, num_rbf: int, trainable: bool = True):
        super().__init__()
        self.cutoff = float(cutoff)
        self.num_rbf = int(num_rbf)
        self.alpha = 5.0 / self.cutoff
        means, betas = self._initial_params()
        if trainable:
            self.means = nn.Parameter(means)
            self.betas = nn.Parameter(betas)
        else:
            self.register_buffer("means", means)
            self.register_buffer("betas", betas)

    def _initial_params(self) -> tuple[Tensor, Tensor]:
        start = math.exp(-self.cutoff)
        means = torch.linspace(start, 1.0, self.num_rbf)
        betas = torch.full((self.num_rbf,), (2.0 / self.num_rbf * (1.0 - start)) ** -2)
        return means, betas

    def reset_parameters(self) -> None:
        means, betas = self._initial_params()
        with torch.no_grad():
            self.means.copy_(means)
            self.betas.copy_(betas)

    def forward(self, r: Tensor, cut: Tensor | None = None) -> Tensor:
        """``[E] -> [E, num_rbf]``; pass ``cut = cosine_cutoff(r)`` when already computed."""
        if cut is None:
            cut = cosine_cutoff(r, self.cutoff)
        diff = torch.exp(-self.alpha * r).unsqueeze(-1) - self.means
        return cut.unsqueeze(-1) * torch.exp(-self.betas * diff * diff)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, num_rbf={self.num_rbf}"


class NeighborEmbedding(nn.Module):
    """``x_i <- W_c [x_i, sum_j E'[z_j] * (W_d f_ij) * C(r_ij)]`` (ET's neighbour embedding)."""

    def __init__(self, hidden_channels: int, num_rbf: int, max_z: int):
        super().__init__()
        self.embedding = nn.Embedding(max_z, hidden_channels)
        self.distance_proj = nn.Linear(num_rbf, hidden_channels)
        self.combine = nn.Linear(2 * hidden_channels, hidden_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        for lin in (self.distance_proj, self.combine):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self, z: Tensor, x: Tensor, src: Tensor, dst: Tensor, rbf: Tensor, cut: Tensor
    ) -> Tensor:
        w = self.distance_proj(rbf) * cut.unsqueeze(-1)
        if w.shape[0] != src.shape[0]:  # one row per pair of opposite edges [forward; reverse]
            w = torch.cat([w, w])
        msg = self.embedding(z).index_select(0, src) * w
        agg = msg.new_zeros((x.shape[0], msg.shape[1])).index_add_(0, dst, msg)
        return self.combine(torch.cat([x, agg.to(x.dtype)], dim=-1))


def _pair_mul(t: Tensor, radial: Tensor, out: Tensor | None = None) -> Tensor:
    """``t * radial`` with ``radial`` per edge, or per pair (``t`` viewed as ``[2, P, ...]``)."""
    if radial.shape[0] == t.shape[0]:
        return torch.mul(t, radial, out=out)
    pairs = (2, -1, *t.shape[1:])
    if out is None:
        return (t.view(pairs) * radial).view(t.shape)
    torch.mul(t.view(pairs), radial, out=out.view(pairs))
    return out


def _pair_dot(
    a: Tensor, b: Tensor, rows: int, out: Tensor | None = None, accumulate: bool = False
) -> Tensor:
    """``a * b``, summed over the two edges of each pair when ``rows`` is ``E / 2``.

    Written to ``out`` if given; added to it with ``accumulate=True``.
    """
    pairs = (
        [(a, b)]
        if rows == a.shape[0]
        else list(zip(a.view(2, rows, *a.shape[1:]), b.view(2, rows, *b.shape[1:]), strict=True))
    )
    if not accumulate:
        out = torch.mul(*pairs[0], out=out)
        pairs = pairs[1:]
    assert out is not None
    for x, y in pairs:
        out.addcmul_(x, y)
    return out


def _act_backward(act: Callable[[Tensor], Tensor], s: Tensor, grad: Tensor) -> Tensor:
    """``grad * act'(s)``."""
    if act is F.silu:
        return torch.ops.aten.silu_backward(grad, s)
    with torch.enable_grad():
        s = s.detach().requires_grad_(True)
        (out,) = torch.autograd.grad(act(s), s, grad)
    return out


#: On CPU the edges of a layer are processed in blocks of about this many ``rows x channels``
#: per thread, so that a block's per-edge intermediates stay in cache: the layers are
#: memory-bound, and one pass over all edges at once streams every ``[E, H]`` intermediate
#: through DRAM. Measured best on one core of an AMD EPYC (2^14 to 2^16 are within 5%).
CPU_BLOCK_ELEMENTS = 1 << 15

#: On accelerators blocks are large (few large kernels) and only bound the memory of the
#: per-edge temporaries: about this many ``rows x channels`` (256 MiB in float32).
DEVICE_BLOCK_ELEMENTS = 1 << 26


def _block_rows(hidden: int, device: torch.device) -> int:
    """Radial rows per block of edges."""
    if device.type != "cpu":
        return max(1, DEVICE_BLOCK_ELEMENTS // hidden)
    return max(16, CPU_BLOCK_ELEMENTS * max(1, torch.get_num_threads()) // hidden)


def _edge_block(t: Tensor, groups: int, rows: int, r0: int, r1: int) -> Tensor:
    """Rows ``r0:r1`` of each of the ``groups`` edge groups of ``t`` ``[groups * rows, ...]``."""
    if groups == 1:
        return t[r0:r1]
    return t.view(groups, rows, *t.shape[1:])[:, r0:r1].reshape(-1, *t.shape[1:])


class _EdgeAttention(torch.autograd.Function):
    """The per-edge part of an ET layer, fused by hand: node tensors in, aggregates out.

    Inputs: ``q`` ``[N, H]``; ``kv`` ``[N, G H]`` (``k, v_x[, v_2]``, ``G`` = 2 or 3); ``w``
    ``[N, 3, H]`` (``vec * v_1``) or ``None``; the radial basis ``rbf`` ``[R, K]`` and the
    weight ``[F, K]`` and bias ``[F]`` of the distance filters ``d = act(rbf W^T + b)``
    (``dk, dv_x[, dv_2][, dv_1]``, ``F = (G + [w]) H``); the cutoff ``cut`` ``[R]``; ``unit``
    ``[E, 3]``. ``R = E``, or ``R = E / 2`` with the edges ordered as pairs
    ``[forward; reverse]`` (radial quantities are computed once per pair). Per edge ``j -> i``:

    - ``s = sum_head q_i * k_j * dk``, ``a = attn_act(s) * cut``,
      ``x_i = sum_j v_x,j * dv_x * a`` (per head);
    - ``vec_i = sum_j r_hat ⊗ (v_2,j * dv_2) [+ w_j * dv_1]`` (when ``G = 3``); with
      ``vector_cutoff`` ``dv_2`` and ``dv_1`` are also multiplied by ``cut``.

    Returns ``(x_agg,)`` or ``(x_agg, vec_agg)``. The edges are processed in blocks of radial
    rows (on CPU, see :data:`CPU_BLOCK_ELEMENTS`): a block's filters, gathers and products stay
    in cache and are freed before the next block. Only the inputs and ``s`` ``[E, heads]`` are
    kept for the backward, which recomputes each block: no ``[E, ...]`` intermediate of the
    layer ever exists whole. Gradient blocks go into one buffer (no ``cat``), and pairs and
    the 3 vector components are reduced with ``addcmul`` chains. Computes in ``q``'s dtype
    (the autocast dtype under autocast).
    """

    @staticmethod
    def forward(
        ctx, q, kv, w, rbf, weight, bias, cut, unit, src, dst, num_heads, act, attn_act, vcut
    ):
        inputs = (q, kv, w, rbf, weight, bias, cut, unit)
        ctx.dtypes = [None if t is None else t.dtype for t in inputs]
        dtype = q.dtype
        q, kv, w, rbf, weight, bias, cut, unit = (
            None if t is None else t.to(dtype) for t in inputs
        )
        n, H = q.shape
        e, rows, nh = src.shape[0], rbf.shape[0], num_heads
        groups = e // rows if rows else 1
        gh = kv.shape[1]
        has_vec = gh == 3 * H

        agg = q.new_zeros((n, H))
        vec_agg = q.new_zeros((n, 3, H)) if has_vec else None
        s = q.new_empty((groups, rows, nh))
        step = _block_rows(H, q.device)
        with torch.autocast(q.device.type, enabled=False):
            for r0 in range(0, rows, step):
                r1 = min(rows, r0 + step)
                src_b, dst_b = (_edge_block(i, groups, rows, r0, r1) for i in (src, dst))
                cut_b = cut[r0:r1].unsqueeze(-1)
                d_b = act(torch.addmm(bias, rbf[r0:r1], weight.t()))
                if vcut and has_vec:
                    d_b[:, 2 * H :] *= cut_b
                m = _pair_mul(kv.index_select(0, src_b), d_b[:, :gh])  # k dk, v_x dv_x[, v_2 dv_2]
                s_b = (q.index_select(0, dst_b) * m[:, :H]).view(-1, nh, H // nh).sum(-1)
                s[:, r0:r1] = s_b.view(groups, r1 - r0, nh)
                a = _pair_mul(attn_act(s_b), cut_b)
                msg = (m[:, H : 2 * H].view(-1, nh, H // nh) * a.unsqueeze(-1)).view(-1, H)
                agg.index_add_(0, dst_b, msg)
                if vec_agg is not None:
                    v2 = m[:, 2 * H :]
                    unit_b = _edge_block(unit, groups, rows, r0, r1)
                    if w is None:
                        vmsg = unit_b.unsqueeze(-1) * v2.unsqueeze(1)
                    else:
                        vmsg = _pair_mul(w.index_select(0, src_b), d_b[:, gh:].unsqueeze(1))
                        for c in range(3):
                            vmsg[:, c].addcmul_(v2, unit_b[:, c : c + 1])
                    vec_agg.index_add_(0, dst_b, vmsg)
        ctx.save_for_backward(q, kv, w, rbf, weight, bias, cut, unit, src, dst, s.view(-1, nh))
        ctx.act, ctx.attn_act, ctx.vcut, ctx.num_heads = act, attn_act, vcut, nh
        return (agg,) if vec_agg is None else (agg, vec_agg)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x, grad_vec=None):
        q, kv, w, rbf, weight, bias, cut, unit, src, dst, s = ctx.saved_tensors
        has_vec = kv.shape[1] == 3 * q.shape[1]
        need = ctx.needs_input_grad

        grad_x = grad_x.to(q.dtype)
        grad_vec = None if grad_vec is None else grad_vec.to(q.dtype)
        grad_q = torch.zeros_like(q) if need[0] else None
        grad_kv = torch.zeros_like(kv) if need[1] else None
        grad_w = torch.zeros_like(w) if need[2] and w is not None else None
        grad_rbf = torch.empty_like(rbf) if need[3] else None
        grad_weight = torch.zeros_like(weight) if need[4] else None
        grad_bias = torch.zeros_like(bias) if need[5] else None
        grad_cut = torch.empty_like(cut) if need[6] else None
        grad_unit = torch.zeros_like(unit) if need[7] and has_vec else None
        with torch.autocast(q.device.type, enabled=False):
            _EdgeAttention._backward_blocks(
                ctx,
                q,
                kv,
                w,
                rbf,
                weight,
                bias,
                cut,
                unit,
                src,
                dst,
                s,
                grad_x,
                grad_vec,
                (grad_q, grad_kv, grad_w, grad_rbf, grad_weight, grad_bias, grad_cut, grad_unit),
            )
        grads = [grad_q, grad_kv, grad_w, grad_rbf, grad_weight, grad_bias, grad_cut, grad_unit]
        grads = [None if g is None else g.to(dt) for g, dt in zip(grads, ctx.dtypes, strict=True)]
        return (*grads, None, None, None, None, None, None)

    @staticmethod
    def _backward_blocks(
        ctx, q, kv, w, rbf, weight, bias, cut, unit, src, dst, s, grad_x, grad_vec, grads
    ) -> None:
        """Accumulate the input gradients into ``grads``, block by block."""
        grad_q, grad_kv, grad_w, grad_rbf, grad_weight, grad_bias, grad_cut, grad_unit = grads
        H = q.shape[1]
        e, rows, nh = src.shape[0], rbf.shape[0], ctx.num_heads
        groups = e // rows if rows else 1
        gh = kv.shape[1]
        has_vec = gh == 3 * H
        vcut = ctx.vcut and has_vec
        act, attn_act = ctx.act, ctx.attn_act
        need_d = grad_rbf is not None or grad_weight is not None or grad_bias is not None
        step = _block_rows(H, q.device)
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            nb = r1 - r0
            src_b, dst_b, s_b = (_edge_block(i, groups, rows, r0, r1) for i in (src, dst, s))
            cut_b = cut[r0:r1].unsqueeze(-1)
            pre = torch.addmm(bias, rbf[r0:r1], weight.t())
            d_b = act(pre)
            if vcut:
                d_raw = d_b[:, 2 * H :].clone()
                d_b[:, 2 * H :] *= cut_b
            kv_j = kv.index_select(0, src_b)
            m = _pair_mul(kv_j, d_b[:, :gh])
            grad_m = torch.empty_like(m)  # gradient blocks of m, written in place
            grad_d = torch.empty_like(d_b) if need_d or vcut else None
            act_s = attn_act(s_b)

            # x_i = sum_j v_x dv_x a,  a = attn_act(s) cut
            g_msg = grad_x.index_select(0, dst_b).view(-1, nh, H // nh)
            a = _pair_mul(act_s, cut_b)
            torch.mul(g_msg, a.unsqueeze(-1), out=grad_m[:, H : 2 * H].view(-1, nh, H // nh))
            g_a = (g_msg * m[:, H : 2 * H].view(-1, nh, H // nh)).sum(-1)
            del g_msg, a
            if grad_cut is not None:
                grad_cut[r0:r1] = _pair_dot(g_a, act_s, nb).sum(-1)
            g_s = _act_backward(attn_act, s_b, _pair_mul(g_a, cut_b)).unsqueeze(-1)
            del g_a, act_s
            # s = sum_head q_i k_j dk
            q_i = q.index_select(0, dst_b).view(-1, nh, H // nh)
            torch.mul(g_s, q_i, out=grad_m[:, :H].view(-1, nh, H // nh))
            del q_i
            if grad_q is not None:
                grad_q.index_add_(0, dst_b, (g_s * m[:, :H].view(-1, nh, H // nh)).view(-1, H))
            del g_s

            if has_vec:
                g_vmsg = (
                    grad_vec.index_select(0, dst_b)
                    if grad_vec is not None
                    else m.new_zeros((m.shape[0], 3, H))
                )
                unit_b = _edge_block(unit, groups, rows, r0, r1)
                g_v2 = grad_m[:, 2 * H :]
                torch.mul(g_vmsg[:, 0], unit_b[:, :1], out=g_v2)
                g_v2.addcmul_(g_vmsg[:, 1], unit_b[:, 1:2]).addcmul_(g_vmsg[:, 2], unit_b[:, 2:])
                if grad_unit is not None:
                    g_unit = (g_vmsg * m[:, 2 * H :].unsqueeze(1)).sum(-1)
                    grad_unit.view(groups, rows, 3)[:, r0:r1] = g_unit.view(groups, nb, 3)
                if w is not None:
                    d1 = d_b[:, gh:]
                    if grad_w is not None:
                        grad_w.index_add_(0, src_b, _pair_mul(g_vmsg, d1.unsqueeze(1)))
                    if grad_d is not None:
                        w_j = w.index_select(0, src_b)
                        g_d1 = _pair_dot(g_vmsg[:, 0], w_j[:, 0], nb, out=grad_d[:, gh:])
                        for c in (1, 2):
                            _pair_dot(g_vmsg[:, c], w_j[:, c], nb, out=g_d1, accumulate=True)
                        del w_j
                del g_vmsg

            # m = kv_j * d
            if grad_kv is not None:
                grad_kv.index_add_(0, src_b, _pair_mul(grad_m, d_b[:, :gh]))
            if grad_d is not None:
                _pair_dot(grad_m, kv_j, nb, out=grad_d[:, :gh])
                if vcut:  # d[:, 2H:] = d_raw * cut
                    g_vd = grad_d[:, 2 * H :]
                    if grad_cut is not None:
                        grad_cut[r0:r1] += (g_vd * d_raw).sum(-1)
                    g_vd *= cut_b
                # d = act(rbf W^T + b)
                if need_d:
                    g_pre = _act_backward(act, pre, grad_d)
                    if grad_weight is not None:
                        grad_weight.addmm_(g_pre.t(), rbf[r0:r1])
                    if grad_bias is not None:
                        grad_bias += g_pre.sum(0)
                    if grad_rbf is not None:
                        torch.mm(g_pre, weight, out=grad_rbf[r0:r1])
            del grad_m, grad_d, kv_j, m, pre, d_b


#: Values of ``ModelConfig.attention_impl`` (see :func:`resolve_attention_impl`).
ATTENTION_IMPLS = ("reference", "fused", "auto")


def resolve_attention_impl(impl: str, device: torch.device) -> str:
    """The implementation ``impl`` stands for on ``device``: ``"reference"`` or ``"fused"``.

    ``"auto"`` is ``"fused"`` on CPU and ``"reference"`` elsewhere. On CPU
    (``benchmarks/attention_impl.py``, one thread) the fused kernel is as fast as the reference
    on generated cells (~45 edges per atom) and faster on real small cells with many
    neighbours (perov_5, 63 edges per atom: 1.38x per training step, 1.77x per inference
    forward), and keeps 14-20x less memory for the backward: faster or as fast, far leaner.
    On accelerators
    it runs as one block, so its cache blocking buys nothing there, and plain autograd leaves
    autocast, profilers and compilers the whole graph (not measured on a GPU; where activation
    memory limits a GPU run, ``"fused"`` or activation checkpointing are the options).
    """
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"unknown attention_impl {impl!r}; choose from {ATTENTION_IMPLS}")
    if impl == "auto":
        return "fused" if device.type == "cpu" else "reference"
    return impl


def _per_edge(radial: Tensor, num_edges: int) -> Tensor:
    """Radial rows per edge: rows per pair of opposite edges ``[forward; reverse]`` repeated."""
    return radial if radial.shape[0] == num_edges else torch.cat([radial, radial])


def _scatter_sum(messages: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """``out[i] = sum_{e: index[e] = i} messages[e]`` (zero for a node without edges)."""
    out = messages.new_zeros((num_nodes, *messages.shape[1:]))
    return out.index_add(0, index, messages)


class EquivariantAttention(nn.Module):
    """One ET equivariant multi-head attention layer, returning ``(dx, dvec)``.

    ``vec_in=False`` (first layer): the incoming ``vec`` is zero and is not passed.
    ``vec_out=False`` (last layer): no vector update is computed (``dvec`` is ``None``).
    Fused weights, in row blocks of ``H`` channels:

    - ``qkv``: ``q, k, v_x[, v_2][, v_1]``; ``dkv`` (on the radial basis): ``dk, dv_x[, dv_2][,
      dv_1]``. ``v_2 * dv_2`` (needs ``vec_out``) scales the unit edge vector; ``v_1 * dv_1``
      (needs ``vec_in`` and ``vec_out``) scales the neighbour's vector features;
    - ``vec_proj`` (only with ``vec_in``): ``U_1, U_2[, U_3]``; ``o_proj``: ``o_3[, o_2][, o_1]``.

    Radial inputs (``rbf``, ``cut``) have one row per edge or, with edges ordered as pairs
    ``[forward; reverse]``, one row per pair. The per-edge part is
    :meth:`messages_reference` or :meth:`messages_fused`, by ``attention_impl`` (one of
    :data:`ATTENTION_IMPLS`, resolved on the input's device by :func:`resolve_attention_impl`);
    both use the same weights, so a model switches between them freely.
    """

    def __init__(
        self,
        hidden_channels: int,
        num_rbf: int,
        num_heads: int,
        activation: str = "silu",
        attn_activation: str = "silu",
        vec_in: bool = True,
        vec_out: bool = True,
        vector_cutoff: bool = False,
        attention_impl: str = "auto",
    ):
        super().__init__()
        if hidden_channels % num_heads:
            raise ValueError(
                f"hidden_channels ({hidden_channels}) must be divisible by num_heads ({num_heads})"
            )
        resolve_attention_impl(attention_impl, torch.device("cpu"))  # validates the name
        H = hidden_channels
        self.hidden_channels = H
        self.num_heads = num_heads
        self.head_dim = H // num_heads
        self.vec_in = vec_in
        self.vec_out = vec_out
        self.vector_cutoff = vector_cutoff
        self.attention_impl = attention_impl
        self.act = get_activation(activation)
        self.attn_act = get_activation(attn_activation)
        # gathered per edge: k, v_x, and v_2 when vectors are produced; v_1 when also consumed
        self.num_gathered = 2 + int(vec_out)
        self.has_v1 = vec_in and vec_out

        self.layernorm = nn.LayerNorm(H)
        self.qkv = nn.Linear(H, (1 + self.num_gathered + self.has_v1) * H)
        self.dkv = nn.Linear(num_rbf, (self.num_gathered + self.has_v1) * H)
        self.vec_proj = nn.Linear(H, (2 + int(vec_out)) * H, bias=False) if vec_in else None
        self.o_proj = nn.Linear(H, (1 + int(vec_in) + int(self.has_v1)) * H)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # as ET's separate q, k ([H, H]), v, dv, o, vec ([3H, H]) and dk ([H, R]) projections
        H = self.hidden_channels
        num_values = self.num_gathered - 1 + self.has_v1
        self.layernorm.reset_parameters()
        _xavier_(self.qkv.weight, [(H, H), (H, H)] + [(H, 3 * H)] * num_values)
        _xavier_(self.dkv.weight, [(H, H)] + [(H, 3 * H)] * num_values)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.dkv.bias)
        if self.vec_proj is not None:
            _xavier_(self.vec_proj.weight, [(H, 3 * H)] * (self.vec_proj.out_features // H))
        _xavier_(self.o_proj.weight, [(H, 3 * H)] * (self.o_proj.out_features // H))
        nn.init.zeros_(self.o_proj.bias)

    def forward(
        self,
        x: Tensor,
        vec: Tensor | None,
        src: Tensor,
        dst: Tensor,
        rbf: Tensor,
        cut: Tensor,
        unit: Tensor,
    ) -> tuple[Tensor, Tensor | None]:
        """``(dx [N, H], dvec [N, 3, H] or None)`` for edges ``src[e] = j -> dst[e] = i``."""
        qkv = self.qkv(self.layernorm(x))
        if resolve_attention_impl(self.attention_impl, x.device) == "fused":
            agg, vec_agg = self.messages_fused(qkv, vec, src, dst, rbf, cut, unit)
        else:
            agg, vec_agg = self.messages_reference(qkv, vec, src, dst, rbf, cut, unit)

        H = self.hidden_channels
        o = self.o_proj(agg).split(H, dim=-1)
        if not self.vec_in:
            return o[0], vec_agg
        assert vec is not None
        u = self.vec_proj(vec).split(H, dim=-1)
        dx = torch.addcmul(o[0], (u[0] * u[1]).sum(dim=1), o[1])
        if not self.vec_out:
            return dx, None
        assert vec_agg is not None
        return dx, torch.addcmul(vec_agg, u[2], o[2].unsqueeze(1))

    def messages_reference(
        self,
        qkv: Tensor,
        vec: Tensor | None,
        src: Tensor,
        dst: Tensor,
        rbf: Tensor,
        cut: Tensor,
        unit: Tensor,
    ) -> tuple[Tensor, Tensor | None]:
        """The aggregated messages ``(x_agg [N, H], vec_agg [N, 3, H] or None)``, as in the paper.

        Per edge ``j -> i`` (``src = j``, ``dst = i``), with ``f`` the radial basis, ``C`` the
        cosine cutoff and ``r_hat`` the unit vector ``r_j - r_i`` (ET, Thölke & De Fabritiis):

        - ``dk, dv_x, dv_2, dv_1 = act(W_d f(r_ij) + b_d)``;
        - ``a_ij = attn_act(sum_{c in head} q_i k_j dk) * C(r_ij)``, per head;
        - ``x_i = sum_j a_ij * v_x,j * dv_x``;
        - ``vec_i = sum_j vec_j * s1 + s2 * r_hat``, ``s1 = v_1,j * dv_1``, ``s2 = v_2,j * dv_2``
          (with ``vector_cutoff``, ``s1`` and ``s2`` also times ``C(r_ij)``).

        Plain autograd ops, one row per edge. Computes in ``qkv``'s dtype (under autocast, that
        of the autocast ``Linear``): the cutoff, unit vectors and ``vec`` are cast to it.
        """
        H, heads, E = self.hidden_channels, self.num_heads, src.shape[0]
        dtype = qkv.dtype
        q, k, v_x, *v_vec = qkv.split(H, dim=-1)  # v_vec: [v_2[, v_1]]
        filters = self.act(self.dkv(rbf))
        dk, dv_x, *dv_vec = _per_edge(filters, E).split(H, dim=-1)  # dv_vec: [dv_2[, dv_1]]
        cut = _per_edge(cut, E).to(dtype).unsqueeze(-1)  # [E, 1]

        def per_head(t: Tensor) -> Tensor:
            return t.view(E, heads, H // heads)

        logits = per_head(q[dst] * k[src] * dk).sum(-1)  # [E, heads]
        attn = self.attn_act(logits) * cut
        x_msg = per_head(v_x[src] * dv_x) * attn.unsqueeze(-1)
        x_agg = _scatter_sum(x_msg.view(E, H), dst, qkv.shape[0])
        if not self.vec_out:
            return x_agg, None

        s2 = v_vec[0][src] * dv_vec[0]
        if self.vector_cutoff:
            s2 = s2 * cut
        vec_msg = s2.unsqueeze(1) * unit.to(dtype).unsqueeze(-1)  # [E, 3, H]
        if self.has_v1:
            assert vec is not None
            s1 = v_vec[1][src] * dv_vec[1]
            if self.vector_cutoff:
                s1 = s1 * cut
            vec_msg = vec_msg + vec.to(dtype)[src] * s1.unsqueeze(1)
        return x_agg, _scatter_sum(vec_msg, dst, qkv.shape[0])

    def messages_fused(
        self,
        qkv: Tensor,
        vec: Tensor | None,
        src: Tensor,
        dst: Tensor,
        rbf: Tensor,
        cut: Tensor,
        unit: Tensor,
    ) -> tuple[Tensor, Tensor | None]:
        """:meth:`messages_reference` computed by the blocked :class:`_EdgeAttention`."""
        H = self.hidden_channels
        v1_split = [H] if self.has_v1 else []
        # ``split`` (not slicing): its backward is one ``cat``, not a zero-filled tensor per slice
        q, kv, *v1 = qkv.split([H, self.num_gathered * H, *v1_split], dim=-1)
        w = None
        if self.has_v1:
            assert vec is not None
            w = vec * v1[0].unsqueeze(1)  # (vec * v_1)_j * dv_1 == vec_j * (v_1,j * dv_1)
        # the distance filters act(dkv(rbf)) are computed inside, block by block
        agg, *vec_agg = _EdgeAttention.apply(
            q,
            kv,
            w,
            rbf,
            self.dkv.weight,
            self.dkv.bias,
            cut,
            unit,
            src,
            dst,
            self.num_heads,
            self.act,
            self.attn_act,
            self.vector_cutoff,
        )
        return agg, vec_agg[0] if vec_agg else None

    def extra_repr(self) -> str:
        return (
            f"heads={self.num_heads}, vec_in={self.vec_in}, vec_out={self.vec_out}, "
            f"vector_cutoff={self.vector_cutoff}, attention_impl={self.attention_impl!r}"
        )


def _lexsort(keys: list[Tensor]) -> Tensor:
    """Indices that sort by ``keys[0]``, then ``keys[1]``, ... (stable)."""
    order = torch.arange(keys[0].shape[0], device=keys[0].device)
    for key in reversed(keys):
        order = order[torch.argsort(key[order], stable=True)]
    return order


def pair_edges(src: Tensor, dst: Tensor, edge_vec: Tensor) -> Tensor | None:
    """A permutation that orders the edges as ``[forward; reverse]``, or ``None``.

    Edge ``k`` of the second half is the reverse (``j -> i``, vector ``-v``) of edge ``k`` of
    the first. Periodic radius graphs are symmetric, and the reverse vector is bitwise ``-v``
    (floating-point negation is exact), so every radial quantity can be computed once per pair.
    Returns ``None`` when some edge has no reverse (then nothing is shared).
    """
    e = src.shape[0]
    if e == 0 or e % 2:
        return None
    with torch.no_grad():
        vec = edge_vec.detach()
        vx, vy, vz = vec.unbind(-1)
        positive = (vx > 0) | ((vx == 0) & ((vy > 0) | ((vy == 0) & (vz > 0))))
        forward = (src < dst) | ((src == dst) & positive)
        fwd = forward.nonzero().squeeze(1)
        rev = (~forward).nonzero().squeeze(1)
        if 2 * fwd.shape[0] != e:
            return None
        fwd = fwd[_lexsort([src[fwd], dst[fwd], vx[fwd], vy[fwd], vz[fwd]])]
        rev = rev[_lexsort([dst[rev], src[rev], -vx[rev], -vy[rev], -vz[rev]])]
        ok = (src[fwd] == dst[rev]).all() & (dst[fwd] == src[rev]).all()
        if not bool(ok & (vec[fwd] == -vec[rev]).all()):
            return None
        return torch.cat([fwd, rev])


class EquivariantTransformer(nn.Module):
    """The ET backbone: a graph (see ``fmpretrain.data.graphs``) -> per-atom scalars ``[N, H]``.

    ``activation_checkpointing=True`` runs each attention layer under
    ``torch.utils.checkpoint`` (non-reentrant) while training with gradients enabled: a layer
    then keeps nothing but its inputs for the backward (its per-edge part already keeps only
    node tensors and ``[E, heads]`` logits). ``pair_edges=True`` computes radial quantities
    once per pair of opposite edges (exact; see :func:`pair_edges`). ``attention_impl`` picks
    the layers' per-edge implementation (:data:`ATTENTION_IMPLS`; settable on a built model,
    e.g. ``model.attention_impl = "fused"``: the weights are the same).

    Gradients with respect to positions (forces) are supported; a second derivative through
    the layers (e.g. a loss on forces) only with the ``"reference"`` implementation.
    """

    def __init__(
        self,
        hidden_channels: int = 128,
        num_layers: int = 8,
        num_rbf: int = 50,
        num_heads: int = 8,
        cutoff: float = 6.0,
        max_z: int = 100,
        activation: str = "silu",
        attn_activation: str = "silu",
        trainable_rbf: bool = True,
        neighbor_embedding: bool = True,
        vector_cutoff: bool = False,
        activation_checkpointing: bool = False,
        pair_edges: bool = True,
        attention_impl: str = "auto",
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        get_activation(activation)
        get_activation(attn_activation)
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.cutoff = float(cutoff)
        self.max_z = max_z
        self.activation_checkpointing = activation_checkpointing
        self.pair_edges = pair_edges

        self.embedding = nn.Embedding(max_z, hidden_channels)
        self.rbf = ExpNormalRBF(cutoff, num_rbf, trainable_rbf)
        self.neighbor_embedding = (
            NeighborEmbedding(hidden_channels, num_rbf, max_z) if neighbor_embedding else None
        )
        self.layers = nn.ModuleList(
            EquivariantAttention(
                hidden_channels,
                num_rbf,
                num_heads,
                activation,
                attn_activation,
                vec_in=k > 0,
                vec_out=k < num_layers - 1,
                vector_cutoff=vector_cutoff,
                attention_impl=attention_impl,
            )
            for k in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(hidden_channels)

    @property
    def attention_impl(self) -> str:
        """The layers' per-edge implementation (one of :data:`ATTENTION_IMPLS`)."""
        return self.layers[0].attention_impl

    @attention_impl.setter
    def attention_impl(self, impl: str) -> None:
        resolve_attention_impl(impl, torch.device("cpu"))  # validates the name
        for layer in self.layers:
            layer.attention_impl = impl

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        self.rbf.reset_parameters()
        if self.neighbor_embedding is not None:
            self.neighbor_embedding.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()
        self.out_norm.reset_parameters()

    def forward(self, data, return_vec: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
        """Per-atom scalar features ``[N, H]`` of a graph or a ``Batch`` of graphs.

        With ``return_vec=True`` also the vector features ``[N, 3, H]`` as the last layer that
        updates them left them (layer ``L - 1``; ``None`` for a one-layer model).
        """
        return self.encode(data.z, data.edge_index, edge_vectors(data), return_vec=return_vec)

    def encode(
        self, z: Tensor, edge_index: Tensor, edge_vec: Tensor, return_vec: bool = False
    ) -> Tensor | tuple[Tensor, Tensor | None]:
        """The backbone on plain tensors: ``edge_vec[e] = pos[src] - pos[dst] (+ image shift)``."""
        if z.device.type == "cpu" and z.numel() and int(z.max()) >= self.max_z:
            raise ValueError(f"atomic number {int(z.max())} >= max_z ({self.max_z})")
        src, dst = edge_index[0], edge_index[1]
        perm = pair_edges(src, dst, edge_vec) if self.pair_edges else None
        if perm is not None:  # radial features once per pair of opposite edges
            src, dst, edge_vec = src[perm], dst[perm], edge_vec[perm[: perm.shape[0] // 2]]
        r = torch.linalg.vector_norm(edge_vec, dim=-1)
        unit = edge_vec / r.unsqueeze(-1)
        if perm is not None:
            unit = torch.cat([unit, -unit])
        cut = cosine_cutoff(r, self.cutoff)
        rbf = self.rbf(r, cut)

        x = self.embedding(z)
        if self.neighbor_embedding is not None:
            x = self.neighbor_embedding(z, x, src, dst, rbf, cut)

        vec: Tensor | None = None
        use_ckpt = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if use_ckpt:
                dx, dvec = checkpoint(layer, x, vec, src, dst, rbf, cut, unit, use_reentrant=False)
            else:
                dx, dvec = layer(x, vec, src, dst, rbf, cut, unit)
            x = x + dx
            if dvec is not None:
                vec = dvec if vec is None else vec + dvec
        x = self.out_norm(x)
        return (x, vec) if return_vec else x
