"""Third-party start-up messages that are not the user's business, dropped for the ``kick`` command.

transformers imports torchao whenever it is installed (``transformers.quantizers`` imports its torchao quantizer at
load time), so without these filters every command that loads a model prints, before anything of ours:

- ``torchao``: ``Failed to load .../torchao/_C_mxfp8...so`` / ``_C_cutlass_90a...so``: torchao tries its optional
  prebuilt GPU kernels (MX-FP8, CUTLASS for sm90a) on every import; where they cannot load, those kernels are absent
  and nothing else changes (kick's weight-only int8 runs without them);
- ``torch.utils._pytree``: ``<enum 'KernelPreference'> is an Enum subclass and is now natively supported by
  torch.compile ...``: torchao registering its enums the way torch now deprecates.

- ``bitsandbytes``: ``Failed to load CPU gemm_4bit_forward from kernels-community``: on AVX-512 BF16 CPUs it tries
  an optional kernel from the Hub, then uses its own;
- ``transformers``: ``Token indices sequence length is longer than the specified maximum``: calibration tokenizes
  its whole text once and then cuts rows that fit the context, so nothing too long ever reaches the model.

Each is dropped by a ``logging.Filter`` on that exact logger matching that exact message; every other record of
those loggers, every other logger and every Python warning (kick's own ``ContextWarning`` included) are untouched.
transformers' own "Loading weights" / "Writing model shards" bars are left out too (``QUIET_BARS``, through its
``set_tqdm_hook``): kick prints what it loaded and wrote. Installed by ``kick_hub.cli.main``; importing the library
installs nothing.
"""

from __future__ import annotations

import logging
import re

# (logger name, message pattern) of each dropped message.
NOISE = (
    ("torchao", re.compile(r"^Failed to load \S*torchao[/\\]_C\w*[^/\\]*\.so\b")),
    ("torch.utils._pytree", re.compile(r"^<enum '\w+'> is an Enum subclass and is now natively supported by "
                                       r"torch\.compile as an opaque value type")),
    # bitsandbytes on AVX-512 BF16 CPUs tries to fetch an optional kernel from the Hub and falls back to its own
    ("bitsandbytes.backends.cpu.ops", re.compile(r"^Failed to load CPU gemm_4bit_forward from kernels-community")),
    # optimum's GPTQ saves a config with loss_type None; transformers then says it uses the default loss (no loss
    # is ever computed by kick)
    ("transformers.modeling_utils", re.compile(r"^`loss_type=None` was set in the config but it is unrecognized")),
    ("kernels._internals.hf_hub", re.compile(r"^Skipping publisher trust check for .* offline mode")),
    # calibration tokenizes its whole text once, then cuts it into rows that fit the context
    ("transformers.tokenization_utils_base", re.compile(r"^Token indices sequence length is longer than the "
                                                        r"specified maximum sequence length")),
)
# transformers' own bars for reading / writing a checkpoint (kick prints what it loaded and wrote)
QUIET_BARS = ("Loading weights", "Writing model shards")
# loggers whose INFO lines narrate a library's internals (GPTQ: GPTQModel's banner, kernel choice and environment
# notes on its LogBar logger ``logbar``; optimum's per-layer lines); their warnings and errors still show
INFO_LOGGERS = ("logbar", "optimum")


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
    _quiet_info()
    import warnings

    # optimum's GPTQ calls transformers' deprecated name; the deprecation is theirs to settle, not the user's
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    if "gptqmodel" not in sys.modules:  # its banner and start-up notes go to stdout while it is imported, and its
        _on_import("gptqmodel", _quiet_info, quiet_stdout=True)  # logger is reset to INFO when it is made
    if "optimum.gptq.quantizer" in sys.modules:
        _quiet_optimum_bar()
    else:
        _on_import("optimum.gptq.quantizer", _quiet_optimum_bar)


def _quiet_info() -> None:
    for name in INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _quiet_optimum_bar() -> None:
    """optimum's inner per-layer bar off (its per-block bar stays): nested bars leave escape codes in logs."""
    import sys

    quantizer = sys.modules["optimum.gptq.quantizer"]
    if not getattr(quantizer.tqdm, "kick_quiet", False):
        inner = quantizer.tqdm

        def tqdm(*args, **kwargs):
            if kwargs.get("desc") == "Quantizing layers inside the block":
                kwargs["disable"] = True
            return inner(*args, **kwargs)
        tqdm.kick_quiet = True
        quantizer.tqdm = tqdm


def _set_bar_hook() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_tqdm_hook(_bar_hook)


def _on_import(module: str, then, quiet_stdout: bool = False) -> None:
    """Call ``then()`` right after ``module`` is first imported (a one-shot meta path finder); with
    ``quiet_stdout`` what the import prints to stdout is dropped."""
    import importlib.abc
    import sys

    class Finder(importlib.abc.MetaPathFinder):
        busy = False

        def find_spec(self, name, path, target=None):
            if name != module or self.busy:  # busy: the lookup below, which must reach the real finders
                return None
            import importlib.util

            self.busy = True
            try:
                spec = importlib.util.find_spec(name)
            finally:
                self.busy = False
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def run(mod):  # find_spec alone (availability checks) imports nothing: act only when it is executed
                import contextlib
                import io

                if self in sys.meta_path:
                    sys.meta_path.remove(self)
                with contextlib.redirect_stdout(io.StringIO()) if quiet_stdout else contextlib.nullcontext():
                    exec_module(mod)
                then()
            spec.loader.exec_module = run
            return spec

    if not any(getattr(f, "kick_module", None) == module for f in sys.meta_path):
        finder = Finder()
        finder.kick_module = module
        sys.meta_path.insert(0, finder)
