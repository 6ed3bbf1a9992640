"""Fitting prompts into the model's context: the one place the tasks shorten what a model reads.

The engine never cuts a prompt (a ``kick_hub.backends.Backend`` raises). Each task fits its prompts here first, with a
stated rule that keeps the beginning of what the model must see (task header, instruction) and the question at the
end:

- few-shot prompts (mcq-reasoning, both protocols): drop whole solved examples from the end, keeping the first
  ``k`` that fit, as hendrycks/test and LLM-KICK's MMLU script do (``while crop(prompt) != prompt: k -= 1``);
- passages (icra-qa's evidence, icsum's story): keep the passage's first tokens and drop its tail, leaving the text
  around it (instruction, question) intact, the same direction as LLM-KICK's 3,072-character TriviaQA cut;
- anything else (a question or an instruction alone, or a prompt still too long with no shots or an empty passage):
  the example is not scored. Its sample carries ``skipped`` and no ``score``; the task's ``n`` counts scored
  examples only.

Room: a prompt must leave its continuation room in the context (``max_new_tokens`` when generating, the longest
option when scoring log-likelihoods). Every shortened or skipped prompt is recorded in its sample and the task warns
once per run with a ``ContextWarning``. See docs/context.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

from kick_hub.backends import Backend

SKIPPED = "prompt does not fit the model's context"


class ContextWarning(UserWarning):
    """Some prompts of a task run were shortened or skipped to fit the model's context."""


def fit_shots(engine: Backend, build: Callable[[int], str], num_shots: int, reserve: int,
              chat: bool = False) -> tuple[str | None, int]:
    """``(prompt, k)`` for the largest ``k <= num_shots`` whose ``build(k)`` (header, the first ``k`` shots, the
    question) fits the context with ``reserve`` tokens to spare; ``(None, 0)`` when even ``build(0)`` does not fit.
    Shots are dropped from the end (hendrycks/test and LLM-KICK's MMLU rule)."""
    room = engine.room(reserve)
    for k in range(num_shots, -1, -1):
        text = build(k)
        if engine.count_tokens(text, chat) <= room:
            return text, k
    return None, 0


def fit_passage(engine: Backend, build: Callable[[str], str], passage: str, reserve: int,
                chat: bool = False) -> tuple[str | None, str, int]:
    """``(prompt, kept passage, truncated_tokens)``: ``build(passage)`` when it fits the context with ``reserve``
    tokens to spare, else ``build`` of the passage's longest token prefix that fits (its tail dropped; the text
    ``build`` puts around the passage is kept whole) and the number of passage tokens dropped. The prompt is ``None``
    (and every passage token counted as dropped) when even an empty passage does not fit."""
    room = engine.room(reserve)
    whole = build(passage)
    if engine.count_tokens(whole, chat) <= room:
        return whole, passage, 0
    prefixes = engine.token_prefixes(passage)
    n = len(prefixes) - 1

    def fits(k: int) -> bool:
        return engine.count_tokens(build(prefixes[k]), chat) <= room

    if not fits(0):
        return None, "", n
    lo, hi = 0, n - 1  # the largest k < n that fits: fits(lo) holds, fits(n) does not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return build(prefixes[lo]), prefixes[lo], n - lo


def fit_whole(engine: Backend, prompt: str, reserve: int, chat: bool = False) -> str | None:
    """``prompt`` when it fits the context with ``reserve`` tokens to spare, else ``None`` (not scored): a prompt
    with no shots or passage to give up (a question, an instruction) is never cut."""
    return prompt if engine.count_tokens(prompt, chat) <= engine.room(reserve) else None


def kept(prompts: Sequence[str | None]) -> list[int]:
    """Indices of the prompts that fit (not ``None``); raises ``ValueError`` when none does."""
    idx = [i for i, p in enumerate(prompts) if p is not None]
    if prompts and not idx:
        raise ValueError(f"data: none of the {len(prompts)} prompts fits the model's context, even shortened")
    return idx


def spread(values: Sequence, idx: Sequence[int], n: int, fill=None) -> list:
    """``values`` (one per kept index) put back at ``idx`` in a list of length ``n``, ``fill`` elsewhere."""
    out = [fill] * n
    for i, v in zip(idx, values):
        out[i] = v
    return out


def warn_once(task: str, engine: Backend, total: int, shortened: int, skipped: int, how: str) -> None:
    """One ``ContextWarning`` per task run when prompts were shortened (``how``) or skipped."""
    if not shortened and not skipped:
        return
    parts = ([f"{shortened} shortened ({how})"] if shortened else []) + (
        [f"{skipped} not scored (too long even shortened)"] if skipped else [])
    warnings.warn(f"{task}: {shortened + skipped} of {total} prompts exceed the model's {engine.max_length}-token "
                  f"context: {', '.join(parts)}; see each sample's fields and docs/context.md",
                  ContextWarning, stacklevel=2)


def sample_fields(prompt: str | None, shortened: bool, **extra) -> dict:
    """The context fields of one sample: ``shortened`` (bool) and the task's details (``shots``,
    ``truncated_tokens``), plus ``skipped`` when the prompt did not fit at all."""
    fields = {"shortened": shortened, **extra}
    if prompt is None:
        fields["skipped"] = SKIPPED
    return fields
