"""ASE databases: ASE-LMDB (OMat24) through the real ``ase-db-backends`` backend, SQLite rows."""

from __future__ import annotations

import sqlite3

import ase.db
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

import fmpretrain.io.ase_db
from fmpretrain.io import ReadFailure, StructureReadError, iter_structure_files, read_structures

pytest.importorskip("ase_db_backends")


def write_omat_like(path, n: int = 5) -> None:
    """Rows like OMat24's: a calculator with energy, forces and stress, an ``sid`` key."""
    with ase.db.connect(str(path)) as db:
        for i in range(n):
            atoms = bulk("Cu", "fcc", a=3.6 + 0.01 * i) * (1, 1, 2)
            atoms.calc = SinglePointCalculator(
                atoms,
                energy=-7.0 - i,
                forces=np.full((2, 3), 0.1 * i),
                stress=np.array([0.1, 0.2, 0.3, 0.0, 0.0, 0.0]),
            )
            db.write(atoms, sid=f"rattled-{i}", data={"source": "test"})


def test_aselmdb_round_trip_in_pages(tmp_path, monkeypatch):
    monkeypatch.setattr(fmpretrain.io.ase_db, "DB_PAGE_SIZE", 2)
    path = tmp_path / "val" / "data.0000.aselmdb"
    path.parent.mkdir()
    write_omat_like(path)
    assert [p.name for p in iter_structure_files(tmp_path)] == ["data.0000.aselmdb"]
    out = list(read_structures(path))
    assert [s.id for s in out] == [f"rattled-{i}" for i in range(5)]
    assert out[3].properties == {"energy": -10.0, "stress": [0.1, 0.2, 0.3, 0.0, 0.0, 0.0]}
    assert out[3].numbers.tolist() == [29, 29]
    np.testing.assert_allclose(out[3].cell, (bulk("Cu", "fcc", a=3.63) * (1, 1, 2)).cell[:])


def test_aselmdb_corrupt_row_is_named_and_the_rest_read(tmp_path):
    import lmdb

    path = tmp_path / "data.aselmdb"
    write_omat_like(path, n=3)
    env = lmdb.open(str(path), subdir=False)
    with env.begin(write=True) as txn:
        txn.put(b"2", b"not zlib-compressed json")
    env.close()
    out = list(read_structures(path, errors="collect"))
    assert [x.id for x in out] == ["rattled-0", "data:2", "rattled-2"]
    assert isinstance(out[1], ReadFailure) and out[1].index == 1
    assert out[1].reason.startswith("cannot read row 2: ")


def test_sqlite_undecodable_row_is_named_and_the_rest_read(tmp_path):
    path = tmp_path / "oqmd.db"
    with ase.db.connect(path) as db:
        for i in range(3):
            db.write(bulk("Cu", "fcc", a=3.6 + 0.1 * i), structure_id=f"cu-{i}")
    with sqlite3.connect(path) as con:
        con.execute("update systems set positions=? where id=2", (b"\x00\x01\x02",))
    out = list(read_structures(path, errors="collect"))
    assert [x.id for x in out] == ["cu-0", "oqmd:2", "cu-2"]
    assert isinstance(out[1], ReadFailure) and "cannot read row 2" in out[1].reason
    with pytest.raises(StructureReadError, match=r"oqmd\.db, entry 1 \(id 'oqmd:2'\)"):
        list(read_structures(path))


def test_garbage_aselmdb_is_one_failure(tmp_path):
    path = tmp_path / "bad.aselmdb"
    path.write_bytes(b"this is not an LMDB file" * 100)
    (failure,) = read_structures(path, errors="collect")
    assert failure.fatal and "cannot open ASE database" in failure.reason
