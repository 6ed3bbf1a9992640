"""The LLM-KICK sweep: plan cells (variants), compress + evaluate each, store results in SQLite, report.

``SweepConfig`` (``bench.config``) holds one sweep's settings; ``run_bench`` (``bench.runner``) runs it: lock, sweep,
report, push. Both are imported on first use, so ``from kick_hub.bench import report`` stays light."""

_LAZY = {"SweepConfig": "kick_hub.bench.config", "BenchResult": "kick_hub.bench.runner",
         "run_bench": "kick_hub.bench.runner"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
