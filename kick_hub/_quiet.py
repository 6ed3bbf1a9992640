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
    # calibration tokenizes its whole text once, then cuts it into rows that fit the context
    ("transformers.tokenization_utils_base", re.compile(r"^Token indices sequence length is longer than the "
                                                        r"specified maximum sequence length")),
)
# transformers' own bars for reading / writing a checkpoint (kick prints what it loaded and wrote)
QUIET_BARS = ("Loading weights", "Writing model shards")


class DropMessage(logging.Filter):
    """Drops the records whose message matches ``pattern``."""

    def __init__(self, pattern: re.Pattern) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop the record) when its formatted message matches ``pattern``; True otherwise."""
        return not self.pattern.search(record.getMessage())


def _bar_hook(factory, args, kwargs):
    """transformers' tqdm hook: no bar for the ``QUIET_BARS``, every other bar as asked."""
    if kwargs.get("desc") in QUIET_BARS:
        kwargs = {**kwargs, "disable": True}
    return factory(*args, **kwargs)


def install() -> None:
    """Add the ``NOISE`` filters and the ``QUIET_BARS`` hook (once; safe to call again). The hook is set when
    transformers is imported (``kick --help`` does not import it)."""
    for name, pattern in NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessage) and f.pattern is pattern for f in logger.filters):
            logger.addFilter(DropMessage(pattern))
    import sys

    if "transformers" in sys.modules:
        _set_bar_hook()
    else:
        _on_import("transformers", _set_bar_hook)


def _set_bar_hook() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_tqdm_hook(_bar_hook)


def _on_import(module: str, then) -> None:
    """Call ``then()`` right after ``module`` is first imported (a one-shot meta path finder)."""
    import importlib.abc
    import sys

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != module:
                return None
            sys.meta_path.remove(self)
            import importlib.util

            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def run(mod):
                exec_module(mod)
                then()
            spec.loader.exec_module = run
            return spec

    if not any(type(f).__name__ == "Finder" and f.__module__ == __name__ for f in sys.meta_path):
        sys.meta_path.insert(0, Finder())
