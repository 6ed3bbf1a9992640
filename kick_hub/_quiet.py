"""Third-party start-up messages that are not the user's business, dropped for the ``kick`` command.

transformers imports torchao whenever it is installed (``transformers.quantizers`` imports its torchao quantizer at
load time), so without these filters every command that loads a model prints, before anything of ours:

- ``torchao``: ``Failed to load .../torchao/_C_mxfp8...so`` / ``_C_cutlass_90a...so``: torchao tries its optional
  prebuilt GPU kernels (MX-FP8, CUTLASS for sm90a) on every import; where they cannot load, those kernels are absent
  and nothing else changes (kick's weight-only int8 runs without them);
- ``torch.utils._pytree``: ``<enum 'KernelPreference'> is an Enum subclass and is now natively supported by
  torch.compile ...``: torchao registering its enums the way torch now deprecates.

Each is dropped by a ``logging.Filter`` on that exact logger matching that exact message; every other record of
those loggers, every other logger and every Python warning (kick's own ``ContextWarning`` included) are untouched.
Installed by ``kick_hub.cli.main``; importing the library installs nothing.
"""

from __future__ import annotations

import logging
import re

# (logger name, message pattern) of each dropped message.
NOISE = (
    ("torchao", re.compile(r"^Failed to load \S*torchao[/\\]_C\w*[^/\\]*\.so\b")),
    ("torch.utils._pytree", re.compile(r"^<enum '\w+'> is an Enum subclass and is now natively supported by "
                                       r"torch\.compile as an opaque value type")),
)


class DropMessage(logging.Filter):
    """Drops the records whose message matches ``pattern``."""

    def __init__(self, pattern: re.Pattern) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop the record) when its formatted message matches ``pattern``; True otherwise."""
        return not self.pattern.search(record.getMessage())


def install() -> None:
    """Add the ``NOISE`` filters (once; safe to call again)."""
    for name, pattern in NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessage) and f.pattern is pattern for f in logger.filters):
            logger.addFilter(DropMessage(pattern))
