"""Formats read through ``ase.io``: a bad frame is named and the rest of the file read."""

from __future__ import annotations

import pytest

from fmpretrain.io import ReadFailure, StructureReadError, read_structures

CIF_BLOCK = """data_{name}
_cell_length_a 4
_cell_length_b 4
_cell_length_c 4
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
{sites}
"""


def test_multi_block_cif_disordered_block_is_named_and_the_rest_read(tmp_path):
    path = tmp_path / "three.cif"
    path.write_text(
        CIF_BLOCK.format(name="NaCl", sites="Na1 Na 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1")
        + CIF_BLOCK.format(name="FeNiO", sites="Fe1 Fe 0 0 0 0.5\nNi1 Ni 0 0 0 0.5")
        + CIF_BLOCK.format(name="Cu", sites="Cu1 Cu 0 0 0 1")
    )
    out = list(read_structures(path, errors="collect"))
    assert [x.id for x in out] == ["three:0", f"{path}#1", "three:2"]
    bad = out[1]
    assert isinstance(bad, ReadFailure) and not bad.fatal and bad.index == 1
    assert "is disordered" in bad.reason
    assert out[2].numbers.tolist() == [29]
    with pytest.raises(StructureReadError, match=r"three\.cif, entry 1: site .* is disordered"):
        list(read_structures(path))


def test_unparsable_extxyz_frame_ends_the_file_with_one_fatal_failure(tmp_path):
    path = tmp_path / "frames.extxyz"
    path.write_text(
        '1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3 pbc="T T T" id=a\n'
        "Cu 0 0 0\n"
        "2\nPBC=nonsense\nNa 0 0 0\n"
    )
    out = list(read_structures(path, errors="collect"))
    assert out[0].id == "a"
    assert len(out) == 2 and out[1].fatal and out[1].index == 1
    assert "cannot parse as extxyz" in out[1].reason
