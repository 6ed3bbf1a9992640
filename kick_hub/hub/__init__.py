"""Hub actions: push a variant with its card (``push.py``), publish the task modules as Spaces (``tasks.py``),
keep results as a dataset (``results.py``); the card itself is built in ``card.py``.

The endpoint is huggingface_hub's (``HF_ENDPOINT``, read when huggingface_hub is imported) and the token comes from
its usual sources (``HF_TOKEN``, ``hf auth login``); neither is stored by kick-hub, and the token is scrubbed from
every error message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class HubError(RuntimeError):
    """A Hub action failed; the message says what is safe (local files, remote state) and how to retry."""


def check_repo_id(repo_id: str, field: str = "repo-id") -> str:
    """``ORG/NAME`` as the Hub accepts it, checked before any upload."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"{field}: must be ORG/NAME (one '/'), got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"{field}: {repo_id!r} is not a valid Hub repo id: letters, digits, '-', '_', '.' only, "
                         f"no '--' or '..', at most 96 characters ({e})") from None
    return repo_id


def check_org(org: str, field: str = "org") -> str:
    """An organisation or user name, validated as the first half of a repo id."""
    if not isinstance(org, str) or "/" in org or not org:
        raise ValueError(f"{field}: must be an organisation or user name without '/', got {org!r}")
    check_repo_id(f"{org}/x", field)
    return org


def token() -> str:
    """The token from huggingface_hub's usual sources, or a clear error before any work."""
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise HubError("token: no Hugging Face token found; set HF_TOKEN or run `hf auth login` (a write token is "
                       "needed to create repos and upload)")
    return found


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (a token) replaced by ``***``; unchanged when ``secret`` is
    empty or None."""
    return text.replace(secret, "***") if secret else text


def endpoint() -> str:
    """The Hub URL in use (``huggingface_hub.constants.ENDPOINT``: ``HF_ENDPOINT`` or https://huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


@contextlib.contextmanager
def hub_errors(action: str, safe: str, secret: str | None = None) -> Iterator[None]:
    """Turn any client or network failure inside the block into a ``HubError`` naming ``action``, what stayed
    ``safe`` and how to retry, with the token scrubbed from the message."""
    try:
        yield
    except (HubError, ValueError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - every transport / HTTP failure gets the same clear message
        detail = scrub(f"{type(e).__name__}: {e}".splitlines()[0][:300], secret)
        raise HubError(f"{action} failed at {endpoint()}: {detail}. {safe}") from None
