"""The comparison: what every model reads (the prompt formats), the Compare endpoint's checks, and the outputs
of the chosen models streamed side by side, scored against an example's reference."""

from __future__ import annotations

import threading
import time

from kick_hub import tasks
from kick_hub.space.checks import check_choice, check_flag, check_prompt
from kick_hub.space.examples import example_record
from kick_hub.space.limits import COMPARE_TASKS, MAX_PANES
from kick_hub.space.models import Models

AS_TYPED, CHAT = "as typed (no template)", "chat template"
PROMPT_FORMATS = (AS_TYPED, CHAT)  # what a model reads: the prompt itself, or the prompt in its chat template


def task_format(task: str) -> str:
    """The prompt format ``kick evaluate`` gives ``task``'s prompts (``TaskSpec.chat``): ``CHAT`` or ``AS_TYPED``."""
    return CHAT if tasks.SPECS[task].chat else AS_TYPED


def applied_format(engine, chat: bool) -> str:
    """What a model read, in words: the prompt as typed, or in its chat template (``Backend.render`` applies one
    only when asked and the tokenizer has one)."""
    if not chat:
        return "as typed"
    return "chat template" if engine.has_chat_template() else "as typed (no chat template)"


def compare_stream(models: Models, names: list[str], prompt: str, max_new_tokens: int, task: str | None = None,
                   record: dict | None = None, chat: bool | None = None):
    """Yield the list of outputs of every model as they grow (one thread per model, greedy, same settings); the
    last item also carries each output's score when ``record`` comes from ``task``.

    Generation stops at ``task``'s stop strings (none without a task); ``chat``: wrap the prompt in each model's chat
    template (``applied_format``), None for the task's own format (``task_format``; as typed without a task), so a
    task's prompt gives exactly ``kick evaluate``'s output."""
    max_new_tokens = check_prompt(prompt, max_new_tokens)
    if not names:
        raise ValueError(f"models: pick at least one of {sorted(models.choices)}")
    if len(names) > MAX_PANES:
        raise ValueError(f"models: at most {MAX_PANES} side by side, got {len(names)}")
    for n in names:  # every name checked before any model loads
        models.resolve(n)
    spec = tasks.get(task).SPEC if task else None
    stop = spec.stop if spec else ()
    chat = (spec.chat if spec else False) if chat is None else check_flag("chat", chat)
    engines = [models.engine(n) for n in names]
    for name, (engine, _) in zip(names, engines):
        n_tokens = engine.count_tokens(prompt, chat)
        if n_tokens + max_new_tokens > engine.max_length:
            raise ValueError(f"prompt: {n_tokens} tokens + {max_new_tokens} new exceed {name}'s context of "
                             f"{engine.max_length} tokens; shorten the prompt or lower max_new_tokens")
    texts = [""] * len(names)
    errors: list[BaseException] = []

    def work(i: int, engine, lock) -> None:
        from kick_hub.backends import NonFiniteLogits

        try:
            with lock:
                for text in engine.stream(prompt, max_new_tokens, stop, chat):
                    texts[i] = text
        except NonFiniteLogits as e:  # NaN / inf logits: the text is not the model's answer; say whose it was
            errors.append(NonFiniteLogits(f"{names[i]}: {e}"))
        except BaseException as e:  # noqa: BLE001 - surfaced to the user below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, e, lock), daemon=True) for i, (e, lock) in enumerate(engines)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.05)
        yield list(texts), None
    if errors:
        raise errors[0]
    scores = ([e["score"] for e in tasks.get(task).score([record] * len(texts), list(texts))[1]]
              if task and record else None)
    yield list(texts), scores


def check_compare(models: Models, examples: dict[str, dict[str, list[dict]]], base: str, variants: list[str],
                  prompt: str, max_new_tokens, source: str, task: str, index, from_example: bool,
                  prompt_format: str | None = None) -> tuple[list[str], int, str, dict | None, bool]:
    """The Compare endpoint's inputs, every one checked in the Space's own words (the API can be called without the
    UI's slider and dropdowns), as (model names, new tokens, task, record, chat) for ``compare_stream``. ``task``
    is the selected task: its stop strings end every output. ``source`` and ``index`` name the example the prompt
    came from and matter only with ``from_example``; record is None (nothing is scored) unless the prompt is still
    that example's. ``prompt_format`` is one of ``PROMPT_FORMATS`` (None: the task's own, ``task_format``); chat is
    True for ``CHAT``. Raises ValueError; loads nothing."""
    check_choice("base", base, models.choices)
    variants = [] if variants is None else variants
    if not isinstance(variants, (list, tuple)):
        raise ValueError(f"variants: must be a list of model names from {sorted(models.choices)}, got {variants!r}")
    for v in variants:
        check_choice("variants", v, models.choices)
    chosen = [base, *dict.fromkeys(v for v in variants if v != base)]
    if len(chosen) > MAX_PANES:
        raise ValueError(f"variants: at most {MAX_PANES - 1} beside the base model, got {len(chosen) - 1}")
    max_new_tokens = check_prompt(prompt, max_new_tokens)
    check_choice("task", task, COMPARE_TASKS)
    chat = check_choice("prompt_format", task_format(task) if prompt_format is None else prompt_format,
                        PROMPT_FORMATS) == CHAT
    record = None
    if check_flag("from_example", from_example):
        record = example_record(examples, source, task, index)
        if tasks.get(task).prompt(record) != prompt:
            record = None  # the prompt was edited: no reference to score against
    return chosen, max_new_tokens, task, record, chat


def compare_outputs(models: Models, examples: dict[str, dict[str, list[dict]]], base: str, variants: list[str],
                    prompt: str, max_new_tokens, source: str, task: str, index, from_example: bool,
                    prompt_format: str | None = None):
    """The Compare endpoint: ``check_compare``, then ``compare_stream``; yields (model names, outputs, scores or
    None)."""
    chosen, max_new_tokens, task, record, chat = check_compare(models, examples, base, variants, prompt,
                                                               max_new_tokens, source, task, index, from_example,
                                                               prompt_format)
    for texts, scores in compare_stream(models, chosen, prompt, max_new_tokens, task, record, chat):
        yield chosen, texts, scores
