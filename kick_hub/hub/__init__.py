"""Hub actions: push a variant with its card (``push.py``), publish the task modules as Spaces (``tasks.py``),
keep results as a dataset (``results.py``); the card itself is built in ``card.py``.

The endpoint is huggingface_hub's (``HF_ENDPOINT``, read when huggingface_hub is imported) and the token comes from
its usual sources (``HF_TOKEN``, ``hf auth login``); neither is stored by kick-hub, and the token is scrubbed from
every error message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huggingface_hub import HfApi


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


def check_online() -> None:
    """Refuse, before any work, a Hub write while huggingface_hub is in offline mode, naming the variables that
    set it: huggingface_hub treats ``TRANSFORMERS_OFFLINE`` like ``HF_HUB_OFFLINE``, so its own hint ("unset
    HF_HUB_OFFLINE") is wrong when only the former is set. Raises HubError."""
    import os

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        names = [v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(v, "").strip().upper() in
                 ("1", "ON", "YES", "TRUE")] or ["HF_HUB_OFFLINE"]
        raise HubError(f"hub: offline mode is on ({', '.join(f'{n}=' + os.environ.get(n, '1') for n in names)}): "
                       f"huggingface_hub treats HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE alike; unset "
                       f"{' and '.join(names)} for this command to reach {endpoint()}")


def token() -> str:
    """The token from huggingface_hub's usual sources, or a clear error before any work (offline mode included:
    ``check_online``)."""
    from huggingface_hub import get_token

    check_online()

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


def ensure_repo(api: HfApi, repo_id: str, repo_type: str, private: bool = False, secret: str | None = None,
                **create: object) -> None:
    """Create ``repo_id`` (``HfApi.create_repo``, ``exist_ok``; ``create`` adds e.g. ``space_sdk``) and, when
    ``private``, make sure it is private before anything is uploaded: ``create_repo`` leaves an existing repo's
    visibility as it is, so a public one is switched with ``HfApi.update_repo_settings(private=True)`` and read
    back. Every command that creates repos (push, push-results, publish-tasks, publish-space, ``bench --push``)
    calls it before its first upload.

    Raises ValueError naming ``private`` (``kick`` exits 2; nothing uploaded) when the repo stays public: the token
    may not change its settings, or the Hub refused; the token is scrubbed from the message. Without ``private`` an
    existing repo keeps its visibility (a private repo is never made public)."""
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **create)
    if not private or api.repo_info(repo_id, repo_type=repo_type).private:
        return
    try:
        api.update_repo_settings(repo_id, private=True, repo_type=repo_type)
        made_private = bool(api.repo_info(repo_id, repo_type=repo_type).private)
        detail = "the Hub still reports it public"
    except Exception as e:  # noqa: BLE001 - any refusal or transport failure: stop before uploading
        made_private, detail = False, scrub(f"{type(e).__name__}: {e}".splitlines()[0][:300], secret)
    if not made_private:
        raise ValueError(f"private: the {repo_type} repo {repo_id} exists as a public repo and could not be made "
                         f"private ({detail}); nothing was uploaded. Make it private on the Hub (Settings) with a "
                         f"token allowed to, or run without --private to publish it publicly")


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
