"""The Space's checks of its inputs, in kick's words (the API can be called without the UI's slider, dropdowns
and number box), and of the run dir ``kick space`` is given."""

from __future__ import annotations

import math
from pathlib import Path

from kick_hub.space.limits import MAX_INPUT_CHARS, MAX_NEW_TOKENS


def check_whole(field: str, value, low: int, high: int) -> int:
    """``value`` as an int when it is a whole number in [low, high] (an integral float such as 12.0 counts, as
    gradio's Number and Slider send them); otherwise a ValueError naming ``field`` and the allowed range."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and value == int(value) and low <= value <= high)
    if not ok:
        raise ValueError(f"{field}: must be between {low} and {high} (a whole number), got {value!r}")
    return int(value)


def check_choice(field: str, value, allowed) -> str:
    """``value`` when it is one of ``allowed``; otherwise a ValueError naming ``field`` and the allowed values."""
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{field}: must be one of {allowed}, got {value!r}")
    return value


def check_flag(field: str, value) -> bool:
    """``value`` when it is a real bool (an API caller can send anything); raises ValueError naming ``field``
    otherwise (``1``, ``"true"`` and None included)."""
    if not isinstance(value, bool):
        raise ValueError(f"{field}: must be true or false, got {value!r}")
    return value


def check_prompt(prompt: str, max_new_tokens: int) -> int:
    """The Space's own limits on a comparison's text input, whatever the UI allows: a non-empty prompt of at most
    ``MAX_INPUT_CHARS`` characters and 1..``MAX_NEW_TOKENS`` new tokens (returned as an int)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: type a prompt or pick an example")
    if len(prompt) > MAX_INPUT_CHARS:
        raise ValueError(f"prompt: {len(prompt)} characters is over the limit of {MAX_INPUT_CHARS}; shorten it")
    return check_whole("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS)


def check_run_dir(run_dir: str | Path | None) -> None:
    """Check that ``run_dir`` (when given) holds a ``kick bench`` results store (``bench.store.FILENAME``); returns
    None, raises ValueError otherwise."""
    from kick_hub.bench.store import FILENAME

    if run_dir and not (Path(run_dir) / FILENAME).exists():
        raise ValueError(f"run-dir: {run_dir} holds no {FILENAME} (run `kick bench --run-dir "
                         f"{run_dir}` first)")
