"""Run a causal LM over prompts: the names callers import, over the backends in ``kick_hub.backends``.

``make_engine(name, backend="transformers", ...)`` is the one place a backend is chosen; tasks, ``kick_hub.evaluation``,
the judge's local backend and the Space talk only to the ``Backend`` protocol (greedy generation with the model's
stop ids, option log-likelihoods, token log-probabilities over texts, next-token distributions). ``Engine`` is the
transformers backend (``kick_hub.backends.transformers.TransformersEngine``), whose docstring states the stop,
context, padding and non-finite rules. Model loading lives in ``kick_hub.models`` (``load_model``); it is
re-exported here with the other names code and tests import from ``kick_hub.engine``. See docs/backends.md.
"""

from __future__ import annotations

from kick_hub.backends import (BACKENDS, Backend, LogitCheck, NonFiniteLogits, cut_at_stop, make_engine,
                               until_stop)
from kick_hub.backends.transformers import (GREEDY, TransformersEngine, choose_pad_token_id, stop_token_ids,
                                            until_stop_streamer)
from kick_hub.models import ALIASES as MODEL_ALIASES
from kick_hub.models import WORLD_MODEL_DIR, load_model
from kick_hub.models import resolve as resolve_model

__all__ = ["Engine", "Backend", "BACKENDS", "make_engine", "TransformersEngine", "load_model", "resolve_model",
           "MODEL_ALIASES", "WORLD_MODEL_DIR", "stop_token_ids", "choose_pad_token_id", "until_stop",
           "until_stop_streamer", "cut_at_stop", "GREEDY", "LogitCheck", "NonFiniteLogits"]

Engine = TransformersEngine  # the transformers backend under the name every caller has used
