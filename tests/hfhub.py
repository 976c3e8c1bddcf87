"""A small Hugging Face Hub on 127.0.0.1: the routes ``huggingface_hub``'s client calls to
download a snapshot and to upload a folder of small (regular, non-LFS) files.

Download: ``GET /api/models/{repo}/revision/{rev}`` (model info: ``sha``, ``siblings``),
``GET /api/models/{repo}/tree/{rev}[/{path}]`` (the file listing), ``HEAD``/``GET
/{repo}/resolve/{rev}/{path}`` (``ETag``, ``X-Repo-Commit``, ``Content-Length``, Range).
Upload: ``POST /api/repos/create``, ``POST /api/models/{repo}/branch/{branch}``, ``POST
/api/validate-yaml``, ``POST /api/models/{repo}/preupload/{rev}`` (every file: ``regular``) and
``POST /api/models/{repo}/commit/{rev}`` (the NDJSON commit: header, base64 files, deletions).
Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) as the
hub's do. Writes need ``Authorization: Bearer {token}``. Every request is recorded;
``drop_after[name] = N`` hangs up once after N bytes of that file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
REPO = r"(?P<repo>[^/]+/[^/]+)"


def git_oid(data: bytes) -> str:
    """The git blob sha1 of ``data`` (the hub's ETag of a regular file)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


class HubServer:
    """Model repositories in memory: ``repos[repo_id] = {"branches": {name: sha}, "commits":
    {sha: {path: bytes}}}``."""

    def __init__(self, token: str = "hf_test_write_token") -> None:
        self.token = token
        self.repos: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path without query)
        self.ranges: list[tuple[str, str]] = []  # (path, Range header) of ranged GETs
        self.drop_after: dict[str, int] = {}  # file path -> send N bytes then hang up, once
        self.lock = threading.Lock()
        self._counter = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._dispatch("HEAD")

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def _dispatch(self, method: str) -> None:
                path, _, query = self.path.partition("?")
                with server.lock:
                    server.requests.append((method, path))
                    if self.headers.get("Range"):
                        server.ranges.append((path, self.headers["Range"]))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    status, headers, payload = server.handle(
                        method, path, urllib.parse.parse_qs(query), self.headers, body
                    )
                except HubError as err:
                    status = err.status
                    payload = json.dumps({"error": err.message, **err.extra}).encode()
                    headers = {"Content-Type": "application/json", "X-Error-Message": err.message}
                    if err.code:
                        headers["X-Error-Code"] = err.code
                    if err.status == 404 and getattr(err, "commit", None):
                        headers["X-Repo-Commit"] = err.commit  # type: ignore[attr-defined]
                self.send_response(status)
                length = headers.pop("Content-Length", None) or str(len(payload))
                self.send_header("Content-Length", length)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                cut = (
                    server.drop_after.pop(path.rsplit("/", 1)[-1], None)
                    if method == "GET"
                    else None
                )
                if cut is not None and status == 200:  # a connection lost mid-body
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                elif method != "HEAD":
                    self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ test helpers
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def create(self, repo_id: str) -> str:
        """An empty repository (one commit holding ``.gitattributes``, as the hub makes)."""
        with self.lock:
            return self._create(repo_id)

    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Add ``files`` (path -> bytes) in a new commit on ``branch``; return its sha."""
        with self.lock:
            if repo_id not in self.repos:
                self._create(repo_id)
            repo = self.repos[repo_id]
            parent = repo["branches"].get(branch) or repo["branches"]["main"]
            tree = {**repo["commits"][parent], **files}
            return self._new_commit(repo, branch, tree)

    def put_release(self, repo_id: str, release: Path, subfolder: str = "", **kw: Any) -> str:
        """Commit every file of a release directory (under ``subfolder``)."""
        prefix = f"{subfolder}/" if subfolder else ""
        files = {prefix + p.name: p.read_bytes() for p in sorted(release.iterdir()) if p.is_file()}
        return self.commit(repo_id, files, **kw)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return dict(repo["commits"][self._resolve(repo_id, revision)])

    def corrupt(self, repo_id: str, path: str, revision: str = "main") -> None:
        """Flip the last byte of a file in place (same commit): the hub now serves bad bytes."""
        with self.lock:
            tree = self.repos[repo_id]["commits"][self._resolve(repo_id, revision)]
            data = bytearray(tree[path])
            data[-1] ^= 0xFF
            tree[path] = bytes(data)

    def count(self, method: str, fragment: str = "") -> int:
        """Requests so far with ``method`` whose path contains ``fragment``."""
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and fragment in p)

    # ------------------------------------------------------------------ state
    def _create(self, repo_id: str) -> str:
        repo = {"branches": {}, "commits": {}}
        self.repos[repo_id] = repo
        return self._new_commit(repo, "main", {".gitattributes": GITATTRIBUTES})

    def _new_commit(self, repo: dict[str, Any], branch: str, tree: dict[str, bytes]) -> str:
        self._counter += 1
        seed = json.dumps([self._counter, sorted((k, git_oid(v)) for k, v in tree.items())])
        sha = hashlib.sha1(seed.encode()).hexdigest()
        repo["commits"][sha] = tree
        repo["branches"][branch] = sha
        return sha

    def _repo(self, repo_id: str) -> dict[str, Any]:
        if repo_id not in self.repos:
            raise HubError(404, "RepoNotFound", f"Repository not found: {repo_id}")
        return self.repos[repo_id]

    def _resolve(self, repo_id: str, revision: str) -> str:
        repo = self._repo(repo_id)
        if revision in repo["branches"]:
            return repo["branches"][revision]
        if revision in repo["commits"]:
            return revision
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def _authorize(self, headers: Any) -> None:
        if headers.get("Authorization") != f"Bearer {self.token}":
            raise HubError(401, None, "Invalid credentials in Authorization header")

    # ------------------------------------------------------------------ routes
    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            if method in ("GET", "HEAD") and (
                m := re.fullmatch(rf"/{REPO}/resolve/([^/]+)/(.+)", path)
            ):
                return self._file(method, m["repo"], _unq(m[2]), _unq(m[3]), headers)
            if method == "GET":
                if m := re.fullmatch(rf"/api/models/{REPO}/revision/([^/]+)", path):
                    return self._info(m["repo"], _unq(m[2]))
                if m := re.fullmatch(rf"/api/models/{REPO}/tree/([^/]+)(?:/(.*))?", path):
                    return self._tree(m["repo"], _unq(m[2]), _unq(m[3] or ""))
            if method == "POST":
                if path == "/api/validate-yaml":
                    return _json({"errors": [], "warnings": []})
                self._authorize(headers)
                if path == "/api/repos/create":
                    return self._create_route(json.loads(body))
                if m := re.fullmatch(rf"/api/models/{REPO}/branch/([^/]+)", path):
                    return self._branch(m["repo"], _unq(m[2]))
                if m := re.fullmatch(rf"/api/models/{REPO}/preupload/([^/]+)", path):
                    return self._preupload(m["repo"], _unq(m[2]), json.loads(body))
                if m := re.fullmatch(rf"/api/models/{REPO}/commit/([^/]+)", path):
                    return self._commit_route(m["repo"], _unq(m[2]), body)
        raise HubError(404, None, f"no route {method} {path} in the test hub")

    def _info(self, repo_id: str, revision: str) -> tuple[int, dict[str, str], bytes]:
        sha = self._resolve(repo_id, revision)
        siblings = [{"rfilename": name} for name in sorted(self.repos[repo_id]["commits"][sha])]
        return _json({"id": repo_id, "sha": sha, "private": False, "siblings": siblings})

    def _tree(self, repo_id: str, revision: str, folder: str) -> tuple[int, dict[str, str], bytes]:
        tree = self.repos[repo_id]["commits"][self._resolve(repo_id, revision)]
        prefix = f"{folder}/" if folder else ""
        entries = [
            {"type": "file", "path": name, "size": len(data), "oid": git_oid(data)}
            for name, data in sorted(tree.items())
            if name.startswith(prefix)
        ]
        return _json(entries)

    def _file(
        self, method: str, repo_id: str, revision: str, name: str, headers: Any
    ) -> tuple[int, dict[str, str], bytes]:
        sha = self._resolve(repo_id, revision)
        tree = self.repos[repo_id]["commits"][sha]
        if name not in tree:
            err = HubError(404, "EntryNotFound", f"Entry not found: {name}")
            err.commit = sha  # type: ignore[attr-defined]
            raise err
        data = tree[name]
        out = {
            "ETag": f'"{git_oid(data)}"',
            "X-Repo-Commit": sha,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", headers.get("Range") or "")
        if match and method == "GET":
            start = int(match[1])
            end = int(match[2]) if match[2] else len(data) - 1
            if start >= len(data):
                return 416, {"Content-Range": f"bytes */{len(data)}"}, b""
            out["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return 206, out, data[start : end + 1]
        if method == "HEAD":
            out["Content-Length"] = str(len(data))
            return 200, out, b""
        return 200, out, data

    def _create_route(self, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if payload.get("organization") is None:
            raise HubError(400, None, "the test hub wants ORG/NAME repositories")
        repo_id = f"{payload['organization']}/{payload['name']}"
        if payload.get("type", "model") != "model":
            raise HubError(400, None, "the test hub holds model repositories only")
        if repo_id in self.repos:
            url = f"{self.endpoint}/{repo_id}"  # the hub's 409 names the existing repo
            raise HubError(409, None, "You already created this model repo", url=url)
        self._create(repo_id)
        return _json({"url": f"{self.endpoint}/{repo_id}", "name": repo_id})

    def _branch(self, repo_id: str, branch: str) -> tuple[int, dict[str, str], bytes]:
        repo = self._repo(repo_id)
        if branch in repo["branches"]:
            raise HubError(409, None, f"Reference already exists: {branch}")
        repo["branches"][branch] = repo["branches"]["main"]
        return _json({})

    def _preupload(
        self, repo_id: str, revision: str, payload: dict[str, Any]
    ) -> tuple[int, dict[str, str], bytes]:
        tree = self.repos[repo_id]["commits"][self._resolve(repo_id, revision)]
        files = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_oid(tree[f["path"]]) if f["path"] in tree else None,
            }
            for f in payload["files"]
        ]
        return _json({"files": files, "commitOid": self._resolve(repo_id, revision)})

    def _commit_route(
        self, repo_id: str, revision: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        repo = self._repo(repo_id)
        if revision not in repo["branches"]:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        tree = dict(repo["commits"][repo["branches"][revision]])
        header = None
        for line in body.decode().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, None, "file content must be base64")
                tree[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                tree.pop(value["path"], None)
            elif key == "deletedFolder":
                tree = {k: v for k, v in tree.items() if not k.startswith(value["path"] + "/")}
            else:
                raise HubError(422, None, f"the test hub does not take {key!r} operations")
        if header is None or not header.get("summary"):
            raise HubError(400, None, "commit without a header summary")
        sha = self._new_commit(repo, revision, tree)
        return _json({"commitUrl": f"{self.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha,
                      "success": True, "pullRequestUrl": None})  # fmt: skip


def _unq(text: str) -> str:
    return urllib.parse.unquote(text)


def _json(value: Any) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(value).encode()
