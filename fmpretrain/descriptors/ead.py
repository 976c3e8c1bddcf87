"""EAD — embedded atom density (Zhang, Hu & Jiang, Phys. Rev. B 100, 2019).

For atom ``i``, angular order ``L`` and radial Gaussian ``(α, r_s)``::

    ρ_i(L, α, r_s) = Σ_{lx+ly+lz=L} L!/(lx! ly! lz!) ·
                     [ Σ_j c(Z_j) · x_ij^lx y_ij^ly z_ij^lz · exp(−α (r_ij − r_s)²) · f_c(r_ij) ]²

with ``(x_ij, y_ij, z_ij)`` the Cartesian vector from ``i`` to neighbour ``j`` (all periodic
images within the cutoff). The multinomial sum contracts Cartesian tensors, so ρ is invariant
under rotations. Features are ordered ``[L][α][r_s]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fmpretrain.descriptors import register_descriptor
from fmpretrain.descriptors.base import (
    AtomBatch,
    Descriptor,
    DescriptorParams,
    cosine_cutoff,
    element_weights,
)

#: On CPU, chunks are also kept below this many elements so that they stay in cache.
_CACHE_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class EADParams(DescriptorParams):
    cutoff: float = 6.0
    #: highest angular order L (features for L = 0 .. l_max)
    l_max: int = 3
    #: Gaussian widths α (Å⁻²)
    alpha: tuple[float, ...] = (1.0, 2.5)
    #: Gaussian centres r_s (Å)
    r_s: tuple[float, ...] = (0.0, 0.75, 1.5, 2.25, 3.0, 3.75, 4.5, 5.25)
    #: element weight c(Z): "atomic_number" or "unit"
    weights: str = "atomic_number"

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", tuple(float(a) for a in self.alpha))
        object.__setattr__(self, "r_s", tuple(float(r) for r in self.r_s))


def cartesian_components(l_max: int) -> list[tuple[int, int, int, int]]:
    """``(L, lx, ly, lz)`` for every monomial with ``lx+ly+lz = L <= l_max``."""
    return [
        (order, lx, ly, order - lx - ly)
        for order in range(l_max + 1)
        for lx in range(order, -1, -1)
        for ly in range(order - lx, -1, -1)
    ]


@register_descriptor
class EAD(Descriptor):
    """Embedded atom density fingerprint; ``dim = (l_max + 1) · |α| · |r_s|``."""

    name = "ead"
    params_class = EADParams

    def _check_params(self) -> None:
        p = self.params
        if p.l_max < 0:
            raise ValueError(f"ead: l_max must be >= 0, got {p.l_max}")
        if not p.alpha or not p.r_s:
            raise ValueError("ead: alpha and r_s need at least one value each")
        if min(p.alpha) <= 0:
            raise ValueError(f"ead: every alpha must be positive, got {p.alpha}")
        element_weights(np.ones(1, dtype=np.int64), p.weights)  # validates the scheme
        comps = cartesian_components(p.l_max)
        self._orders = torch.tensor([c[0] for c in comps])
        self._powers = torch.tensor([c[1:] for c in comps])
        self._multinomial = [
            math.factorial(c[0])
            / (math.factorial(c[1]) * math.factorial(c[2]) * math.factorial(c[3]))
            for c in comps
        ]

    @property
    def dim(self) -> int:
        return (self.params.l_max + 1) * len(self.params.alpha) * len(self.params.r_s)

    @property
    def feature_names(self) -> list[str]:
        return [
            f"ead_L{order}_a{a:g}_rs{rs:g}"
            for order in range(self.params.l_max + 1)
            for a in self.params.alpha
            for rs in self.params.r_s
        ]

    def _compute(self, atoms: AtomBatch) -> torch.Tensor:
        p = self.params
        n = len(atoms)
        pairs = self._pairs(atoms)
        alpha = self._tensor(p.alpha)[:, None]  # [A, 1]
        r_s = self._tensor(p.r_s)[None, :]  # [1, R]
        weights = self._tensor(element_weights(atoms.numbers, p.weights))
        powers = self._powers.to(self.device)
        n_comp, n_rad = len(powers), alpha.numel() * r_s.numel()

        # T[i, c, g] = Σ_j c(Z_j) · monomial_c(r_ij) · radial_g(r_ij): per centre a product
        # [C, m] @ [m, G] over its m neighbour entries. Pairs are sorted by centre, so a range
        # of centres owns a contiguous range of pairs; each range is padded to its widest centre
        # (zero rows) and reduced with one bmm, its size bounded by chunk_elements.
        tensor = torch.zeros((n, n_comp, n_rad), dtype=self.dtype, device=self.device)
        nl = atoms.pairs
        counts = np.bincount(nl.centers, minlength=n)
        ends = np.cumsum(counts)
        starts = ends - counts
        budget = min(self.chunk_elements, _CACHE_ELEMENTS if self.device.type == "cpu" else 1 << 62)
        rows = max(1, budget // (max(1, int(counts.max())) * (n_comp + n_rad + 8)))
        for a in range(0, n if len(nl) else 0, rows):
            b = min(n, a + rows)
            p0, p1 = int(starts[a]), int(ends[b - 1])
            if p1 == p0:
                continue
            m = int(counts[a:b].max())
            sl = slice(p0, p1)
            r = pairs.distances[sl]
            # feature-major [F, P] layouts: every elementwise op runs on contiguous rows
            gauss = torch.exp(-alpha[:, :, None] * (r - r_s[:, :, None]) ** 2)  # [A, R, P]
            weight = cosine_cutoff(r, p.cutoff) * weights[pairs.neighbors[sl]]
            radial = gauss.view(n_rad, len(r)).mul_(weight)  # [G, P]
            monomials = self._monomials(pairs.vectors[sl])  # [C, P]
            centers = nl.centers[sl]
            row = (centers - a) * m + (np.arange(p0, p1) - starts[centers])
            row_t = torch.from_numpy(row).to(self.device)
            padded_m = monomials.new_zeros((n_comp, (b - a) * m)).index_copy_(1, row_t, monomials)
            padded_r = radial.new_zeros((n_rad, (b - a) * m)).index_copy_(1, row_t, radial)
            torch.bmm(
                padded_m.view(n_comp, b - a, m).transpose(0, 1),
                padded_r.view(n_rad, b - a, m).permute(1, 2, 0),
                out=tensor[a:b],
            )

        tensor = tensor**2
        tensor = tensor * self._tensor(self._multinomial)[None, :, None]
        density = torch.zeros((n, p.l_max + 1, n_rad), dtype=self.dtype, device=self.device)
        density.index_add_(1, self._orders.to(self.device), tensor)
        return density.reshape(n, self.dim)

    def _monomials(self, vectors: torch.Tensor) -> torch.Tensor:
        """``[C, P]``: ``x^lx y^ly z^lz`` of each pair vector for every Cartesian component."""
        axes = vectors.T.contiguous()  # [3, P]
        powers: list[list[torch.Tensor]] = []
        for v in axes:
            row = [torch.ones_like(v), v]
            for _ in range(2, self.params.l_max + 1):
                row.append(row[-1] * v)
            powers.append(row)
        out = vectors.new_empty((len(self._powers), len(vectors)))
        for c, exps in enumerate(self._powers.tolist()):
            factors = [powers[k][e] for k, e in enumerate(exps) if e]
            if not factors:
                out[c].fill_(1.0)
            elif len(factors) == 1:
                out[c].copy_(factors[0])
            else:
                torch.mul(factors[0], factors[1], out=out[c])
                for f in factors[2:]:
                    out[c].mul_(f)
        return out
