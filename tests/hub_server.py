"""A loopback fake of the Hugging Face Hub HTTP API, for tests (standard library only, in-memory, thread safe).

Point the real clients at it with ``HF_ENDPOINT=<hub.url>`` set *before* ``huggingface_hub`` is imported (see
``run_client``), e.g.::

    with HubServer(token="hf_test_token") as hub:
        proc = run_client(hub, "from huggingface_hub import HfApi; print(HfApi().whoami()['name'])")

Implemented endpoints (``{t}`` = ``models|datasets|spaces``; ``{p}`` = file-URL prefix: ``""``, ``datasets/`` or
``spaces/``; repo ids are always ``namespace/name``):

- ``GET  /api/whoami-v2``                                     user ``tester`` (needs the token)
- ``POST /api/repos/create``   {name, organization?, type?, visibility?|private?, sdk?}  200 {url, name, id}; 409 if
  it exists; 400 for a bad name or a space without sdk. A new repo gets an initial commit holding ``.gitattributes``.
- ``DELETE /api/repos/delete`` {name, organization?, type?}
- ``POST /api/validate-yaml``  {content, repoType}: 400 when the README front matter is not a YAML mapping
- ``GET  /api/{t}/{ns}/{name}[/revision/{rev}]``              repo info (sha, private, siblings, cardData, tags, sdk;
  ``?blobs=true`` adds size/blobId/lfs to siblings)
- ``GET  /api/{t}/{ns}/{name}/tree/{rev}[/{path}]``           ``?recursive=true``, ``?expand=true`` (lastCommit);
  one page, no ``Link`` header
- ``POST /api/{t}/{ns}/{name}/paths-info/{rev}``              form or JSON {paths, expand}
- ``GET  /api/{t}/{ns}/{name}/refs``                          the single branch ``main``
- ``POST /api/{t}/{ns}/{name}/preupload/{rev}``               upload modes from ``hub.upload_mode``, plus the stored
  ``oid`` of files already at that path (sha256 for LFS files, git blob sha1 otherwise: what the client compares)
- ``POST /api/{t}/{ns}/{name}/commit/{rev}``                  NDJSON (optionally gzip) with header, file, lfsFile,
  deletedFile, deletedFolder; parentCommit (412 on mismatch); atomic
- ``POST /{p}{ns}/{name}.git/info/lfs/objects/batch``         LFS batch, always answers transfer ``basic``
- ``PUT  /_lfs/{type}/{ns}/{name}/{oid}?sig=..``              LFS upload (signed URL: the client sends no token here,
  like an S3 pre-signed URL); 400 if the sha256 does not match
- ``POST /_lfs/{type}/{ns}/{name}/{oid}/verify``              LFS verify
- ``GET|HEAD /{p}{ns}/{name}/resolve/{rev}/{path}``           bytes served directly (no redirect), ``Range`` (206/416),
  ``X-Repo-Commit``, quoted ``ETag`` (git sha1, or sha256 for LFS), ``X-Linked-Etag``/``X-Linked-Size`` for LFS
- ``GET /api/{t}/{ns}/{name}/xet-{read|write}-token/{rev}``  501: Xet storage is not implemented
- ``GET|POST|DELETE /api/spaces/{ns}/{name}/variables``       a Space's variables (needs the token): GET lists them,
  POST {key, value, description?} adds or updates one, DELETE {key} removes one; each answers every variable as
  {key: {value, description?, updatedAt}}
- ``POST /api/spaces/{ns}/{name}/hardware``                  {flavor, sleepTimeSeconds?} (needs the token): 400 for a
  flavor not in ``SPACE_HARDWARE``; answers the runtime
- ``GET  /api/spaces/{ns}/{name}/runtime``                   {stage, hardware: {current, requested}, gcTimeout, ...}
- ``PUT  /api/{t}/{ns}/{name}/settings``                     {visibility?: public|private|protected, private?,
  gated?} (needs the token): changes the repo's visibility; ``commit_visibility`` records it at every commit

Errors are JSON ``{"error": msg}`` with ``X-Error-Message`` and, where the Hub sends one, ``X-Error-Code``
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), which ``huggingface_hub`` maps to its exceptions.

Simplified: a single branch ``main`` (revisions are ``main`` or a commit sha / unique prefix of >= 7 hex chars); no
tags, PRs (``create_pr`` -> 400), gating, orgs permissions (any namespace is writable with the token), pagination,
Space builds (a requested hardware flavor is current at once; the stage is ``BUILDING`` once the Space has its
``app.py``, ``NO_APP_FILE`` before), copyFile/cross-repo LFS copies, LFS multipart, Xet. Auth: one bearer token. A
request carrying a wrong token gets 401 ``Invalid credentials in Authorization header`` (as on the Hub); writes need
the token; private repos read without it answer 401 ``RepoNotFound`` (404 when authenticated but missing).
Nothing is logged (no headers, no token).

Client facts this server relies on (huggingface_hub 2.4): LFS-mode uploads go through ``hf_xet`` (never the LFS batch
endpoint) unless ``HF_HUB_DISABLE_XET=1``; ``run_client`` sets it by default. The legacy upload path posts the commit
once (a 500 raises); with Xet enabled ``upload_folder`` retries the commit POST on 5xx. Preupload/LFS calls are
retried on 5xx/network errors (1 s, 2 s, 4 s ... backoff).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
LFS_EXTENSIONS = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".msgpack", ".gguf", ".npy",
                  ".npz", ".pkl", ".pickle", ".arrow", ".parquet", ".zip", ".gz", ".tar", ".png", ".jpg", ".jpeg"}
GITATTRIBUTES = b"".join(b"*%s filter=lfs diff=lfs merge=lfs -text\n" % e.encode() for e in sorted(LFS_EXTENSIONS))
NAME_RE = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9][A-Za-z0-9._-]{0,94}[A-Za-z0-9]$|^[A-Za-z0-9]$")
YAML_RE = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
API_RE = re.compile(r"^/api/(models|datasets|spaces)/([^/]+)/([^/]+)"
                    r"(?:/(revision|tree|paths-info|preupload|commit|refs|xet-write-token|xet-read-token|"
                    r"variables|hardware|runtime|settings)"
                    r"(?:/([^/]+)(?:/(.*))?)?)?/?$")
RESOLVE_RE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")
BATCH_RE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+?)\.git/info/lfs/objects/batch$")
LFS_RE = re.compile(r"^/_lfs/(model|dataset|space)/([^/]+)/([^/]+)/([0-9a-f]{64})(/verify)?$")
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
# the Hub's Space hardware flavors (huggingface_hub 2.4's SpaceHardware values)
SPACE_HARDWARE = ("cpu-basic", "cpu-upgrade", "zero-a10g", "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1",
                  "l40sx4", "l40sx8", "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large",
                  "a100x4", "a100x8", "rtx-pro-6000", "rtx-pro-6000x2", "rtx-pro-6000x4", "rtx-pro-6000x8")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of ``data`` (``sha1("blob <len>\\0" + data)``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Blob:
    """File content; an LFS blob also has its git pointer file, whose git sha1 is the tree ``oid``."""

    def __init__(self, data: bytes, lfs: bool = False) -> None:
        self.data, self.lfs, self.size = data, lfs, len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n"
                        .encode() if lfs else b"")
        self.oid = git_blob_sha1(self.pointer if lfs else data)


@dataclass
class Commit:
    sha: str
    title: str
    date: str
    files: dict[str, Blob]
    private: bool = False  # the repo's visibility when the commit landed


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    sdk: str | None
    created: str
    commits: list[Commit] = field(default_factory=list)
    lfs: dict[str, Blob] = field(default_factory=dict)  # uploaded LFS objects, by sha256
    variables: dict[str, dict] = field(default_factory=dict)  # a Space's: key -> {value, description?, updatedAt}
    hardware: str = "cpu-basic"  # a Space's hardware flavor
    sleep_time: int | None = None  # a Space's sleepTimeSeconds, when requested


class HubError(Exception):
    """An HTTP error answer: status, message, optional ``X-Error-Code`` and extra headers."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 **extra) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.extra = status, message, code, headers or {}, extra


Response = tuple[int, dict, bytes]


def _json(obj, status: int = 200, content_type: str = "application/json") -> Response:
    return status, {"Content-Type": content_type}, json.dumps(obj).encode()


def _truthy(query: dict, key: str) -> bool:
    return query.get(key, ["false"])[-1].lower() in ("1", "true", "yes")


class HubServer:
    """In-memory Hub on ``127.0.0.1``; see the module docstring for the API.

    Attributes: ``url``, ``token``, ``user``, ``upload_mode`` ("auto" | "regular" | "lfs"), ``requests`` (list of
    ``(method, path)`` without query string, headers or bodies).
    """

    def __init__(self, token: str = "hf_test_token", host: str = "127.0.0.1", port: int = 0, user: str = "tester",
                 orgs: tuple[str, ...] = ("test-org",), upload_mode: str = "auto") -> None:
        self.token, self.user, self.orgs, self.upload_mode = token, user, tuple(orgs), upload_mode
        self.requests: list[tuple[str, str]] = []
        self._host, self._port = host, port
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._faults: list[list] = []  # [path_contains, mode, remaining]
        self._counter = 0
        self._secret = secrets.token_bytes(16)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def __repr__(self) -> str:  # never show the token
        return f"HubServer(url={self.url!r}, user={self.user!r})"

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "HubServer":
        """Bind (port 0 = a free port), serve in a daemon thread, set ``url``."""
        self._httpd = ThreadingHTTPServer((self._host, self._port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]
        self.url = f"http://{self._host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- test helpers
    def fail_next(self, path_contains: str, mode: str = "500", count: int = 1) -> None:
        """Make the next ``count`` requests whose path contains ``path_contains`` fail without touching any state:
        ``mode="500"`` (or another status code) answers a JSON error, ``"drop"`` closes the socket unanswered."""
        if mode != "drop" and not (mode.isdigit() and len(mode) == 3):
            raise ValueError("mode must be 'drop' or an HTTP status code such as '500'")
        with self._lock:
            self._faults.append([path_contains, mode, count])

    def commits(self, repo_id: str, repo_type: str = "model") -> list[str]:
        """Commit shas of ``main``, oldest first (the first one is the repo-creation commit)."""
        with self._lock:
            return [c.sha for c in self._get(repo_type, repo_id).commits]

    def files(self, repo_id: str, repo_type: str = "model", rev: str = "main") -> dict[str, bytes]:
        """``{path: bytes}`` of the repo at ``rev``."""
        with self._lock:
            repo = self._get(repo_type, repo_id)
            return {p: b.data for p, b in self._commit_at(repo, rev).files.items()}

    def commit_visibility(self, repo_id: str, repo_type: str = "model") -> list[bool]:
        """For each commit of ``main``, oldest first: whether the repo was private when it landed."""
        with self._lock:
            return [c.private for c in self._get(repo_type, repo_id).commits]

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        """The repo's visibility now."""
        with self._lock:
            return self._get(repo_type, repo_id).private

    def space_variables(self, repo_id: str) -> dict[str, str]:
        """``{key: value}`` of the Space ``repo_id``'s variables."""
        with self._lock:
            return {k: v["value"] for k, v in self._get("space", repo_id).variables.items()}

    def space_hardware(self, repo_id: str) -> str:
        """The hardware flavor of the Space ``repo_id`` (``cpu-basic`` until another is requested)."""
        with self._lock:
            return self._get("space", repo_id).hardware

    def lfs_files(self, repo_id: str, repo_type: str = "model", rev: str = "main") -> set[str]:
        """Paths stored as LFS at ``rev``."""
        with self._lock:
            repo = self._get(repo_type, repo_id)
            return {p for p, b in self._commit_at(repo, rev).files.items() if b.lfs}

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False,
                    sdk: str | None = None) -> None:
        """Create a repo server-side (no HTTP), like ``POST /api/repos/create``."""
        with self._lock:
            self._create(repo_type, repo_id, private, sdk or ("gradio" if repo_type == "space" else None))

    def commit_files(self, repo_id: str, files: dict[str, bytes | None], repo_type: str = "model",
                     message: str = "seed", lfs: bool = False) -> str:
        """Commit ``files`` server-side (``None`` deletes a path); returns the new commit sha."""
        with self._lock:
            repo = self._get(repo_type, repo_id)
            snapshot = dict(repo.commits[-1].files)
            for path, data in files.items():
                if data is None:
                    snapshot.pop(path, None)
                else:
                    snapshot[path] = Blob(data, lfs=lfs)
                    if lfs:
                        repo.lfs[snapshot[path].sha256] = snapshot[path]
            return self._append_commit(repo, snapshot, message).sha

    # ---------------------------------------------------------------- state
    def _get(self, repo_type: str, repo_id: str) -> Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id!r}") from None

    def _create(self, rtype: str, rid: str, private: bool, sdk: str | None) -> Repo:
        if rtype not in PREFIX:
            raise HubError(400, f"Invalid repo type {rtype!r}")
        if rid.count("/") != 1 or not all(NAME_RE.match(part) for part in rid.split("/")):
            raise HubError(400, f"Invalid repo name {rid!r}: use letters, digits, '-', '_', '.', no '--' or '..', "
                                "not starting or ending with '-' or '.', max 96 characters")
        if (rtype, rid) in self._repos:
            raise HubError(409, f"You already created this {rtype} repo", url=f"{self.url}/{PREFIX[rtype]}{rid}")
        if rtype == "space" and not sdk:
            raise HubError(400, "A space needs an sdk")
        repo = self._repos[(rtype, rid)] = Repo(rtype, rid, private, sdk if rtype == "space" else None, _now())
        self._append_commit(repo, {".gitattributes": Blob(GITATTRIBUTES)}, "initial commit")
        return repo

    def _append_commit(self, repo: Repo, files: dict[str, Blob], title: str) -> Commit:
        self._counter += 1
        parent = repo.commits[-1].sha if repo.commits else ""
        seed = f"{repo.type}/{repo.id}\n{parent}\n{self._counter}\n{title}\n" + "".join(
            f"{p}\0{b.oid}\n" for p, b in sorted(files.items()))
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), title, _now(), files, repo.private)
        repo.commits.append(commit)
        return commit

    def _repo(self, rtype: str, rid: str, authed: bool) -> Repo:
        repo = self._repos.get((rtype, rid))
        if repo is None or (repo.private and not authed):
            raise HubError(404 if authed else 401, "Repository not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo: Repo, rev: str) -> Commit:
        if rev == "main":
            return repo.commits[-1]
        if re.fullmatch(r"[0-9a-f]{7,40}", rev):
            found = [c for c in repo.commits if c.sha.startswith(rev)]
            if len(found) == 1:
                return found[0]
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def _auth(self, headers) -> bool:
        value = headers.get("Authorization")
        if not value:
            return False
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.token.encode()):
            raise HubError(401, "Invalid credentials in Authorization header")
        return True

    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            for rule in self._faults:
                if rule[0] in path:
                    rule[2] -= 1
                    if rule[2] <= 0:
                        self._faults.remove(rule)
                    return rule[1]
        return None

    # ---------------------------------------------------------------- routing
    def _dispatch(self, method: str, path: str, query: dict, headers, body: bytes) -> Response:
        with self._lock:
            try:
                return self._route(method, path, query, headers, body)
            except HubError as e:
                extra = {"X-Error-Message": e.message.encode("ascii", "replace").decode()}
                if e.code:
                    extra["X-Error-Code"] = e.code
                extra.update(e.headers)
                status, hdrs, data = _json({"error": e.message, **e.extra}, e.status)
                return status, {**hdrs, **extra}, data

    def _route(self, method: str, path: str, query: dict, headers, body: bytes) -> Response:
        if (m := LFS_RE.match(path)) and method == "PUT":  # pre-signed: no token
            return self._lfs_put(self._repo(m[1], f"{m[2]}/{m[3]}", True), m[4], query, body)
        authed = self._auth(headers)
        if path == "/api/whoami-v2" and method == "GET":
            self._need(authed)
            return _json({"type": "user", "id": "0" * 24, "name": self.user, "fullname": "Test User",
                          "email": f"{self.user}@example.com", "emailVerified": True, "isPro": False,
                          "orgs": [{"type": "org", "name": o, "fullname": o, "roleInOrg": "admin"} for o in self.orgs],
                          "auth": {"type": "access_token",
                                   "accessToken": {"displayName": "test", "role": "write"}}})
        if (path, method) in (("/api/repos/create", "POST"), ("/api/repos/delete", "DELETE")):
            self._need(authed)
            payload = self._load_json(body)
            rtype = payload.get("type") or "model"
            rid = f"{payload.get('organization') or self.user}/{payload.get('name', '')}"
            if path.endswith("delete"):
                self._repo(rtype, rid, True)
                del self._repos[(rtype, rid)]
                return _json({})
            private = payload.get("visibility", "public") != "public" or bool(payload.get("private"))
            self._create(rtype, rid, private, payload.get("sdk"))
            return _json({"url": f"{self.url}/{PREFIX[rtype]}{rid}", "name": rid, "id": rid})
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(self._load_json(body).get("content", ""))
        if m := API_RE.match(path):
            rtype, rid = TYPES[m[1]], f"{unquote(m[2])}/{unquote(m[3])}"
            action, rev, rest = m[4], unquote(m[5] or "main"), unquote(m[6] or "")
            if action in ("xet-write-token", "xet-read-token"):
                raise HubError(501, "Xet storage is not supported by this test hub: set HF_HUB_DISABLE_XET=1")
            if action in ("preupload", "commit", "variables", "hardware", "settings"):
                self._need(authed)
            repo = self._repo(rtype, rid, authed)
            if action == "settings" and method == "PUT":
                return self._settings(repo, self._load_json(body))
            if action in ("variables", "hardware", "runtime"):
                return self._space_settings(repo, action, method, body)
            if action in (None, "revision") and method == "GET":
                return self._info(repo, self._commit_at(repo, rev), query)
            if action == "refs" and method == "GET":
                head = {"name": "main", "ref": "refs/heads/main", "targetCommit": repo.commits[-1].sha}
                return _json({"branches": [head], "tags": [], "converts": []})
            if action == "tree" and method == "GET":
                return self._tree(repo, self._commit_at(repo, rev), rest, query)
            if action == "paths-info" and method == "POST":
                return self._paths_info(repo, self._commit_at(repo, rev), headers, body)
            if action == "preupload" and method == "POST":
                return self._preupload(repo, self._commit_at(repo, rev), self._load_json(body))
            if action == "commit" and method == "POST":
                return self._commit(repo, rev, query, headers, body)
        if (m := BATCH_RE.match(path)) and method == "POST":
            self._need(authed)
            repo = self._repo(TYPES.get(m[1] or "models"), f"{unquote(m[2])}/{unquote(m[3])}", authed)
            return self._lfs_batch(repo, self._load_json(body))
        if (m := LFS_RE.match(path)) and m[5] and method == "POST":
            self._need(authed)
            repo = self._repo(m[1], f"{m[2]}/{m[3]}", authed)
            blob = repo.lfs.get(m[4])
            if blob is None or self._load_json(body).get("size", blob.size) != blob.size:
                raise HubError(404, "LFS object not found")
            return _json({})
        if (m := RESOLVE_RE.match(path)) and method in ("GET", "HEAD"):
            repo = self._repo(TYPES[m[1] or "models"], f"{unquote(m[2])}/{unquote(m[3])}", authed)
            return self._resolve(repo, self._commit_at(repo, unquote(m[4])), unquote(m[5]), headers)
        raise HubError(404, f"Not found: {method} {path}")

    @staticmethod
    def _need(authed: bool) -> None:
        if not authed:
            raise HubError(401, "You must be authenticated (Authorization: Bearer <token>) to do this")

    @staticmethod
    def _load_json(body: bytes) -> dict:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise HubError(400, "Invalid JSON body") from None
        if not isinstance(data, dict):
            raise HubError(400, "JSON body must be an object")
        return data

    # ---------------------------------------------------------------- endpoints
    @staticmethod
    def _front_matter(text: str):
        """The parsed YAML header of a README (``None`` if absent); raises ValueError if it is not a mapping."""
        match = YAML_RE.search(text)
        if not match:
            return None
        try:
            import yaml

            data = yaml.safe_load(match.group(2))
        except ImportError:  # tiny fallback: "key: value" lines
            data = dict(line.split(":", 1) for line in match.group(2).splitlines() if ":" in line)
            data = {k.strip(): v.strip() for k, v in data.items()}
        except Exception as e:
            raise ValueError(f"Invalid YAML in README front matter: {e}") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValueError("README front matter must be a YAML mapping")
        return data

    def _validate_yaml(self, content: str) -> Response:
        try:
            self._front_matter(content)
        except ValueError as e:
            return _json({"error": str(e), "errors": [{"message": str(e)}]}, 400)
        return _json({})

    @staticmethod
    def _settings(repo: Repo, payload: dict) -> Response:
        visibility = payload.get("visibility")
        if visibility is None and payload.get("private") is not None:
            visibility = "private" if payload["private"] else "public"
        if visibility not in (None, "public", "private", "protected"):
            raise HubError(400, f"Invalid visibility {visibility!r}")
        if visibility == "protected" and repo.type != "space":
            raise HubError(400, "Only Spaces can be 'protected'")
        if visibility is not None:
            repo.private = visibility != "public"
        return _json({"private": repo.private, "gated": False})

    def _info(self, repo: Repo, commit: Commit, query: dict) -> Response:
        readme = commit.files.get("README.md")
        try:
            card = self._front_matter(readme.data.decode("utf-8", "replace")) if readme else None
        except ValueError:
            card = None
        siblings = []
        for path, blob in sorted(commit.files.items()):
            entry: dict = {"rfilename": path}
            if _truthy(query, "blobs"):
                entry.update(size=blob.size, blobId=blob.oid)
                if blob.lfs:
                    entry["lfs"] = {"size": blob.size, "sha256": blob.sha256, "pointerSize": len(blob.pointer)}
            siblings.append(entry)
        tags = list(card.get("tags") or []) if card and isinstance(card.get("tags"), list) else []
        info = {"_id": hashlib.sha1(f"{repo.type}/{repo.id}".encode()).hexdigest()[:24], "id": repo.id,
                "author": repo.id.split("/")[0], "sha": commit.sha, "private": repo.private, "gated": False,
                "disabled": False, "lastModified": commit.date, "createdAt": repo.created, "likes": 0, "tags": tags,
                "siblings": siblings, "usedStorage": sum(b.size for b in commit.files.values())}
        if card is not None:
            info["cardData"] = card
        if repo.type == "model":
            info.update(downloads=0, library_name=(card or {}).get("library_name"),
                        pipeline_tag=(card or {}).get("pipeline_tag"))
        elif repo.type == "dataset":
            info["downloads"] = 0
        else:
            info.update(sdk=repo.sdk, subdomain=repo.id.replace("/", "-").lower())
        return _json(info)

    def _space_settings(self, repo: Repo, action: str, method: str, body: bytes) -> Response:
        """A Space's variables, hardware request and runtime (see the module docstring)."""
        if repo.type != "space":
            raise HubError(404, f"Not found: {method} {action} of a {repo.type} repo")
        if action == "variables" and method in ("GET", "POST", "DELETE"):
            if method != "GET":
                payload = self._load_json(body)
                key = payload.get("key")
                if not isinstance(key, str) or not key:
                    raise HubError(400, "A variable needs a key")
                if method == "DELETE":
                    repo.variables.pop(key, None)
                else:
                    if not isinstance(payload.get("value"), str):
                        raise HubError(400, "A variable needs a string value")
                    entry = {"value": payload["value"], "updatedAt": _now()}
                    if payload.get("description") is not None:
                        entry["description"] = payload["description"]
                    repo.variables[key] = entry
            return _json(repo.variables)
        if action == "hardware" and method == "POST":
            payload = self._load_json(body)
            if payload.get("flavor") not in SPACE_HARDWARE:
                raise HubError(400, f"Invalid hardware flavor {payload.get('flavor')!r}")
            repo.hardware = payload["flavor"]
            if payload.get("sleepTimeSeconds") is not None:
                repo.sleep_time = payload["sleepTimeSeconds"]
        elif not (action == "runtime" and method == "GET"):
            raise HubError(404, f"Not found: {method} {action}")
        stage = "BUILDING" if "app.py" in repo.commits[-1].files else "NO_APP_FILE"
        return _json({"stage": stage, "hardware": {"current": repo.hardware, "requested": repo.hardware},
                      "gcTimeout": repo.sleep_time, "storage": None, "devMode": False})

    def _last_commit(self, repo: Repo, commit: Commit, path: str, is_dir: bool) -> dict:
        def state(c: Commit):
            if not is_dir:
                return c.files[path].oid if path in c.files else None
            return tuple((p, b.oid) for p, b in sorted(c.files.items()) if p.startswith(path + "/"))

        index = repo.commits.index(commit)
        current = state(commit)
        while index > 0 and state(repo.commits[index - 1]) == current:
            index -= 1
        found = repo.commits[index]
        return {"id": found.sha, "title": found.title, "date": found.date}

    def _entry(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict:
        blob = commit.files.get(path)
        if blob is None:  # a directory
            under = "".join(f"{p}\0{b.oid}\n" for p, b in sorted(commit.files.items()) if p.startswith(path + "/"))
            entry: dict = {"type": "directory", "oid": hashlib.sha1(under.encode()).hexdigest(), "size": 0,
                           "path": path}
        else:
            entry = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
        if expand:
            entry["lastCommit"] = self._last_commit(repo, commit, path, blob is None)
        return entry

    def _tree(self, repo: Repo, commit: Commit, path: str, query: dict) -> Response:
        path = path.strip("/")
        prefix = f"{path}/" if path else ""
        recursive = _truthy(query, "recursive")
        dirs, files = set(), []
        for p in sorted(commit.files):
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            if len(parts) == 1 or recursive:
                files.append(p)
            for i in range(1, len(parts) if recursive else min(2, len(parts))):
                dirs.add(prefix + "/".join(parts[:i]))
        if path and not files and not dirs:
            raise HubError(404, f"Path {path} not found in tree", "EntryNotFound")
        expand = _truthy(query, "expand")
        return _json([self._entry(repo, commit, p, expand) for p in sorted(dirs) + files])

    def _paths_info(self, repo: Repo, commit: Commit, headers, body: bytes) -> Response:
        if "json" in (headers.get("Content-Type") or ""):
            payload = self._load_json(body)
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:
            form = parse_qs(body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), form.get("expand", ["False"])[-1].lower() == "true"
        out = []
        for path in ([paths] if isinstance(paths, str) else paths):
            path = path.strip("/")
            if path in commit.files or any(p.startswith(path + "/") for p in commit.files):
                out.append(self._entry(repo, commit, path, expand))
        return _json(out)

    def _mode_for(self, path: str, size: int, sample: bytes) -> str:
        if self.upload_mode in ("lfs", "regular"):
            return self.upload_mode
        ext = os.path.splitext(path)[1].lower()
        return "lfs" if size > LFS_SIZE_THRESHOLD or ext in LFS_EXTENSIONS or b"\0" in sample else "regular"

    def _preupload(self, repo: Repo, commit: Commit, payload: dict) -> Response:
        out = []
        for f in payload.get("files", []):
            path = f.get("path", "")
            entry = {"path": path, "shouldIgnore": False,
                     "uploadMode": self._mode_for(path, int(f.get("size", 0)), base64.b64decode(f.get("sample", "")))}
            if (blob := commit.files.get(path)) is not None:
                entry["oid"] = blob.sha256 if blob.lfs else blob.oid
            out.append(entry)
        return _json({"files": out, "commitOid": commit.sha})

    def _lfs_batch(self, repo: Repo, payload: dict) -> Response:
        if payload.get("operation", "upload") != "upload":
            raise HubError(400, "Only the LFS 'upload' operation is supported")
        base = f"{self.url}/_lfs/{repo.type}/{repo.id}"
        objects = []
        for obj in payload.get("objects", []):
            oid, size = str(obj.get("oid", "")), obj.get("size", 0)
            entry: dict = {"oid": oid, "size": size}
            if not re.fullmatch(r"[0-9a-f]{64}", oid):
                entry["error"] = {"code": 422, "message": "oid must be a sha256 hex digest"}
            elif oid not in repo.lfs:
                entry["authenticated"] = True
                entry["actions"] = {"upload": {"href": f"{base}/{oid}?sig={self._sign(repo, oid)}"},
                                    "verify": {"href": f"{base}/{oid}/verify", "header": {}}}
            objects.append(entry)
        return _json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                     content_type="application/vnd.git-lfs+json")

    def _sign(self, repo: Repo, oid: str) -> str:
        return hmac.new(self._secret, f"{repo.type}/{repo.id}/{oid}".encode(), "sha256").hexdigest()

    def _lfs_put(self, repo: Repo, oid: str, query: dict, body: bytes) -> Response:
        if not hmac.compare_digest(query.get("sig", [""])[-1], self._sign(repo, oid)):
            raise HubError(403, "Invalid or missing upload signature")
        blob = Blob(body, lfs=True)
        if blob.sha256 != oid:
            raise HubError(400, f"sha256 mismatch: expected {oid}, got {blob.sha256}")
        repo.lfs[oid] = blob
        return 200, {"ETag": f'"{hashlib.md5(body).hexdigest()}"'}, b""

    def _commit(self, repo: Repo, rev: str, query: dict, headers, body: bytes) -> Response:
        if _truthy(query, "create_pr"):
            raise HubError(400, "Pull requests are not supported by this test hub")
        if rev != "main":
            self._commit_at(repo, rev)  # 404 RevisionNotFound for unknown revisions
            raise HubError(400, f"Can only commit to the branch 'main', not {rev!r}")
        if (headers.get("Content-Encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        try:
            items = [json.loads(line) for line in body.splitlines() if line.strip()]
        except ValueError:
            raise HubError(400, "Invalid NDJSON body") from None
        if not items or items[0].get("key") != "header":
            raise HubError(400, "The first NDJSON line must be the commit header")
        head, parent = items[0].get("value", {}), repo.commits[-1]
        if head.get("parentCommit") and head["parentCommit"] != parent.sha:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(parent.files)
        for item in items[1:]:
            key, value = item.get("key"), item.get("value", {})
            path = str(value.get("path", "")).lstrip("/")
            if not path or any(part in ("", ".", "..") for part in path.rstrip("/").split("/")):
                raise HubError(400, f"Invalid path {path!r}")
            if key == "file":
                content = value.get("content", "")
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                files[path] = Blob(data)
            elif key == "lfsFile":
                blob = repo.lfs.get(value.get("oid", ""))
                if blob is None:
                    raise HubError(400, f"LFS object {value.get('oid')} for {path} was not uploaded")
                if value.get("size") not in (None, blob.size):
                    raise HubError(400, f"LFS object size mismatch for {path}")
                files[path] = blob
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                gone = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                if not gone:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in gone:
                    del files[p]
            else:
                raise HubError(400, f"Unsupported commit operation {key!r}")
        commit = self._append_commit(repo, files, str(head.get("summary") or "Update"))
        return _json({"commitUrl": f"{self.url}/{PREFIX[repo.type]}{repo.id}/commit/{commit.sha}",
                      "commitOid": commit.sha, "commitMessage": commit.title, "pullRequestUrl": None})

    def _resolve(self, repo: Repo, commit: Commit, path: str, headers) -> Response:
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        etag = blob.sha256 if blob.lfs else blob.oid
        out = {"X-Repo-Commit": commit.sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
               "Content-Type": "application/octet-stream"}
        if blob.lfs:
            out.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size)})
        wanted = (headers.get("Range") or "").replace(" ", "")
        if not wanted:
            return 200, out, blob.data
        m = RANGE_RE.match(wanted)
        if not m or not (m[1] or m[2]):
            raise HubError(416, "Unsupported range", headers={"Content-Range": f"bytes */{blob.size}"})
        start, end = (int(m[1]), int(m[2] or blob.size - 1)) if m[1] else (max(0, blob.size - int(m[2])), blob.size - 1)
        end = min(end, blob.size - 1)
        if start > end:
            raise HubError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{blob.size}"})
        out["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
        return 206, out, blob.data[start:end + 1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - never log (headers hold the token)
        pass

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        split = urlsplit(self.path)
        with hub._lock:
            hub.requests.append((self.command, split.path))
        fault = hub._take_fault(split.path)
        if fault == "drop":
            self.close_connection = True
            return
        if fault:
            status, headers, data = _json({"error": f"Injected failure ({fault})"}, int(fault))
        else:
            try:
                status, headers, data = hub._dispatch(self.command, split.path, parse_qs(split.query),
                                                      self.headers, body)
            except Exception as e:  # a bug in the fake: answer 500, print the traceback (no headers in it)
                traceback.print_exc()
                status, headers, data = _json({"error": f"Internal error: {type(e).__name__}: {e}"}, 500)
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle


def run_client(hub: HubServer, code: str, env: dict | None = None, timeout: float = 120
               ) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python whose Hugging Face clients talk to ``hub``.

    The child gets HF_ENDPOINT=hub.url, HF_TOKEN=hub.token, online mode (HF_HUB_OFFLINE=0 and the datasets /
    evaluate / transformers equivalents), telemetry and progress bars off, HF_HUB_DISABLE_XET=1 (the fake has no
    Xet), HF_UPDATE_DOWNLOAD_COUNTS=0 (evaluate would ping S3), and a fresh HF_HOME temp dir (removed afterwards)
    unless ``env`` gives one. ``env`` overrides everything (a value of ``None`` removes the variable).
    Returns the CompletedProcess (text stdout/stderr); it does not raise on a non-zero exit.
    """
    child = {k: v for k, v in os.environ.items()
             if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "HF_EVALUATE_CACHE",
                          "HF_MODULES_CACHE", "TRANSFORMERS_CACHE", "HF_TOKEN_PATH", "HUGGING_FACE_HUB_TOKEN",
                          "HF_HUB_DISABLE_XET", "HF_XET_CACHE")}
    child.update({"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
                  "HF_EVALUATE_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
                  "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_XET": "1", "HF_UPDATE_DOWNLOAD_COUNTS": "0",
                  "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0", "PYTHONUNBUFFERED": "1"})
    for key, value in (env or {}).items():
        if value is None:
            child.pop(key, None)
        else:
            child[key] = value
    with tempfile.TemporaryDirectory(prefix="hub-client-") as home:
        child.setdefault("HF_HOME", home)
        return subprocess.run([sys.executable, "-c", code], env=child, capture_output=True, text=True,
                              timeout=timeout)


def main(argv: list[str] | None = None) -> None:
    """``python tests/hub_server.py --port P [--token T] [--upload-mode auto|regular|lfs]``: serve until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=os.environ.get("HUB_SERVER_TOKEN", "hf_test_token"),
                        help="bearer token for writes (default: $HUB_SERVER_TOKEN or hf_test_token)")
    parser.add_argument("--upload-mode", default="auto", choices=["auto", "regular", "lfs"])
    args = parser.parse_args(argv)
    with HubServer(token=args.token, host=args.host, port=args.port, upload_mode=args.upload_mode) as hub:
        print(f"Fake Hub at {hub.url} (HF_ENDPOINT={hub.url} HF_HUB_DISABLE_XET=1); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
