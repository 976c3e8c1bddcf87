"""A real HTTP server on 127.0.0.1 serving in-memory files, with knobs to misbehave once.

Shared by the download, corpus and MatBench download tests; also small files in the real
formats of the public corpora (CDVAE CSV, Alexandria ``json.bz2``, MPtrj JSON).
"""

from __future__ import annotations

import bz2
import csv
import io
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """Files served over HTTP/1.1 with Range support; every request is recorded."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[dict[str, str | None]] = []
        self.drop_after: int | None = None  # send N body bytes, then close (full length), once
        self.short_once: int | None = None  # send N bytes as if that were the file, once
        self.unsized_once: int | None = None  # no Content-Length: N bytes then close, once
        self.ignore_range = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append({"path": self.path, "range": self.headers.get("Range")})
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                if server.short_once is not None:
                    data, server.short_once = data[: server.short_once], None
                    self._send(200, data, {})
                    return
                if server.unsized_once is not None:
                    cut, server.unsized_once = server.unsized_once, None
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[:cut])
                    self.close_connection = True
                    return
                start, status, extra = 0, 200, {}
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not server.ignore_range:
                    start, status = int(match.group(1)), 206
                    if start >= len(data):
                        self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                        return
                    extra = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
                body = data[start:]
                if server.drop_after is not None:
                    cut, server.drop_after = server.drop_after, None
                    self._head(status, len(body), extra)
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self._send(status, body, extra)

            def _head(self, status: int, length: int, extra: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()

            def _send(self, status: int, body: bytes, extra: dict[str, str]) -> None:
                self._head(status, len(body), extra)
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def paths(self) -> list[str]:
        return [str(r["path"]) for r in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------------------ real formats
def _pymatgen_structure(species: list[str], frac: list[list[float]], a: float) -> dict:
    matrix = [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]]
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {"matrix": matrix, "pbc": [True, True, True]},
        "sites": [
            {
                "species": [{"element": el, "occu": 1}],
                "abc": xyz,
                "xyz": [x * a for x in xyz],
                "label": el,
                "properties": {},
            }
            for el, xyz in zip(species, frac, strict=True)
        ],
    }


PEROVSKITE = (
    ["Sr", "Ti", "O", "O", "O"],
    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
)


def cdvae_csv(n: int = 3) -> bytes:
    """A CDVAE-layout CSV (unnamed index, material_id, whole CIF, a property) of n perovskites."""
    from ase import Atoms
    from ase.io import write

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["", "material_id", "cif", "formation_energy_per_atom"])
    for k in range(n):
        a = 3.9 + 0.05 * k
        atoms = Atoms(PEROVSKITE[0], scaled_positions=PEROVSKITE[1], cell=[a, a, a], pbc=True)
        cif = io.BytesIO()
        write(cif, atoms, format="cif")
        writer.writerow([k, f"mp-{1000 + k}", cif.getvalue().decode(), -1.5 - 0.1 * k])
    return out.getvalue().encode("utf-8")


def alexandria_json_bz2(n: int = 3) -> bytes:
    """An Alexandria shard: bzip2 JSON of pymatgen ComputedStructureEntry dicts."""
    entries = [
        {
            "@module": "pymatgen.entries.computed_entries",
            "@class": "ComputedStructureEntry",
            "energy": -40.0 - k,
            "correction": 0.0,
            "entry_id": f"agm{2000000 + k:09d}",
            "data": {"e_form": -1.0 - 0.1 * k, "e_above_hull": 0.0, "mat_id": f"agm{k}"},
            "structure": _pymatgen_structure(*PEROVSKITE, 3.9 + 0.05 * k),
        }
        for k in range(n)
    ]
    doc = {"@module": "pymatgen.entries.computed_entries", "entries": entries}
    return bz2.compress(json.dumps(doc).encode("utf-8"))


def mptrj_json(n: int = 2) -> bytes:
    """MPtrj layout: {mp-id: {frame-id: {structure, energies, force, stress, magmom}}}."""
    doc = {
        f"mp-{k}": {
            f"mp-{k}-0-{step}": {
                "structure": _pymatgen_structure(*PEROVSKITE, 3.9 + 0.01 * step),
                "uncorrected_total_energy": -40.0 - step,
                "corrected_total_energy": -40.5 - step,
                "energy_per_atom": -8.1,
                "ef_per_atom": -1.2,
                "e_per_atom_relaxed": -8.2,
                "ef_per_atom_relaxed": -1.3,
                "force": [[0.0, 0.0, 0.01 * step]] * 5,
                "stress": [[0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]],
                "magmom": None,
                "bandgap": 1.5,
                "mp_id": f"mp-{k}",
            }
            for step in range(2)
        }
        for k in range(n)
    }
    return json.dumps(doc).encode("utf-8")
