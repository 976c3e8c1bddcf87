"""CDVAE CSV (index, material_id, cif, properties): bad rows named, compressed files."""

from __future__ import annotations

import csv
import gzip
import io

import numpy as np
import pytest

from fmpretrain.io import ReadFailure, read_structures
from tests.io.test_readers import CDVAE_CIF


def cdvae_text(rows: list[list[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["", "material_id", "cif", "formula", "heat_all"])
    writer.writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize("name", ["perov_5-val.csv", "perov_5-val.csv.gz"])
def test_cdvae_bad_rows_are_named_and_the_rest_read(tmp_path, name):
    disordered = CDVAE_CIF.replace("Ti  Ti1  1  0.5  0.5  0.5  1", "Ti  Ti1  1  0.5  0.5  0.5  0.5")
    text = cdvae_text(
        [
            [0, "mp-1", CDVAE_CIF, "SrTiO3", "-1.25"],
            [1, "mp-2", disordered, "SrTiO3", "0.5"],
            [2, "mp-3", "not a cif", "SrTiO3", "0.5"],
            [3, "mp-4", CDVAE_CIF, "SrTiO3"],
            [4, "mp-5", CDVAE_CIF, "SrTiO3", "2.0"],
        ]
    )
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    out = list(read_structures(path, errors="collect"))
    assert [x.id for x in out] == ["mp-1", "mp-2", "mp-3", "mp-4", "mp-5"]
    assert [type(x).__name__ for x in out] == [
        "Structure",
        "ReadFailure",
        "ReadFailure",
        "ReadFailure",
        "Structure",
    ]
    assert "is disordered" in out[1].reason
    assert out[2].reason == "structure is a string but neither JSON nor CIF"
    assert out[3].reason == "row holds 4 values for 5 columns"
    assert [f.index for f in out if isinstance(f, ReadFailure)] == [1, 2, 3]
    assert out[4].properties == {"formula": "SrTiO3", "heat_all": 2.0}
    np.testing.assert_allclose(np.diag(out[4].cell), [3.905] * 3)
