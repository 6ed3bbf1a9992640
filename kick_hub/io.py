"""What kick-hub writes: atomically (a temp path beside the target, renamed into place), as strict JSON, and
without the paths of the machine it ran on.

Strict JSON: ``json`` would write a non-finite float (a broken model's perplexity) as the bare token ``Infinity`` or
``NaN``, which is not JSON and which strict parsers (browsers, ``jq``, pyarrow) refuse. ``dumps`` writes every
non-finite float as ``null`` and records what it was under the top-level key ``non_finite``: a map from the value's
JSON Pointer (RFC 6901) to ``"inf"``, ``"-inf"`` or ``"nan"``; ``loads`` puts the values back. Numeric fields stay
numbers or null, so lm-evaluation-harness readers and ``datasets`` JSON loading keep working.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plain_mode(path: str | Path, directory: bool = False) -> None:
    """Give a temp file or dir made by ``tempfile`` (mode 0600 / 0700, private) the mode ``open`` / ``mkdir`` would
    have given it under the process's umask (0644 / 0755 under the usual 022), so what kick writes in a shared run
    dir or task folder is readable by the others who share it."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


class NoSpaceError(ValueError):
    """A write failed because its filesystem is full (ENOSPC or quota); the message says where, how much is free
    and that the partial files were removed. A ValueError, so ``kick`` prints it as one ``kick: error:`` line and
    exits 2."""


# what libraries that do their own I/O say when the disk is full: safetensors' Rust error (os error 28 = ENOSPC,
# 122 = EDQUOT), SQLite
NO_SPACE_TEXT = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122",
                 "database or disk is full")


def no_space(error: BaseException | None) -> bool:
    """Whether ``error`` or one in its ``__cause__`` / ``__context__`` chain says the disk is full: an OSError
    with errno ENOSPC or EDQUOT, or a library error whose text says so (``NO_SPACE_TEXT``)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(error).lower() for text in NO_SPACE_TEXT):
            return True
        error = error.__cause__ or error.__context__
    return False


def format_size(n: float) -> str:
    """A byte count in binary units with 3 significant digits: ``512 B``, ``3.20 KiB``, ``14.7 MiB``,
    ``1.50 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            break
        n /= 1024
    if unit == "B":
        return f"{n:.0f} B"
    return f"{n:.0f} {unit}" if abs(n) >= 100 else f"{n:.1f} {unit}" if abs(n) >= 10 else f"{n:.2f} {unit}"


def mount_point(path: str | Path) -> Path:
    """The mount point of the filesystem holding ``path`` (its nearest existing ancestor's)."""
    path = Path(path).resolve()
    path = next(p for p in [path, *path.parents] if p.exists())
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def no_space_message(path: str | Path | None, error: BaseException | None = None) -> str:
    """The one line for a write to ``path`` that ran out of space: where, how much is free now, that nothing was
    left behind. Without ``path``: the failing file of an OSError in ``error``'s chain, else the error's text."""
    if path is None:
        cause = error
        while cause is not None and not (isinstance(cause, OSError) and cause.filename):
            cause = cause.__cause__ or cause.__context__
        path = cause.filename if cause is not None else None
    if path is None:
        detail = f"{type(error).__name__}: {error}".splitlines()[0][:200] if error is not None else ""
        return f"no space left on device ({detail}); free some space and run again"
    where = mount_point(path)
    return (f"no space left on device writing {path}: {format_size(shutil.disk_usage(where).free)} free on "
            f"{where}; the partial files were removed, nothing was written; free some space or write elsewhere")


@contextmanager
def atomic_dir(output: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp dir beside ``output``; on success it replaces ``output``, on any error it is removed. The dir
    gets the umask's usual mode (``plain_mode``). A write that ran out of space (``no_space``) is raised as
    ``NoSpaceError``."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{output.name}-", dir=output.parent))
    plain_mode(tmp, directory=True)
    try:
        yield tmp
        for path in tmp.rglob("*"):  # what a library wrote through tempfile (transformers' safetensors shards)
            if not path.is_symlink() and stat.S_IMODE(path.lstat().st_mode) & 0o077 == 0:
                plain_mode(path, directory=path.is_dir())
        if output.exists():
            if not overwrite:
                raise ValueError(f"output: {output} exists; pass --overwrite to replace it")
            old = output.with_name(f".old-{output.name}-{time.time_ns()}")
            output.rename(old)
            tmp.rename(output)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:  # a file or link the dir replaces: rmtree would leave it behind as .old-*
                old.unlink(missing_ok=True)
        else:
            tmp.rename(output)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception) and not isinstance(e, NoSpaceError) and no_space(e):
            raise NoSpaceError(no_space_message(output)) from e
        raise


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp file path beside ``path`` (same folder, hidden name) for a writer that takes a path (e.g.
    matplotlib's ``savefig``, with an explicit ``format``); on success it replaces ``path`` (``os.replace``), on any
    error it is removed, and a full disk is raised as ``NoSpaceError``. The file gets the umask's usual mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    plain_mode(tmp)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, Exception) and not isinstance(e, NoSpaceError) and no_space(e):
            raise NoSpaceError(no_space_message(path)) from e
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file through a temp file in the same folder and ``os.replace``; the file gets the umask's usual
    mode (``plain_mode``). A write that ran out of space is raised as ``NoSpaceError`` (the temp file removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    plain_mode(tmp)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, Exception) and not isinstance(e, NoSpaceError) and no_space(e):
            raise NoSpaceError(no_space_message(path)) from e
        raise
    return path


NON_FINITE_KEY = "non_finite"  # top-level key of a JSON document: JSON Pointer -> "inf" / "-inf" / "nan"


def non_finite_token(value: float) -> str:
    """``"inf"``, ``"-inf"`` or ``"nan"`` for a non-finite float."""
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _pointer_part(key) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def strict(obj, pointer: str = "") -> tuple[object, dict[str, str]]:
    """A copy of ``obj`` with every non-finite float replaced by ``None``, and ``{JSON Pointer: token}`` for each
    replaced value (tuples become lists, as ``json`` writes them)."""
    notes: dict[str, str] = {}

    def walk(value, at: str):
        if isinstance(value, float) and not math.isfinite(value):
            notes[at] = non_finite_token(value)
            return None
        if isinstance(value, dict):
            return {k: walk(v, f"{at}/{_pointer_part(k)}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{at}/{i}") for i, v in enumerate(value)]
        return value

    return walk(obj, pointer), notes


def dumps(obj, indent: int | None = None) -> str:
    """Strict JSON text of ``obj`` (no ``Infinity`` / ``NaN``): non-finite floats become ``null`` and are listed
    under the top-level ``non_finite`` key, so a top-level object holding one must be a dict."""
    clean, notes = strict(obj)
    if notes:
        if not isinstance(clean, dict):
            raise TypeError(f"JSON: non-finite values {notes} need a dict at the top level to record them")
        clean = {k: v for k, v in clean.items() if k != NON_FINITE_KEY}
        clean[NON_FINITE_KEY] = notes
    return json.dumps(clean, indent=indent, ensure_ascii=False, allow_nan=False)


def loads(text: str | bytes):
    """Parse JSON written by ``dumps`` and put its non-finite values back (``non_finite`` is removed)."""
    obj = json.loads(text)
    if not isinstance(obj, dict) or not isinstance(obj.get(NON_FINITE_KEY), dict):
        return obj
    notes = obj.pop(NON_FINITE_KEY)
    for pointer, token in notes.items():
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        try:
            parent = obj
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            last = parts[-1]
            if isinstance(parent, list):
                parent[int(last)] = float(token)
            else:
                parent[last] = float(token)
        except (KeyError, IndexError, ValueError, TypeError):
            continue  # a pointer that no longer matches the document is ignored
    return obj


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as strict, indented JSON (``dumps``), atomically."""
    return atomic_write_text(path, dumps(obj, indent=2) + "\n")


def format_number(value, spec: str = ".4g", infinity: str = "∞") -> str:
    """``value`` formatted with ``spec``; a non-finite float as ``∞`` / ``-∞`` (or ``infinity``) or ``NaN``, and
    ``None`` as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else (infinity if value > 0 else f"-{infinity}")
    return format(value, spec)


def public_name(name: str | None) -> str | None:
    """How a model or data source given on the command line appears in anything published: a local path (absolute,
    relative, ``~``, or an existing file or directory) becomes its last component; an alias (``world``), a Hub id
    (``ORG/NAME``), a GGUF file in a Hub repo (``ORG/NAME[@REV]/FILE.gguf``, ``backends.llamacpp.hub_gguf``) or a
    source name (``c4``) stays as it is."""
    if not name:
        return name
    text = str(name)
    from kick_hub.backends.llamacpp import hub_gguf

    if hub_gguf(text) is not None:
        return text
    path = Path(text).expanduser()
    local = (path.is_absolute() or text.startswith(("~", ".")) or text.count("/") > 1 or "\\" in text
             or path.exists())
    if not local:
        return text
    return (path.resolve().name if text.startswith(".") else path.name) or text.strip("/\\") or "model"
