"""wACSF — weighted atom-centred symmetry functions (Gastegger et al., J. Chem. Phys. 148, 2018).

For atom ``i`` with neighbour entries ``j, k`` (every atom of every periodic image within the
cutoff ``r_c``; an atom's own images are neighbours too) and ``f_c(r) = ½[cos(πr/r_c) + 1]``::

    G2_i(η, μ)       = Σ_j g(Z_j) · exp(−η (r_ij − μ)²) · f_c(r_ij)

    G4_i(η, μ, ζ, λ) = 2^(1−ζ) Σ_{j≠k} h(Z_j, Z_k) · (1 + λ cos θ_ijk)^ζ
                       · exp(−η [(r_ij − μ)² + (r_ik − μ)² + (r_jk − μ)²])
                       · f_c(r_ij) · f_c(r_ik) · f_c(r_jk)

The G4 sum runs over **ordered** pairs of distinct neighbour entries ``(j, k)``: every unordered
pair counts twice (DScribe's ACSF sums ``k < j`` only, so for one element and unit weights its
G4 is half of ours). Two different images of the same atom are two distinct entries.
Element weights: ``g(Z) = Z`` and ``h(Z_j, Z_k) = Z_j·Z_k`` ("atomic_number", the default) or
``g = h = 1`` ("unit"), so the size does not grow with the number of elements.

Parameter grids (``r_min``, ``r_c`` and the number of functions ``n``; ``linspace`` includes
both ends and gives ``[r_min]`` for ``n = 1``):

* ``"shifted"``: ``μ_k = linspace(r_min, r_c, n)``, one width for all, ``η = 1 / (2 Δμ²)``
  with ``Δμ = (r_c − r_min) / (n − 1)`` (``Δμ = r_c − r_min`` for ``n = 1``);
* ``"centred"``: ``μ = 0`` and Gaussian widths ``σ_k = linspace(r_min, r_c, n)``, i.e.
  ``η_k = 1 / (2 σ_k²)``: from sharp (``σ = r_min``) to the width of the cutoff sphere.

The radial block defaults to 18 shifted functions from 0.5 Å; the angular block to 4 centred
widths × ζ ∈ {1, 2, 4, 8} × λ ∈ {−1, +1}: 18 + 32 = 50 features. ``radial_eta``/``radial_mu``
and ``angular_eta``/``angular_mu`` replace a grid by explicit values (``*_mu`` defaults to 0
when only ``*_eta`` is given; a one-element list broadcasts), e.g. to reproduce DScribe's
``g2_params`` / ``g4_params``. ``n_angular_eta = 0`` drops the angular block.

Features are ordered: radial ``[η, μ]`` pairs, then angular ``[(η, μ) pair][ζ][λ]``.

Implementation: the angular term factorizes as ``A_ζλ(cos θ_jk) · W_η(j, k)`` with
``W = h · R(r_ij) R(r_ik) R(r_jk)`` and ``R(r) = exp(−η (r − μ)²) f_c(r)``, so per centre
``G4[ζλ, η] = Σ_{jk} A[ζλ, jk] W[η, jk]`` is one batched matrix product. Each centre's
neighbour entries are padded to a block of odd size ``M``; every unordered pair is visited
exactly once as ``(j, j + s mod M)`` with ``s = 1 .. (M − 1)/2`` (strided views, no index
gathers), which halves the work of the dense ``M × M`` block. Centres are sorted by neighbour
count and processed in chunks bounded by ``chunk_elements``; all pair terms of a chunk are
planes of one reused workspace, each written by one operation over all ``η`` (or all ``λ``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fmpretrain.descriptors import register_descriptor
from fmpretrain.descriptors.base import AtomBatch, Descriptor, DescriptorParams, element_weights
from fmpretrain.neighbors import NeighborList

#: Grid rules for the radial and angular Gaussians.
GRIDS = ("shifted", "centred")

#: log-weight of padding entries: exp(_LOG_ZERO + anything bounded) == 0 in float32 and float64.
_LOG_ZERO = -1.0e4

#: CPU chunks are also kept below this many workspace elements (16 MiB in float64): fewer,
#: larger operations beat cache-sized chunks, whose per-operation overhead dominates.
_CACHE_ELEMENTS = 1 << 21

#: CPU radial chunks: [pairs, n_radial] blocks of this many elements (fresh memory costs more).
_RADIAL_ELEMENTS = 1 << 16


def _floats(values: object) -> tuple[float, ...] | None:
    if values is None:
        return None
    if isinstance(values, (int, float, np.integer, np.floating)):
        return (float(values),)
    return tuple(float(v) for v in values)  # type: ignore[union-attr]


@dataclass(frozen=True)
class WACSFParams(DescriptorParams):
    cutoff: float = 6.0
    #: number of radial functions G2 (grid rule; ignored when radial_eta is given)
    n_radial: int = 18
    #: smallest Gaussian centre ("shifted") or width ("centred") of both grids (Å)
    r_min: float = 0.5
    #: radial grid rule: "shifted" or "centred"
    radial_grid: str = "shifted"
    #: explicit radial η (Å⁻²) replacing the grid; None: use the grid rule
    radial_eta: tuple[float, ...] | None = None
    #: explicit radial μ (Å), needs radial_eta; None: 0 with radial_eta, else the grid rule
    radial_mu: tuple[float, ...] | None = None
    #: number of angular (η, μ) pairs (grid rule; 0 drops the angular block)
    n_angular_eta: int = 4
    #: angular grid rule: "centred" or "shifted"
    angular_grid: str = "centred"
    #: explicit angular η (Å⁻²) replacing the grid; None: use the grid rule
    angular_eta: tuple[float, ...] | None = None
    #: explicit angular μ (Å), needs angular_eta; None: 0 with angular_eta, else the grid rule
    angular_mu: tuple[float, ...] | None = None
    #: angular exponents ζ (> 0)
    zeta: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    #: angular signs λ (each −1 or +1)
    lambdas: tuple[float, ...] = (-1.0, 1.0)
    #: element weights g(Z) and h(Z_j, Z_k) = g(Z_j)·g(Z_k): "atomic_number" or "unit"
    weights: str = "atomic_number"

    def __post_init__(self) -> None:
        for name in ("radial_eta", "radial_mu", "angular_eta", "angular_mu", "zeta", "lambdas"):
            object.__setattr__(self, name, _floats(getattr(self, name)))
        object.__setattr__(self, "cutoff", float(self.cutoff))
        object.__setattr__(self, "r_min", float(self.r_min))


def grid(rule: str, n: int, r_min: float, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """``(η, μ)`` of ``n`` Gaussians by the documented "shifted" or "centred" rule."""
    if rule == "shifted":
        mu = np.linspace(r_min, cutoff, n)
        step = (cutoff - r_min) / (n - 1) if n > 1 else cutoff - r_min
        return np.full(n, 1.0 / (2.0 * step**2)), mu
    if rule == "centred":
        sigma = np.linspace(r_min, cutoff, n)
        return 1.0 / (2.0 * sigma**2), np.zeros(n)
    raise ValueError(f"wacsf: unknown grid rule {rule!r}; choose from {GRIDS}")


@register_descriptor
class WACSF(Descriptor):
    """Weighted ACSF; ``dim = n_radial + n_angular_eta · |ζ| · |λ|`` (50 by default)."""

    name = "wacsf"
    params_class = WACSFParams

    # ------------------------------------------------------------------ parameters
    def _check_params(self) -> None:
        p = self.params
        for name in ("n_radial", "n_angular_eta"):
            value = getattr(p, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"wacsf: {name} must be an integer, got {value!r}")
        if p.n_radial < 1:
            raise ValueError(f"wacsf: n_radial must be >= 1, got {p.n_radial}")
        if p.n_angular_eta < 0:
            raise ValueError(f"wacsf: n_angular_eta must be >= 0, got {p.n_angular_eta}")
        if not 0.0 <= p.r_min < p.cutoff:
            raise ValueError(f"wacsf: need 0 <= r_min < cutoff, got r_min={p.r_min}")
        for name in ("radial_grid", "angular_grid"):
            rule = getattr(p, name)
            if rule not in GRIDS:
                raise ValueError(f"wacsf: unknown {name} {rule!r}; choose from {GRIDS}")
        if not p.zeta or min(p.zeta) <= 0 or not all(map(math.isfinite, p.zeta)):
            raise ValueError(f"wacsf: every zeta must be positive and finite, got {p.zeta}")
        if not p.lambdas or any(lam not in (-1.0, 1.0) for lam in p.lambdas):
            raise ValueError(f"wacsf: every lambda must be -1 or +1, got {p.lambdas}")
        if len(set(p.zeta)) != len(p.zeta) or len(set(p.lambdas)) != len(p.lambdas):
            raise ValueError(f"wacsf: repeated zeta or lambda ({p.zeta}, {p.lambdas})")
        element_weights(np.ones(1, dtype=np.int64), p.weights)  # validates the scheme

        self.radial_eta, self.radial_mu = self._resolve(
            "radial", p.radial_eta, p.radial_mu, p.radial_grid, p.n_radial
        )
        if len(self.radial_eta) == 0:
            raise ValueError("wacsf: the radial block needs at least one function")
        self.angular_eta, self.angular_mu = self._resolve(
            "angular", p.angular_eta, p.angular_mu, p.angular_grid, p.n_angular_eta
        )

    def _resolve(
        self,
        block: str,
        eta: tuple[float, ...] | None,
        mu: tuple[float, ...] | None,
        rule: str,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        if eta is None:
            if mu is not None:
                raise ValueError(f"wacsf: {block}_mu needs {block}_eta (or neither)")
            if n == 0:
                return np.zeros(0), np.zeros(0)
            if rule == "centred" and p.r_min <= 0:
                raise ValueError(f"wacsf: the centred {block} grid needs r_min > 0")
            return grid(rule, n, p.r_min, p.cutoff)
        eta_a = np.asarray(eta, dtype=np.float64)
        mu_a = np.zeros(1) if mu is None else np.asarray(mu, dtype=np.float64)
        if len(eta_a) != len(mu_a) and 1 not in (len(eta_a), len(mu_a)):
            raise ValueError(
                f"wacsf: {block}_eta ({len(eta_a)}) and {block}_mu ({len(mu_a)}) differ in length"
            )
        eta_a, mu_a = np.broadcast_arrays(eta_a, mu_a)
        if not (np.isfinite(eta_a).all() and np.isfinite(mu_a).all()) or (eta_a < 0).any():
            raise ValueError(f"wacsf: {block}_eta must be finite and >= 0, {block}_mu finite")
        return eta_a.copy(), mu_a.copy()

    @property
    def dim(self) -> int:
        p = self.params
        return len(self.radial_eta) + len(self.angular_eta) * len(p.zeta) * len(p.lambdas)

    @property
    def feature_names(self) -> list[str]:
        p = self.params
        names = [
            f"wacsf_g2_eta{e:g}_mu{m:g}"
            for e, m in zip(self.radial_eta, self.radial_mu, strict=True)
        ]
        names += [
            f"wacsf_g4_eta{e:g}_mu{m:g}_zeta{z:g}_lambda{lam:+g}"
            for e, m in zip(self.angular_eta, self.angular_mu, strict=True)
            for z in p.zeta
            for lam in p.lambdas
        ]
        return names

    # ------------------------------------------------------------------ computation
    def _constants(self) -> dict[str, torch.Tensor]:
        """Parameter tensors on ``self.device`` in ``self.dtype`` (built once per placement)."""
        key = (str(self.device), self.dtype)
        cache = self.__dict__.setdefault("_const_cache", {})
        if key not in cache:
            p = self.params
            cache[key] = {
                "radial_neg_eta": self._tensor(-self.radial_eta),
                "radial_mu": self._tensor(self.radial_mu),
                "angular_scale": self._tensor(
                    [2.0 ** (1.0 - z) for z in p.zeta for _ in p.lambdas]
                ),
                "angular_neg_eta": self._tensor(-self.angular_eta)[:, None, None],
                "lambdas": self._tensor(p.lambdas)[:, None, None],
                "one": self._tensor(1.0),
            }
        return cache[key]

    def _compute(self, atoms: AtomBatch) -> torch.Tensor:
        p = self.params
        n = len(atoms)
        out = torch.zeros((n, self.dim), dtype=self.dtype, device=self.device)
        nl = atoms.pairs
        if len(nl) == 0:
            return out
        r = nl.distances
        # g(Z_j) · f_c(r_ij) per pair (f_c as in base.cosine_cutoff; every r_ij < r_c here)
        weight = element_weights(atoms.numbers, p.weights)[nl.neighbors]
        weight = weight * (0.5 * (np.cos(r * (math.pi / p.cutoff)) + 1.0))
        n_radial = len(self.radial_eta)
        self._radial(nl.centers, r, weight, out[:, :n_radial])
        if len(self.angular_eta):
            self._angular(n, nl, weight, out[:, n_radial:])
        return out

    def _radial(
        self, centers: np.ndarray, r: np.ndarray, weight: np.ndarray, out: torch.Tensor
    ) -> None:
        const = self._constants()
        neg_eta, mu = const["radial_neg_eta"], const["radial_mu"]
        r_t = torch.from_numpy(r).to(self.device, self.dtype)
        w_t = torch.from_numpy(weight).to(self.device, self.dtype)
        c_t = torch.from_numpy(centers).to(self.device)
        budget = self.chunk_elements // 2
        if self.device.type == "cpu":
            budget = min(budget, _RADIAL_ELEMENTS)
        step = max(1, budget // len(mu))
        for start in range(0, len(r), step):
            sl = slice(start, start + step)
            g = r_t[sl, None] - mu
            g.square_().mul_(neg_eta).exp_().mul_(w_t[sl, None])
            out.index_add_(0, c_t[sl], g)

    def _angular(self, n: int, nl: NeighborList, weight: np.ndarray, out: torch.Tensor) -> None:
        p = self.params
        counts = np.bincount(nl.centers, minlength=n)
        m_max = int(counts.max())
        if m_max < 2:
            return  # no centre has two neighbour entries: G4 = 0
        # Per-centre neighbour entries, padded to an odd width: [n, F, M] planar features
        # (unit vector, r, r², log[g f_c(r)]); padding has log-weight _LOG_ZERO (weight 0).
        m_pad = m_max | 1
        slot = np.arange(len(nl)) - (np.cumsum(counts) - counts)[nl.centers]
        r = nl.distances
        with np.errstate(divide="ignore"):
            log_w = np.maximum(np.log(weight), _LOG_ZERO)
        feats = np.concatenate(
            [nl.vectors / r[:, None], r[:, None], (r * r)[:, None], log_w[:, None]], axis=1
        )
        node = np.zeros((n, feats.shape[1], m_pad))
        node[:, -1] = _LOG_ZERO
        node[nl.centers, :, slot] = feats
        node_t = torch.from_numpy(node).to(self.device, self.dtype)

        n_e, n_a = len(self.angular_eta), len(p.zeta) * len(p.lambdas)
        scale = self._constants()["angular_scale"][:, None]

        def cost(m: int) -> int:  # elements one centre of width m needs
            return m * (m // 2) * self._angular_planes()

        # on CPU chunks are bounded by _CACHE_ELEMENTS; on an accelerator only in memory
        cache = _CACHE_ELEMENTS if self.device.type == "cpu" else self.chunk_elements
        budget = max(1, min(self.chunk_elements, cache))
        if n * cost(m_pad) <= budget:  # one chunk, natural order
            g4 = self._angular_chunk(node_t, m_pad, None)
            out.copy_((g4 * scale).transpose(1, 2).reshape(n, n_e * n_a))
            return
        order = np.argsort(-counts, kind="stable")
        # one workspace for all chunks (a chunk of one centre may exceed the budget)
        size = max(cost(m_pad), min(budget, n * cost(m_pad)))
        work = torch.empty(size, dtype=self.dtype, device=self.device)
        start = 0
        while start < n:
            m = int(counts[order[start]])
            if m < 2:
                break  # the remaining centres have fewer than two neighbour entries
            m |= 1
            rows = order[start : start + max(1, budget // cost(m))]
            start += len(rows)
            rows_t = torch.from_numpy(rows).to(self.device)
            g4 = self._angular_chunk(node_t.index_select(0, rows_t)[:, :, :m], m, work)
            out[rows_t] = (g4 * scale).transpose(1, 2).reshape(len(rows), n_e * n_a)

    def _angular_chunk(self, x: torch.Tensor, m: int, work: torch.Tensor | None) -> torch.Tensor:
        """Unscaled ``[C, n_a, n_e]`` sums over one chunk's padded entries ``x [C, F, m]``.

        Entry pairs are ``(j, k = j + 1 + s mod m)`` for ``s < (m − 1)/2`` with ``m`` odd:
        every unordered pair exactly once, read through strided views of ``[x, x]``. The pair
        terms are planes of one workspace (``work``, reused across chunks so that it stays in
        cache; None: a fresh one), each written by one operation over all ``η`` or all ``λ``.
        """
        p = self.params
        rc = p.cutoff
        eta, mu = self.angular_eta, self.angular_mu
        c_n, n_f = x.shape[0], x.shape[1]
        h = (m - 1) // 2
        t = m * h
        n_e, n_z, n_l = len(eta), len(p.zeta), len(p.lambdas)
        n_p = self._angular_planes()
        if work is None:
            work = torch.empty(c_n * n_p * t, dtype=x.dtype, device=x.device)
        ws = work[: c_n * n_p * t].view(c_n, n_p, m, h)
        # planes: W [0, n_e), cos θ, then A [n_e + 1, n_e + 1 + n_a) whose first planes hold
        # s, r_jk, log w (and the perimeter) until W is formed
        w, cos = ws[:, :n_e], ws[:, n_e]
        s, rjk, log_w = ws[:, n_e + 1], ws[:, n_e + 2], ws[:, n_e + 3]
        x2 = torch.cat([x, x], dim=2)  # [C, F, 2m]
        col = x.unsqueeze(-1).unbind(1)  # entry j, broadcast over s: [C, m, 1]
        win = [  # entry k = j + 1 + s: [C, m, h]
            x2.as_strided((c_n, m, h), (n_f * 2 * m, 1, 1), x2.storage_offset() + f * 2 * m + 1)
            for f in range(n_f)
        ]
        torch.mul(col[0], win[0], out=cos)
        cos.addcmul_(col[1], win[1]).addcmul_(col[2], win[2])  # cos θ_ijk
        torch.add(col[4], win[4], out=s)  # r_ij² + r_ik²
        torch.mul(col[3], win[3], out=rjk)
        torch.addcmul(s, rjk, cos, value=-2.0, out=rjk)  # r_jk²
        s.add_(rjk)  # r_ij² + r_ik² + r_jk²
        torch.add(col[5], win[5], out=log_w)  # log[g_j f_c(r_ij) g_k f_c(r_ik)]
        rjk.clamp_(0.0, rc * rc).sqrt_()
        shifted = bool((mu != 0).any())
        if shifted:
            perimeter = ws[:, n_e + 4]
            torch.add(col[3], win[3], out=perimeter).add_(rjk)  # r_ij + r_ik + r_jk
        fc2 = rjk.mul_(math.pi / rc).cos_().add_(1.0)  # 2 f_c(r_jk); 0 beyond r_c

        # W[e] = h R_e(r_ij) R_e(r_ik) R_e(r_jk) = exp(log_w − η Σ(r − μ)²) · f_c(r_jk), with
        # Σ(r − μ)² = s − 2μ·perimeter + 3μ²
        const = self._constants()
        torch.addcmul(log_w.unsqueeze(1), s.unsqueeze(1), const["angular_neg_eta"], out=w)
        if shifted:
            for e in range(n_e):
                if mu[e] != 0:
                    w[:, e].add_(perimeter, alpha=2.0 * eta[e] * mu[e])
                    w[:, e].add_(-3.0 * eta[e] * mu[e] ** 2)
        w.exp_().mul_(fc2.unsqueeze(1))

        # A[ζ, λ] = (1 + λ cos θ)^ζ, all λ at once; integer powers by repeated squaring
        a = ws[:, n_e + 1 : n_e + 1 + n_z * n_l].view(c_n, n_z, n_l, m, h)
        slots = {p.zeta[iz]: a[:, iz] for iz in sorted(range(n_z), key=lambda iz: p.zeta[iz])}
        base = torch.addcmul(const["one"], const["lambdas"], cos.unsqueeze(1), out=slots.get(1.0))
        powers: dict[int, torch.Tensor] = {1: base}
        for z, dest in slots.items():
            if z == 1.0:
                continue
            if z.is_integer():
                _int_power(powers, int(z), dest)
            else:
                torch.pow(base.clamp(min=0.0), z, out=dest)

        # Σ over ordered pairs = 2 Σ over unordered ones; f_c(r_jk) = fc2 / 2: factors cancel
        return torch.bmm(a.reshape(c_n, n_z * n_l, t), w.reshape(c_n, n_e, t).transpose(1, 2))

    def _angular_planes(self) -> int:
        """Planes of one centre's pair terms in :meth:`_angular_chunk`'s workspace."""
        n_a = len(self.params.zeta) * len(self.params.lambdas)
        shifted = bool((self.angular_mu != 0).any())
        return len(self.angular_eta) + 1 + max(n_a, 4 if shifted else 3)


def _int_power(powers: dict[int, torch.Tensor], k: int, out: torch.Tensor) -> None:
    """``out = base**k`` (``base = powers[1]``) by squaring; caches every power it forms."""
    if k in powers:
        out.copy_(powers[k])
        return

    def get(j: int, dest: torch.Tensor | None) -> torch.Tensor:
        if j not in powers:
            left, right = (get(j // 2, None),) * 2 if j % 2 == 0 else (get(j - 1, None), powers[1])
            powers[j] = torch.mul(left, right, out=dest) if dest is not None else left * right
        return powers[j]

    get(k, out)
