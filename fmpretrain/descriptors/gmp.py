"""GMP — Gaussian multipole (Lei & Medford 2022, "A universal framework for featurization of
atomic configurations for molecular machine learning"; conventions of their GMPFeaturizer).

The electron density is a sum of element Gaussians centred on the atoms,
``ρ(r) = Σ_j Σ_g B_{Z_j,g} exp(−β_{Z_j,g} |r − r_j|²)`` (see :mod:`.gmp_densities`). Atom ``i``
is probed by Maxwell-Cartesian spherical harmonics ``S_{l,m}`` (MCSH, the harmonic
polynomials ``(−1)^l r^{2l+1} ∂_m (1/r)``: ``x``; ``3x² − r²``, ``3xy``; ``15x³ − 9xr²`` ...)
times a normalized Gaussian of width ``σ``::

    μ_{l,m,σ}(i) = ∫ S_{l,m}(u) · A_σ e^{−α u²} · ρ(r_i + u) du,   A_σ = (σ√(2π))⁻³, α = 1/(2σ²)

Gaussian × Gaussian overlaps are analytic; with ``γ = α + β``, ``λ = β/γ`` and ``d = r_j − r_i``,
and because Gaussian smoothing leaves a harmonic polynomial unchanged,

    ∫ S(u) A e^{−αu²} B e^{−β|u−d|²} du = A B (π/γ)^{3/2} e^{−αβ|d|²/γ} λ^l S(d).

The feature is the rotation-invariant norm over the components of order ``l``,
``G_{l,σ}(i) = sqrt(Σ_m w_m μ²_{l,m,σ})`` with ``w_m = l!/(l_x! l_y! l_z!)`` for the Cartesian
index ``m = (l_x, l_y, l_z)`` — the Frobenius norm of the symmetric traceless tensor.

Conventions, following GMPFeaturizer (defaults ``solid_harmonics=True``, ``square=False``):

- order ``−1`` is the local electron density at the atom, ``ρ(r_i)`` (the ``σ → 0`` limit of
  order 0), one feature that does not depend on ``σ``; reported as ``|ρ(r_i)|``;
- the central atom's own density counts (``j = i``, ``d = 0``): it adds to orders −1 and 0
  only, since ``S_{l≥1}(0) = 0``;
- features are ordered ``[−1]`` then ``[l][σ]`` for ``l >= 0``, orders and σ ascending;
  ``square=True`` returns ``Σ_m w_m μ²`` instead of its square root.

Departure from GMPFeaturizer: it truncates neighbours where the overlap drops below a threshold;
here every pair within ``cutoff`` (all periodic images) is weighted by the cosine cutoff
``f_c(r_ij)``, so features stay continuous as atoms cross the cutoff. The self term has
``f_c(0) = 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from fmpretrain.descriptors import register_descriptor
from fmpretrain.descriptors.base import (
    AtomBatch,
    Descriptor,
    DescriptorParams,
    _canonical,
    cosine_cutoff,
)
from fmpretrain.descriptors.gmp_densities import MAX_Z, DensityTable, load_densities

#: Highest MCSH order supported (GMPFeaturizer implements up to 9 as well).
MAX_ORDER = 9


@dataclass(frozen=True)
class GMPParams(DescriptorParams):
    cutoff: float = 6.0
    #: MCSH orders; −1 is the local density (one feature), l >= 0 give one feature per σ
    orders: tuple[int, ...] = (-1, 0, 1, 2)
    #: probe widths σ = linspace(0, sigma_max, n_sigmas + 1)[1:] (Å) unless ``sigmas`` is given
    sigma_max: float = 2.0
    n_sigmas: int = 8
    #: explicit probe widths (Å, ascending); overrides sigma_max / n_sigmas
    sigmas: tuple[float, ...] | None = None
    #: return Σ_m w_m μ² instead of its square root (GMPFeaturizer's "square" option)
    square: bool = False
    #: "covalent" (built in) or path(s) to GMPFeaturizer .gpsp file(s) / a directory of them
    densities: str | tuple[str, ...] = "covalent"

    def __post_init__(self) -> None:
        object.__setattr__(self, "orders", tuple(int(o) for o in self.orders))
        if self.sigmas is not None:
            object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        if not isinstance(self.densities, str):
            object.__setattr__(self, "densities", tuple(str(p) for p in self.densities))


def default_sigmas(sigma_max: float, n_sigmas: int) -> tuple[float, ...]:
    """``linspace(0, sigma_max, n_sigmas + 1)[1:]``, the authors' σ grid."""
    return tuple(float(s) for s in np.linspace(0.0, sigma_max, n_sigmas + 1)[1:])


def cartesian_indices(order: int) -> list[tuple[int, int, int]]:
    """``(l_x, l_y, l_z)`` with ``l_x + l_y + l_z = order``, ``l_x`` descending."""
    return [
        (lx, ly, order - lx - ly) for lx in range(order, -1, -1) for ly in range(order - lx, -1, -1)
    ]


def _double_factorial(n: int) -> int:
    return 1 if n <= 0 else n * _double_factorial(n - 2)


def mcsh_coefficients(order: int) -> tuple[np.ndarray, np.ndarray]:
    """MCSH of ``order`` in the monomial basis, and the norm weights.

    Returns ``(M, w)``: ``S_c(r) = Σ_k M[c, k] · x^{a_k} y^{b_k} z^{c_k}`` over the monomials
    ``cartesian_indices(order)``, for the components ``c`` in the same order, and
    ``w[c] = order!/(l_x! l_y! l_z!)``. Explicitly
    ``S_{lx,ly,lz} = Σ_k (−1)^k (2l−2k−1)!!/2^k Π_a l_a!/(k_a!(l_a−2k_a)!) x^{lx−2kx}… r^{2k}``.
    """
    monomials = cartesian_indices(order)
    column = {m: k for k, m in enumerate(monomials)}
    matrix = np.zeros((len(monomials), len(monomials)))
    weights = np.zeros(len(monomials))
    fact = math.factorial
    for c, (lx, ly, lz) in enumerate(monomials):
        weights[c] = fact(order) / (fact(lx) * fact(ly) * fact(lz))
        for kx in range(lx // 2 + 1):
            for ky in range(ly // 2 + 1):
                for kz in range(lz // 2 + 1):
                    k = kx + ky + kz
                    coef = Fraction((-1) ** k * _double_factorial(2 * order - 2 * k - 1), 2**k)
                    for la, ka in ((lx, kx), (ly, ky), (lz, kz)):
                        coef *= Fraction(fact(la), fact(ka) * fact(la - 2 * ka))
                    # r^{2k} = Σ_{a+b+c=k} k!/(a!b!c!) x^{2a} y^{2b} z^{2c}
                    for a in range(k + 1):
                        for b in range(k - a + 1):
                            cc = k - a - b
                            multi = fact(k) // (fact(a) * fact(b) * fact(cc))
                            key = (lx - 2 * kx + 2 * a, ly - 2 * ky + 2 * b, lz - 2 * kz + 2 * cc)
                            matrix[c, column[key]] += float(coef * multi)
    return matrix, weights


@register_descriptor
class GMP(Descriptor):
    """Gaussian multipole fingerprint; ``dim = [−1 in orders] + |{l >= 0}| · |σ|``."""

    name = "gmp"
    params_class = GMPParams

    def _check_params(self) -> None:
        p = self.params
        if not p.orders:
            raise ValueError("gmp: orders needs at least one value")
        if any(o < -1 or o > MAX_ORDER for o in p.orders):
            raise ValueError(f"gmp: every order must lie in [-1, {MAX_ORDER}], got {p.orders}")
        if list(p.orders) != sorted(set(p.orders)):
            raise ValueError(f"gmp: orders must be strictly increasing, got {p.orders}")
        if p.sigmas is None:
            if int(p.n_sigmas) != p.n_sigmas or p.n_sigmas < 1:
                raise ValueError(f"gmp: n_sigmas must be a positive integer, got {p.n_sigmas}")
            if not (math.isfinite(p.sigma_max) and p.sigma_max > 0):
                raise ValueError(f"gmp: sigma_max must be positive, got {p.sigma_max}")
            sigmas = default_sigmas(p.sigma_max, int(p.n_sigmas))
        else:
            sigmas = p.sigmas
            if not sigmas:
                raise ValueError("gmp: sigmas needs at least one value (or null for the default)")
        if not all(math.isfinite(s) and s > 0 for s in sigmas):
            raise ValueError(f"gmp: every sigma must be positive and finite, got {sigmas}")
        if list(sigmas) != sorted(set(sigmas)):
            raise ValueError(f"gmp: sigmas must be strictly increasing, got {sigmas}")
        if not isinstance(p.square, (bool, np.bool_)):
            raise ValueError(f"gmp: square must be true or false, got {p.square!r}")
        self._sigmas = sigmas
        self._orders_ge0 = [o for o in p.orders if o >= 0]
        self._has_density = -1 in p.orders
        # sqrt(w) folded into the MCSH so that Σ_m w_m μ_m² is a plain sum of squares
        self._mcsh = {}
        for order in self._orders_ge0:
            matrix, weights = mcsh_coefficients(order)
            self._mcsh[order] = np.sqrt(weights)[:, None] * matrix
        self._densities: DensityTable = load_densities(p.densities)
        self._prepare()

    # ------------------------------------------------------------------ public API
    @property
    def sigmas(self) -> tuple[float, ...]:
        """The probe widths σ (Å) in use."""
        return self._sigmas

    @property
    def densities(self) -> DensityTable:
        return self._densities

    @property
    def dim(self) -> int:
        return int(self._has_density) + len(self._orders_ge0) * len(self._sigmas)

    @property
    def feature_names(self) -> list[str]:
        names = ["gmp_L-1"] if self._has_density else []
        names += [f"gmp_L{o}_s{s:g}" for o in self._orders_ge0 for s in self._sigmas]
        return names

    def _hashed_params(self) -> dict[str, Any]:
        d = self.params.as_dict()
        for key in ("sigma_max", "n_sigmas"):
            d.pop(key)
        d["sigmas"] = list(self._sigmas)  # the numbers used, however they were specified
        d["densities"] = self._densities.digest  # content, not the file path
        return _canonical(d)

    # ------------------------------------------------------------------ computation
    def _prepare(self) -> None:
        """Device tensors that depend only on the parameters, built once."""
        table = self._densities.gaussians
        width = max(len(gs) for gs in table.values())
        coef = np.zeros((MAX_Z + 1, width))
        expo = np.ones((MAX_Z + 1, width))  # padding: B = 0, β = 1 contributes nothing
        self._n_gaussians = np.zeros(MAX_Z + 1, dtype=np.int64)
        for z, gs in table.items():
            if 0 < z <= MAX_Z:
                arr = np.asarray(gs, dtype=np.float64)
                coef[z, : len(arr)], expo[z, : len(arr)] = arr[:, 0], arr[:, 1]
                self._n_gaussians[z] = len(arr)
        self._coef, self._expo = self._tensor(coef), self._tensor(expo)  # [Z, G]
        sigma = np.asarray(self._sigmas)
        self._alpha = self._tensor(1.0 / (2.0 * sigma**2))  # [S]
        self._norm = self._tensor((sigma * math.sqrt(2.0 * math.pi)) ** -3)  # A_σ
        self._mcsh_t = {o: self._tensor(m) for o, m in self._mcsh.items()}
        self._powers = {
            o: torch.tensor(cartesian_indices(o), device=self.device) for o in self._mcsh
        }
        # the central atom's own density (d = 0, f_c = 1): orders −1 and 0 only
        self._self_density = self._coef.sum(dim=1)  # [Z]
        gamma = self._alpha[None, :, None] + self._expo[:, None, :]  # [Z, S, G]
        self._self_overlap = (
            self._norm[:, None] * self._coef[:, None, :] * (math.pi / gamma) ** 1.5
        ).sum(-1)  # [Z, S]
        counts = [len(self._mcsh[o]) * len(self._sigmas) for o in self._orders_ge0]
        self._counts = counts
        self._offsets = [int(x) for x in np.cumsum([int(self._has_density), *counts])[:-1]]

    def _compute(self, atoms: AtomBatch) -> torch.Tensor:
        n = len(atoms)
        n_sig = len(self._sigmas)
        numbers = atoms.numbers
        bad = (numbers < 1) | (numbers > MAX_Z)
        bad[~bad] = self._n_gaussians[numbers[~bad]] == 0
        if bad.any():
            from ase.data import chemical_symbols

            missing = sorted({int(z) for z in numbers[bad]})
            names = [chemical_symbols[z] if 0 < z <= MAX_Z else str(z) for z in missing]
            raise ValueError(
                f"gmp: no electron density for element(s) {names} (Z={missing}) "
                f"in densities {self._densities.source!r}"
            )
        width = int(self._n_gaussians[numbers].max())
        z = torch.as_tensor(numbers, device=self.device)
        counts, offsets = self._counts, self._offsets
        total = int(self._has_density) + sum(counts)
        acc = torch.zeros((n, total), dtype=self.dtype, device=self.device)
        if self._has_density:
            acc[:, 0] = self._self_density[z]
        if 0 in self._mcsh:
            k = self._orders_ge0.index(0)
            acc[:, offsets[k] : offsets[k] + counts[k]] += (
                self._self_overlap[z] * self._mcsh_t[0][0, 0]
            )

        pairs = self._pairs(atoms)
        if len(pairs):
            coef, expo = self._coef[:, :width], self._expo[:, :width]
            max_l = max(self._orders_ge0, default=0)
            per_pair = 6 * n_sig * width + 2 * total + 3 * (max_l + 1) + 4 * width + 8
            step = max(1, self.chunk_elements // per_pair)
            for start in range(0, len(pairs), step):
                sl = slice(start, start + step)
                neighbor_z = z[pairs.neighbors[sl]]
                self._accumulate(
                    acc, pairs.centers[sl], pairs.vectors[sl], pairs.distances[sl],
                    coef[neighbor_z], expo[neighbor_z],
                )  # fmt: skip

        out = []
        if self._has_density:
            rho = acc[:, :1]
            out.append(rho**2 if self.params.square else rho.abs())
        for k in range(len(self._orders_ge0)):
            block = acc[:, offsets[k] : offsets[k] + counts[k]].reshape(n, -1, n_sig)
            sq = (block**2).sum(dim=1)
            out.append(sq if self.params.square else torch.sqrt(sq))
        return torch.cat(out, dim=1)

    def _accumulate(self, acc, centers, vectors, r, b, beta) -> None:
        """Add the pair terms ``f_c(r) Σ_g overlap_g λ_g^l S_l(d)`` (``b, beta``: [P, G])."""
        fc = cosine_cutoff(r, self.cutoff)  # [P]
        r2 = r * r
        parts = []
        if self._has_density:
            parts.append(((b * torch.exp(-beta * r2[:, None])).sum(-1) * fc)[:, None])
        if self._mcsh:
            alpha = self._alpha[None, :, None]
            gamma = alpha + beta[:, None, :]  # [P, S, G]
            lam = beta[:, None, :] / gamma
            lam_pow = (
                self._norm[None, :, None]
                * b[:, None, :]
                * (math.pi / gamma) ** 1.5
                * torch.exp(-(alpha * r2[:, None, None]) * lam)
            ) * fc[:, None, None]
            max_l = max(self._orders_ge0)
            exponents = torch.arange(max_l + 1, device=r.device)
            pow_xyz = vectors[:, :, None] ** exponents  # [P, 3, L+1]
            current = 0
            for order in self._orders_ge0:
                while current < order:
                    lam_pow = lam_pow * lam
                    current += 1
                radial = lam_pow.sum(-1)  # [P, S]
                p = self._powers[order]
                monomials = pow_xyz[:, 0, p[:, 0]] * pow_xyz[:, 1, p[:, 1]] * pow_xyz[:, 2, p[:, 2]]
                harmonics = monomials @ self._mcsh_t[order].T  # [P, C]
                parts.append((harmonics[:, :, None] * radial[:, None, :]).flatten(1))
        acc.index_add_(0, centers, torch.cat(parts, dim=1))
