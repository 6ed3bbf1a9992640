"""Engine backends: the protocol that tasks, the evaluation, the judge's local backend and the Space run a model
through, and ``make_engine``, the one place a backend is chosen.

A backend runs one causal LM over prompts and texts. Every backend keeps these rules, so a task's scores do not depend
on which one ran it (the transformers backend, ``kick_hub.backends.transformers``, documents how it keeps them):

- Greedy decoding only, ended at the model's own stop token ids and cut at the first stop string (``cut_at_stop``),
  so runs are deterministic and ``stream``'s last text equals ``generate``'s.
- Results come back in the caller's order, whatever the batching; scores are the same at every batch size.
- A backend never cuts a prompt: one that does not fit its context (``max_length`` tokens, less the room its
  continuation needs, ``room``) raises ``ValueError``; tasks fit their prompts first (``kick_hub.tasks.fit``, which
  needs only ``room``, ``count_tokens`` and ``token_prefixes``).
- Every input (prompt or text) run is counted in ``checked`` (``LogitCheck``), with those whose logits were NaN / inf
  where a result was read; outputs keep their types (text, NaN log-probs, NaN perplexity) and the caller decides
  (``kick_hub.evaluation`` marks the task invalid, the judge raises, ``stream`` raises ``NonFiniteLogits``).

Token counts (``token_ids``, ``count_tokens``, ``tokenize``) are in the backend's own tokenizer; log-probabilities are
natural-log, float32, over the backend's vocabulary. See docs/backends.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # torch is imported by the backends that need it
    import torch

__all__ = ["Backend", "BACKENDS", "make_engine", "check_fits", "LogitCheck", "NonFiniteLogits", "until_stop", "cut_at_stop"]

# backend name -> "module:class"; the class has ``from_name(name, placement=None, **kwargs)``
BACKENDS: dict[str, str] = {"transformers": "kick_hub.backends.transformers:TransformersEngine",
                            "llama.cpp": "kick_hub.backends.llamacpp:LlamaCppEngine"}


class NonFiniteLogits(ValueError):
    """The model gave NaN / inf logits where a result was read (``Backend.stream``): what it would return is not the
    model's answer. Usually a float16 overflow; float32 or bfloat16 (``--dtype``) avoids it (docs/gpu.md)."""


@dataclass
class LogitCheck:
    """Counts of the non-finite check: ``inputs`` prompts / texts run through the model and ``non_finite`` those of
    them with a NaN or inf logit where a result was read (a generation step before the stop, an option's
    log-prob, a scored perplexity position, a returned next-token distribution)."""

    inputs: int = 0
    non_finite: int = 0

    def minus(self, before: "LogitCheck") -> "LogitCheck":
        """The counts since ``before`` (an earlier copy)."""
        return LogitCheck(self.inputs - before.inputs, self.non_finite - before.non_finite)

    def copy(self) -> "LogitCheck":
        """A snapshot of the counts."""
        return LogitCheck(self.inputs, self.non_finite)

    def add(self, bad: Sequence[bool]) -> None:
        """Count one call's inputs (``bad[i]``: input ``i`` had a non-finite logit)."""
        self.inputs += len(bad)
        self.non_finite += sum(bool(b) for b in bad)


@runtime_checkable
class Backend(Protocol):
    """What a task, ``kick_hub.evaluation``, the judge's local backend and the Space may ask of a model. Attributes:
    ``max_length`` (the context in tokens), ``batch_size`` (prompts per forward pass) and ``checked`` (the
    non-finite counts, module docstring)."""

    max_length: int
    batch_size: int
    checked: LogitCheck

    # ------------------------------------------------------------ tokens and context
    def has_chat_template(self) -> bool:
        """Whether the model has a chat template (``render(..., chat=True)`` applies it; as typed otherwise)."""
        ...

    def render(self, prompt: str, chat: bool) -> str:
        """The text the model reads for ``prompt``: in its chat template (one user turn, generation prompt added)
        when ``chat`` and it has one, else ``prompt`` unchanged."""
        ...

    def token_ids(self, text: str) -> list[int]:
        """Token ids of an already rendered text as the model reads it (with BOS where the tokenizer adds one)."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` alone, no special tokens: how many tokens a continuation or a reply takes."""
        ...

    def token_prefixes(self, text: str) -> list[str]:
        """``text`` cut after 0, 1, ..., n of its tokens (no special tokens), ``n + 1`` strings: where a passage
        may be shortened (``kick_hub.tasks.fit.fit_passage``)."""
        ...

    def count_tokens(self, prompt: str, chat: bool = False) -> int:
        """Tokens the model reads for ``prompt`` (after ``render(prompt, chat)``), BOS included."""
        ...

    def room(self, reserve: int) -> int:
        """Prompt tokens that fit when ``reserve`` tokens must fit after the prompt; ``ValueError`` (naming
        ``max_new_tokens``) unless ``0 <= reserve < max_length``."""
        ...

    # ------------------------------------------------------------ generation
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, stop: Sequence[str] = (),
                 chat: bool = False, progress: str | None = None) -> list[str]:
        """Greedy continuations (prompt excluded), in input order, each ended at the model's stop ids and cut at
        its first stop string. ``ValueError`` for a prompt that does not fit with ``max_new_tokens`` after it."""
        ...

    def stream(self, prompt: str, max_new_tokens: int = 32, stop: Sequence[str] = (),
               chat: bool = False) -> Iterator[str]:
        """``generate([prompt], ...)[0]`` yielded as it grows (the last value equals it); ``NonFiniteLogits`` after
        the stream when the logits were non-finite before the stop."""
        ...

    # ------------------------------------------------------------ log-likelihoods
    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str], chat: bool = False,
                        progress: str | None = None) -> list[list[float]]:
        """``[len(prompts)][len(choices)]`` log P(choice | rendered prompt), summed over the choice's tokens (NaN
        for a prompt with non-finite logits)."""
        ...

    def continuation_logprob(self, context: str, continuation: str) -> float:
        """Sum of log P(continuation tokens | context), tokenized as lm-evaluation-harness does (whole string,
        split at the context's length)."""
        ...

    def perplexity(self, texts: Sequence[str], progress: str | None = None,
                   stride: int | None = None) -> dict[str, float | int | list]:
        """Token-level perplexity over ``texts`` (every token after the first scored once, long texts in strided
        windows): ``perplexity``, ``nll`` (mean per token), ``tokens``, ``per_example``, ``per_example_windows``,
        ``non_finite``."""
        ...

    def next_token_logprobs(self, texts: Sequence[str], progress: str | None = None) -> list["torch.Tensor"]:
        """One float32 CPU tensor ``[T_i, V]`` per text: row ``t`` is log P(next token | the text's first ``t + 1``
        tokens) over the whole vocabulary (``T_i = len(token_ids(text))``; the last row predicts past the text).
        What a KL divergence between two models over the same texts needs. ``ValueError`` for a text longer than
        ``max_length`` tokens."""
        ...

    # ------------------------------------------------------------ provenance
    def generation_settings(self) -> dict:
        """How the backend decodes, for a results file's config (stop token ids, pad id, greedy)."""
        ...

    def placement(self) -> dict:
        """Where the model runs, for a results file's config (device, dtype, device map, what was asked)."""
        ...


def check_fits(i: int, ids: Sequence[int], max_length: int, context: int) -> None:
    """The rule every backend's ``encode`` applies: prompt ``#i`` (token ``ids``) must fit in ``max_length`` tokens
    (the model's ``context`` less the room its continuation needs); ValueError otherwise. The engine never cuts a
    prompt: the tasks fit their prompts first (``kick_hub.tasks.fit``)."""
    if len(ids) > max_length:
        raise ValueError(f"prompt: #{i} is {len(ids)} tokens but only {max_length} fit the model's {context}-token "
                         f"context with the room its continuation needs; shorten it (the engine never cuts a prompt)")


def make_engine(name: str, backend: str | None = None, placement=None, gguf_file: str | None = None,
                **kwargs) -> Backend:
    """A ``Backend`` over the model ``name`` (alias, local directory or Hub id; ``kick_hub.models``) run by
    ``backend`` (one of ``BACKENDS``; None: ``llama.cpp`` for a GGUF, that is a ``.gguf`` path, a ``kick compress
    --method gguf`` variant directory or ``gguf_file`` in the repo / directory ``name``, else ``transformers``);
    ``placement`` is a ``kick_hub.device.Placement`` (None: auto device and dtype) and ``kwargs`` (``batch_size``,
    ``max_length``) go to the backend. Raises ``ValueError`` naming ``backend`` for an unknown one, or
    ``gguf_file`` given to a backend that reads no GGUF, before anything loads, and what loading the model raises."""
    if backend is None:
        from kick_hub.backends.llamacpp import find_gguf

        backend = "llama.cpp" if gguf_file is not None or find_gguf(name) is not None else "transformers"
    if backend not in BACKENDS:
        raise ValueError(f"backend: must be one of {sorted(BACKENDS)}, got {backend!r}")
    if gguf_file is not None:
        if backend != "llama.cpp":
            raise ValueError(f"gguf_file: only the llama.cpp backend reads GGUF files, not {backend!r}")
        kwargs["gguf_file"] = gguf_file
    module, cls = BACKENDS[backend].split(":")
    return getattr(importlib.import_module(module), cls).from_name(name, placement=placement, **kwargs)


def until_stop(ids: Sequence[int], stop_ids: Sequence[int]) -> list[int]:
    """Generated ids up to (excluding) the first stop token id."""
    stops = set(stop_ids)
    out: list[int] = []
    for i in ids:
        if i in stops:
            break
        out.append(i)
    return out


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text up to (excluding) the earliest stop string."""
    cut = min((text.find(s) for s in stop if s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text
