"""Judge prompts: versioned JSON files in ``kick_hub/scoring/judge_prompts/`` (``<name>-v<k>.json``), each checked
when loaded, and which of them fit each judged task (``TaskSpec.judge_prompts``)."""

from __future__ import annotations

import json
from pathlib import Path

from kick_hub.scoring.judge.parse import PARSE_FORMATS
from kick_hub.tasks.specs import SPECS

PROMPT_DIR = Path(__file__).resolve().parents[1] / "judge_prompts"


def _check_prompt(prompt: dict, path: Path) -> dict:
    """A prompt file's keys and parse block, checked so that a broken file fails before any judging."""
    for key in ("name", "system", "template", "parse"):
        if key not in prompt:
            raise ValueError(f"judge prompt {path}: key {key!r} is missing")
    parse = prompt["parse"]
    if not isinstance(parse, dict) or parse.get("format") not in PARSE_FORMATS:
        raise ValueError(f"judge prompt {path}: parse.format must be one of {list(PARSE_FORMATS)}, "
                         f"got {parse.get('format') if isinstance(parse, dict) else parse!r}")
    criteria = parse.get("criteria")
    if not isinstance(criteria, dict) or not criteria or not all(
            isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v) for v in criteria.values()):
        raise ValueError(f"judge prompt {path}: parse.criteria must map each criterion to a list of labels")
    if parse["format"] == "bracketed" and len(criteria) != 1:
        raise ValueError(f"judge prompt {path}: a bracketed parse scores exactly one criterion, got {list(criteria)}")
    if parse["format"] == "labelled" and not all(criteria.values()):
        raise ValueError(f"judge prompt {path}: a labelled parse needs at least one label per criterion")
    if "{reference}" in prompt["template"] and set(criteria) != {"reference", "answer"}:
        raise ValueError(f"judge prompt {path}: a pairwise template ({{reference}} and {{answer}}) scores exactly the "
                         f"criteria 'reference' and 'answer' (so the two orders can be mapped back), got {list(criteria)}")
    return prompt


# judged task -> the judge prompts that fit it, its default first: the task's declaration
# (``tasks.SPECS[task].judge_prompts``, which says why each prompt fits)
TASK_PROMPTS: dict[str, tuple[str, ...]] = {t: s.judge_prompts for t, s in SPECS.items() if s.judge_prompts}


def task_prompts(task: str) -> tuple[str, ...]:
    """The judge prompts that fit ``task`` (``TaskSpec.judge_prompts``, its default first; a task that is not
    judged: none). KeyError for a task name not in ``tasks.SPECS``."""
    return SPECS[task].judge_prompts


def check_task_prompt(task: str, prompt: str) -> str:
    """``prompt`` when it fits ``task`` (``task_prompts``); ValueError naming ``judge-prompt`` and listing the
    prompts that fit ``task`` otherwise."""
    valid = task_prompts(task)
    if prompt not in valid:
        raise ValueError(f"judge-prompt: {prompt!r} does not fit task {task!r} (its template asks about, and its "
                         f"parse block reads, another kind of example); the prompts for {task}: {list(valid)}")
    return prompt


def prompt_names() -> list[str]:
    """The shipped judge prompt names (``judge_prompts/*.json``), sorted."""
    return sorted(p.stem for p in PROMPT_DIR.glob("*.json"))


def load_prompt(name: str) -> dict:
    """A judge prompt by name (``pairwise-v1``, ``single-v1``, ``summary-v1``), its parse block checked."""
    path = PROMPT_DIR / f"{name}.json"
    if not path.exists():
        raise ValueError(f"judge-prompt: must be one of {prompt_names()}, got {name!r}")
    return _check_prompt(json.loads(path.read_text(encoding="utf-8")), path)
