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

        # T[i, c, g] = Σ_j c(Z_j) · monomial_c(r_ij) · radial_g(r_ij), in bounded pair chunks.
        tensor = torch.zeros((n, n_comp * n_rad), dtype=self.dtype, device=self.device)
        step = max(1, self.chunk_elements // (n_comp * n_rad + n_comp + n_rad))
        for start in range(0, len(pairs), step):
            sl = slice(start, start + step)
            r = pairs.distances[sl]
            gauss = torch.exp(-alpha[None] * (r[:, None, None] - r_s[None]) ** 2)  # [P, A, R]
            radial = (
                gauss.reshape(len(r), n_rad)
                * (cosine_cutoff(r, p.cutoff) * weights[pairs.neighbors[sl]])[:, None]
            )
            monomials = torch.prod(pairs.vectors[sl][:, None, :] ** powers[None], dim=-1)  # [P, C]
            contrib = (monomials[:, :, None] * radial[:, None, :]).reshape(len(r), -1)
            tensor.index_add_(0, pairs.centers[sl], contrib)

        tensor = tensor.reshape(n, n_comp, n_rad) ** 2
        tensor = tensor * self._tensor(self._multinomial)[None, :, None]
        density = torch.zeros((n, p.l_max + 1, n_rad), dtype=self.dtype, device=self.device)
        density.index_add_(1, self._orders.to(self.device), tensor)
        return density.reshape(n, self.dim)
