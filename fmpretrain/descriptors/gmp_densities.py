"""Element electron densities for GMP, each a short sum of Gaussians.

An element ``Z`` has the spherical density ``ρ_Z(r) = Σ_g B_g exp(−β_g r²)`` (``B`` in e/Å³,
``β`` in 1/Å²). Two sources:

``"covalent"`` (built in, no download)
    One Gaussian per element, for every element 1-118: ``Z`` electrons spread with
    ``β = 1 / r_cov²`` (``r_cov`` = ``ase.data.covalent_radii``), i.e. the radial density
    ``4πr²ρ`` peaks at the covalent radius; ``B = Z (β/π)^{3/2}`` so ``∫ρ = Z``. ASE's table
    gives 2.0 Å to the elements it has no radius for (Z >= 97).

GMPFeaturizer pseudo-density files (``.gpsp``)
    The format of the files shipped with GMPFeaturizer (e.g. ``QE-kjpaw.gpsp``, fitted to the
    valence densities of Quantum ESPRESSO pseudopotentials; the pre-training paper used that
    one)::

        # comment lines
        ! 95 elements
        ****
        X	0	1
        0.0	1.0
        ****
        H	1	4
        -0.0156	33.95
        ...

    ``****`` opens an element block; its first line is ``symbol  Z  n_gaussians`` and the next
    ``n_gaussians`` lines are ``B  β`` pairs. The ``X`` (Z = 0) placeholder is skipped. A path
    may name one file or a directory, whose ``*.gpsp`` files are merged (an element defined
    twice is an error).

:class:`DensityTable.digest` hashes the numbers, not where they came from, so a descriptor's hash
follows the densities' content. :func:`write_gpsp` writes a table back in the ``.gpsp`` format.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Name of the built-in density scheme (see the module docstring).
BUILTIN_DENSITIES = ("covalent",)

MAX_Z = 118

Gaussians = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class DensityTable:
    """``gaussians[Z] = ((B_1, β_1), (B_2, β_2), ...)`` for every element the table covers."""

    gaussians: dict[int, Gaussians]
    source: str

    def __post_init__(self) -> None:
        for z, gs in self.gaussians.items():
            if not gs:
                raise ValueError(f"{self.source}: element Z={z} has no Gaussians")
            for b, beta in gs:
                if not (math.isfinite(b) and math.isfinite(beta)) or beta <= 0:
                    raise ValueError(
                        f"{self.source}: element Z={z} has an invalid Gaussian "
                        f"(B={b}, beta={beta}); exponents must be positive and finite"
                    )

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 of the numbers (exact float reprs), independent of file names and layout."""
        canonical = [
            [z, [[b, beta] for b, beta in self.gaussians[z]]] for z in sorted(self.gaussians)
        ]
        blob = json.dumps(canonical, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def covalent_densities() -> DensityTable:
    """The built-in table: one normalized Gaussian of ``Z`` electrons per element, β = 1/r_cov²."""
    from ase.data import covalent_radii

    table = {}
    for z in range(1, MAX_Z + 1):
        beta = 1.0 / float(covalent_radii[z]) ** 2
        table[z] = ((z * (beta / math.pi) ** 1.5, beta),)
    return DensityTable(table, "covalent")


def parse_gpsp(text: str, source: str = "<gpsp>") -> dict[int, Gaussians]:
    """Parse the text of a GMPFeaturizer ``.gpsp`` file into ``{Z: ((B, β), ...)}``."""
    from ase.data import atomic_numbers

    blocks: list[tuple[int, list[str]]] = []  # (line number of header, lines)
    declared = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            parts = line[1:].split()
            if len(parts) >= 1 and parts[0].isdigit():
                declared = int(parts[0])
            continue
        if line.startswith("*"):
            blocks.append((number, []))
            continue
        if not blocks:
            raise ValueError(f"{source}:{number}: data before the first '****' block marker")
        blocks[-1][1].append(f"{number}\t{line}")

    table: dict[int, Gaussians] = {}
    for start, lines in blocks:
        if not lines:
            raise ValueError(f"{source}:{start}: empty element block")
        number, header = lines[0].split("\t", 1)
        fields = header.split()
        symbol = fields[0]
        if symbol == "X":
            continue
        if symbol not in atomic_numbers:
            raise ValueError(f"{source}:{number}: unknown element symbol {symbol!r}")
        z = atomic_numbers[symbol]
        if len(fields) >= 2 and int(fields[1]) != z:
            raise ValueError(
                f"{source}:{number}: element {symbol} declared with Z={fields[1]}, expected {z}"
            )
        rows = []
        for entry in lines[1:]:
            number, body = entry.split("\t", 1)
            values = body.split()
            try:
                b, beta = float(values[0]), float(values[1])
            except (IndexError, ValueError) as err:
                raise ValueError(f"{source}:{number}: expected 'B beta', got {body!r}") from err
            rows.append((b, beta))
        if len(fields) >= 3 and int(fields[2]) != len(rows):
            raise ValueError(
                f"{source}:{start}: element {symbol} declares {fields[2]} Gaussians "
                f"but lists {len(rows)}"
            )
        if z in table:
            raise ValueError(f"{source}: element {symbol} is defined twice")
        table[z] = tuple(rows)
    if declared is not None and declared != len(blocks):
        raise ValueError(f"{source}: header declares {declared} elements, found {len(blocks)}")
    if not table:
        raise ValueError(f"{source}: no element densities found")
    return table


def read_gpsp(path: str | Path) -> DensityTable:
    """Read one ``.gpsp`` file."""
    path = Path(path)
    return DensityTable(parse_gpsp(path.read_text(), source=str(path)), str(path))


def load_densities(spec: str | Sequence[str]) -> DensityTable:
    """Densities from a built-in name, a ``.gpsp`` file, a directory of them, or several paths."""
    if isinstance(spec, str) and spec in BUILTIN_DENSITIES:
        return covalent_densities()
    if isinstance(spec, str) and spec == covalent_densities().digest:
        return covalent_densities()  # as recorded in a manifest or release (content digest)
    paths = [spec] if isinstance(spec, str) else list(spec)
    if not paths:
        raise ValueError("gmp: densities needs a built-in name or at least one path")
    files: list[Path] = []
    for entry in paths:
        p = Path(entry).expanduser()
        if p.is_dir():
            found = sorted(p.glob("*.gpsp"))
            if not found:
                raise ValueError(f"gmp: directory {str(p)!r} holds no *.gpsp density files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(
                f"gmp: densities {entry!r} is neither a built-in scheme {BUILTIN_DENSITIES} "
                "(or its digest) nor an existing .gpsp file or directory"
            )
    merged: dict[int, Gaussians] = {}
    for f in files:
        for z, gs in read_gpsp(f).gaussians.items():
            if z in merged:
                raise ValueError(f"gmp: element Z={z} is defined in more than one file ({f})")
            merged[z] = gs
    source = str(files[0]) if len(files) == 1 else f"{len(files)} .gpsp files"
    return DensityTable(merged, source)


def write_gpsp(
    path: str | Path, gaussians: dict[int, Gaussians], title: str = "fmpretrain"
) -> Path:
    """Write ``{Z: ((B, β), ...)}`` as a GMPFeaturizer ``.gpsp`` file (exact float reprs)."""
    from ase.data import chemical_symbols

    lines = [f"# GMP_psp_{title}", "# written by fmpretrain", f"! {len(gaussians) + 1} elements"]
    lines += ["****", "X\t0\t1", "0.0\t1.0"]
    for z in sorted(gaussians):
        lines += ["****", f"{chemical_symbols[z]}\t{z}\t{len(gaussians[z])}"]
        lines += [f"{b!r}\t{beta!r}" for b, beta in gaussians[z]]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path
