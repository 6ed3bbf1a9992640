"""LLM-as-judge: one interface, two backends, versioned prompts, honest parsing, a verdict cache.

- ``ChatCompletionsBackend``: any OpenAI-compatible ``/v1/chat/completions`` endpoint, through the official ``openai``
  client (extra ``judge``; huggingface_hub's InferenceClient refuses every URL, even a local one, under
  HF_HUB_OFFLINE): ``concurrency`` requests in flight, an optional requests-per-minute limit, the client's retries
  with exponential backoff. The key is read from an environment variable and never logged or stored.
- ``TransformersBackend``: a local chat model run by the project's engine, its prompts generated in batches.

``Judge.score`` asks a pairwise prompt in both orders (reference first, then answer first) and averages the two
verdicts, keeps every reply in a SQLite verdict cache (``judge_cache``) so a rerun sends nothing it already paid
for, and accounts for what it sent (``JudgeUsage``). docs/judge.md describes all of it.

Judge prompts are JSON files in ``judge_prompts/`` (``<name>-v<k>.json``): a system message, a template, and a
``parse`` block naming the reply format and the criteria (see ``PARSE_FORMATS``). A score is a number on the 1-10
scale, written ``8``, ``7.5``, ``8/10``, ``8 out of 10`` or ``[[8]]``; a quoted scale (``Coherence (1-10): 8``) is
skipped, never read as the score. A reply with a missing, ambiguous (two different scores for one criterion) or
out-of-range score (``0``, ``11``, ``-1``, ``9/5``, or a quoted scale other than 1-10) is counted in
``unparsable`` and left out of every mean: it is never clamped or otherwise turned into a number. A reasoning
judge's blocks (``<think>``, ``<thinking>``, ``<reasoning>``, ``<thought>``) are removed before any prompt's reply is
parsed, so a draft verdict inside one is never read; a block left open (the reply was cut while reasoning) makes
the reply unparsable (``strip_reasoning``).

A reply that carries no verdict because the endpoint failed (no content, filtered, cut at the token limit, an error
in the choice; ``Completion.failure``) is unparsable in the run that got it and never cached: the next run asks
again. An answer without any choice (an HTTP 200 whose body is an ``error`` object) is a ``JudgeError`` naming the
provider's message, retried like an HTTP 429 when its code is 408, 409, 429 or 5xx.

One concern per module: ``parse`` (reading replies), ``prompts`` (the prompt files), ``endpoints`` (the two
backends), ``cache`` (the verdict cache), ``usage`` (accounting), ``scorer`` (``Judge``, ``make_judges``).
"""

from __future__ import annotations

from kick_hub.scoring.judge.parse import (SCORE_MIN, SCORE_MAX, PARSE_FORMATS, REASONING_TAGS, strip_reasoning, parse_reply)
from kick_hub.scoring.judge.prompts import (PROMPT_DIR, TASK_PROMPTS, task_prompts, check_task_prompt, prompt_names, load_prompt)
from kick_hub.scoring.judge.endpoints import (BACKENDS, JudgeError, Completion, Backend, RateLimiter, public_endpoint, endpoint_id, check_base_url, FAILED_FINISH, INITIAL_RETRY_DELAY, MAX_RETRY_DELAY, MAX_RETRY_AFTER, body_error, read_choice, ChatCompletionsBackend, TransformersBackend, make_backend)
from kick_hub.scoring.judge.usage import (USAGE_FIELDS, JudgeUsage, total_usage, format_usage, estimate, format_estimate, usage_from_samples)
from kick_hub.scoring.judge.scorer import (ORDERS, JudgeResult, Judge, make_judges)
from kick_hub.scoring.judge.cache import (FILENAME, cache_key, VerdictCache)

__all__ = ['BACKENDS', 'Backend', 'ChatCompletionsBackend', 'Completion', 'FAILED_FINISH', 'FILENAME', 'INITIAL_RETRY_DELAY', 'Judge', 'JudgeError', 'JudgeResult', 'JudgeUsage', 'MAX_RETRY_AFTER', 'MAX_RETRY_DELAY', 'ORDERS', 'PARSE_FORMATS', 'PROMPT_DIR', 'REASONING_TAGS', 'RateLimiter', 'SCORE_MAX', 'SCORE_MIN', 'TASK_PROMPTS', 'TransformersBackend', 'USAGE_FIELDS', 'VerdictCache', 'body_error', 'cache_key', 'check_base_url', 'check_task_prompt', 'endpoint_id', 'estimate', 'format_estimate', 'format_usage', 'load_prompt', 'make_backend', 'make_judges', 'parse_reply', 'prompt_names', 'public_endpoint', 'read_choice', 'strip_reasoning', 'task_prompts', 'total_usage', 'usage_from_samples']
