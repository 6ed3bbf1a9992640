"""The Results tab's per-example browser: dense and variant outputs of a task side by side, each row showing the
question rather than the whole prompt (``question_text``)."""

from __future__ import annotations

from pathlib import Path

from kick_hub import tasks
from kick_hub.bench.store import FILENAME
from kick_hub.space.checks import check_choice, check_flag
from kick_hub.space.examples import reference_text
from kick_hub.space.limits import COMPARE_TASKS, RIGHT
from kick_hub.space.tables import display_frame

PASSAGE_HEAD = 160  # characters of an in-context task's passage the browser shows before its question


def _template_fields(template: str, text: str) -> dict[str, str] | None:
    """The fields of a ``str.format`` template (``TaskSpec.prompts``) read back out of ``text``; None when ``text``
    does not have the template's shape."""
    import re
    import string

    pattern = "".join(re.escape(literal) + (f"(?P<{field}>.*)" if field else "")
                      for literal, field, _, _ in string.Formatter().parse(template))
    match = re.fullmatch(pattern, text, flags=re.DOTALL)
    return match.groupdict() if match else None


def _head(text: str, limit: int = PASSAGE_HEAD) -> str:
    """The first ``limit`` characters of a passage, cut at a word, with `` …`` when there is more."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


def question_text(task: str, prompt: str) -> str:
    """What a browser row shows of a stored prompt (``samples``' ``prompt``): the question a reader needs, not the
    whole prompt. mcq-reasoning: the final question with its options, without the header and solved examples;
    icra-qa / icsum: the head of the passage (``PASSAGE_HEAD`` characters) and the question or instruction;
    factoid-qa / instruction-following: the question. A prompt that does not have its task's template shape
    (another protocol's) is shown from its last paragraph."""
    import re

    spec = tasks.SPECS[task]
    if task == "mcq-reasoning":
        # a solved example ends "Answer: X" and a blank line; the header ends with a blank line
        ends = [m.end() for m in re.finditer(r"\nAnswer:[^\n]*\n\n", prompt)]
        start = ends[-1] if ends else prompt.find("\n\n") + 2 if "\n\n" in prompt else 0
        return prompt[start:].removesuffix("Answer:").strip()
    fields = _template_fields(spec.prompts.get("prompt", ""), prompt) if spec.prompts else None
    if fields is None:
        return prompt.strip().rsplit("\n\n", 1)[-1].strip()
    passage = fields.get("context", fields.get("story"))
    if passage is None:
        return fields.get("question", prompt).strip()
    if "question" in fields:
        return f"{_head(passage)}\n\nQ: {fields['question'].strip()}"
    instruction = spec.prompts["prompt"].rsplit("}", 1)[-1].strip()  # what follows the passage (icsum's ask)
    return f"{_head(passage)}\n\n{instruction}"


def browse(run_dir: str | Path | None, label: str, task: str, only_regressions: bool, cannot_say: bool = False):
    """Per-example dense vs variant outputs of a task, optionally only where dense is right and the variant wrong,
    as a DataFrame with the columns question (``question_text``), reference (``reference_text``), dense,
    ``label``, dense score, ``label`` score, id. ``cannot_say`` (mcq-reasoning scored under both protocols,
    ``--mcq-protocols loglik generate``): only the questions ``label`` gets right by log-likelihood and wrong by
    generation ("knows it but cannot say it", ``stats.recognition``), ``label``'s cell then naming the letter it
    picks by log-likelihood and what it generated. Raises ValueError naming the field for a bad input."""
    import pandas as pd

    from kick_hub.bench.store import Store

    if not run_dir or not (Path(run_dir) / FILENAME).exists():
        raise ValueError("run-dir: this Space was started without a run dir (kick space --run-dir DIR)")
    check_choice("task", task, COMPARE_TASKS)
    check_flag("only_regressions", only_regressions)
    if check_flag("cannot_say", cannot_say) and task != "mcq-reasoning":
        raise ValueError(f"cannot_say: applies to mcq-reasoning only (right by log-likelihood, wrong by "
                         f"generation), got task {task!r}")
    store = Store.open_readonly(run_dir)
    try:
        labels = {v["label"] for v in store.variants()}
        check_choice("variant", label, sorted(labels))
        dense, variant = store.samples("dense", task), store.samples(label, task)
    finally:
        store.close()
    if cannot_say and not any("score_loglik" in v and "score_generate" in v for v in variant):
        raise ValueError(f"cannot_say: {label}'s mcq-reasoning was not scored under both protocols (kick bench "
                         f"--mcq-protocols loglik generate)")
    rows = []
    number = (int, float)
    for d, v in zip(dense, variant):
        if not (isinstance(d.get("score"), number) and isinstance(v.get("score"), number)):
            continue  # an example that was not scored (skipped) on either side
        if only_regressions and not (d["score"] >= RIGHT > v["score"]):
            continue
        if cannot_say and not (v.get("score_loglik") == 1 and v.get("score_generate") == 0):
            continue
        said = (f"log-likelihood picks {v.get('output_loglik')}; generated {v.get('output_generate')!r}"
                if cannot_say else v.get("output"))
        rows.append({"question": question_text(task, str(d.get("prompt", ""))),
                     "reference": reference_text(d.get("reference")), "dense": d.get("output"),
                     label: said, "dense score": round(d["score"], 3),
                     f"{label} score": round(v["score"], 3), "id": d.get("id")})
    columns = ["question", "reference", "dense", label, "dense score", f"{label} score", "id"]
    return display_frame(pd.DataFrame(rows, columns=columns))
