"""What ``kick``'s ``main`` says for an error the up-front checks cannot catch: a write to a read-only
filesystem, as one line."""

from __future__ import annotations

from pathlib import Path


def _read_only_error(error: BaseException) -> str | None:
    """The one line for an OSError in ``error``'s chain that is a write to a read-only filesystem (EROFS): the
    path, and where the kick-hub cache is set when the path is in it; None for any other error."""
    import errno

    from kick_hub.models import cache_root

    while error is not None and not (isinstance(error, OSError) and error.errno == errno.EROFS):
        error = error.__cause__ or error.__context__
    if error is None:
        return None
    path = error.filename or "a file"
    hint = ""
    if error.filename and Path(cache_root()).resolve() in [Path(path).resolve(), *Path(path).resolve().parents]:
        hint = "; it is in kick-hub's cache: set KICK_HUB_CACHE to a writable folder"
    return f"cannot write {path}: read-only file system{hint}"
