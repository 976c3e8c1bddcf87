"""``concat``: several descriptors side by side as one fingerprint (one neighbour list)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from fmpretrain.descriptors import available_descriptors, get_descriptor
from fmpretrain.generate import generate_structures
from fmpretrain.structures import Structure


@pytest.fixture(scope="module")
def structures() -> list[Structure]:
    cells = list(generate_structures(4, seed=5, min_atoms=4, max_atoms=12))
    cells.append(Structure.from_ase(molecule("H2O"), id="water"))  # no periodicity
    cells.append(Structure.from_ase(bulk("Cu", "fcc", a=3.6), id="one-atom"))
    return cells


def test_default_is_wacsf_gmp_ead_side_by_side(structures):
    concat = get_descriptor("concat")
    parts = [get_descriptor(name) for name in ("wacsf", "gmp", "ead")]
    assert "concat" in available_descriptors()
    assert concat.dim == sum(p.dim for p in parts) == 50 + 25 + 64
    assert concat.feature_names == [n for p in parts for n in p.feature_names]
    for s in structures:
        expected = torch.cat([p(s) for p in parts], dim=1)
        torch.testing.assert_close(concat(s), expected, rtol=1e-12, atol=0.0)


def test_batched_equals_per_structure(structures):
    concat = get_descriptor("concat", parts=["ead", {"name": "wacsf", "params": {"n_radial": 4}}])
    batched = concat(structures)
    for b, s in zip(batched, structures, strict=True):
        torch.testing.assert_close(b, concat(s), rtol=1e-12, atol=1e-12)


def test_hash_follows_every_part_and_rebuilds_from_its_record():
    concat = get_descriptor("concat")
    rebuilt = get_descriptor("concat", **concat.config()["params"])  # as a manifest records it
    assert rebuilt.hash == concat.hash and rebuilt.dim == concat.dim
    changed = get_descriptor(
        "concat", parts=["wacsf", "gmp", {"name": "ead", "params": {"l_max": 2}}]
    )
    assert changed.hash != concat.hash
    assert (
        get_descriptor("concat", parts=["ead", "wacsf"]).hash
        != get_descriptor("concat", parts=["wacsf", "ead"]).hash
    )  # order is part of the fingerprint


def test_repeated_part_names_stay_unique():
    twice = get_descriptor("concat", parts=["ead", {"name": "ead", "params": {"l_max": 1}}])
    names = twice.feature_names
    assert len(names) == len(set(names)) == twice.dim


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([], "parts is empty"),
        (["concat"], "cannot itself be 'concat'"),
        (["nope"], "unknown descriptor 'nope'"),
        ([{"name": "ead", "params": {"cutoff": 5.0}}], "give every part the same cutoff"),
        ([{"descriptor": "ead"}], "neither a descriptor name"),
        ([{"name": "ead", "version": 99}], "recorded at version 99"),
    ],
)
def test_bad_parts_are_clear_errors(parts, message):
    with pytest.raises((ValueError, KeyError), match=message):
        get_descriptor("concat", parts=parts)


def test_gmp_rebuilds_from_its_recorded_density_digest():
    gmp = get_descriptor("gmp")
    params = gmp.config()["params"]
    assert params["densities"] != "covalent"  # the manifest records the content digest
    assert get_descriptor("gmp", **params).hash == gmp.hash
    atoms = bulk("NaCl", "rocksalt", a=5.6)
    np.testing.assert_array_equal(get_descriptor("gmp", **params)(atoms), gmp(atoms))


def test_shipped_yaml_matches_the_code_defaults():
    from omegaconf import OmegaConf

    from fmpretrain.config import named_config

    shipped = OmegaConf.load(named_config("descriptors", "concat"))  # DictConfig / ListConfig
    assert get_descriptor("concat", **shipped).hash == get_descriptor("concat").hash
