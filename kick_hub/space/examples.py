"""The examples a comparison can start from: their sources in words, loading them, and one example's prompt and
reference."""

from __future__ import annotations

from pathlib import Path

from kick_hub import tasks
from kick_hub.space.checks import check_choice, check_whole
from kick_hub.space.limits import COMPARE_TASKS, EXAMPLES_PER_TASK

SOURCE_NAMES = {"world": "the synthetic world (built in)", "world-heldout": "the synthetic world, held-out facts",
                "hub": "the tasks' Hub datasets"}


def source_label(source: str) -> str:
    """An example source in words: the world sets and the Hub by name, a local folder or file by its last two
    path parts (``../shared/data`` reads ``local files: shared/data``), never the path as typed."""
    if source in SOURCE_NAMES:
        return SOURCE_NAMES[source]
    if source.startswith("hub:"):
        return f"Hub dataset {source[4:]}"
    return "local files: " + "/".join(Path(source).resolve().parts[1:][-2:])


def load_examples(sources: list[str], per_task: int = EXAMPLES_PER_TASK) -> dict[str, dict[str, list[dict]]]:
    """source -> task -> records, for every comparable task a source has (missing sets are skipped)."""
    from kick_hub.tasks import records

    out: dict = {}
    for source in sources:
        for name in COMPARE_TASKS:
            try:
                out.setdefault(source, {})[name] = records.load(name, source, per_task)
            except (ValueError, FileNotFoundError):
                continue
    return out


def example_record(examples: dict[str, dict[str, list[dict]]], source: str, task: str, index) -> dict:
    """Example ``index`` of ``task`` from ``source``, each input checked in the Space's own words."""
    check_choice("source", source, sorted(examples))
    check_choice("task", task, COMPARE_TASKS)
    records = examples[source].get(task, [])
    if not records:
        raise ValueError(f"task: {source!r} has no {task} examples; it has {sorted(examples[source])}")
    return records[check_whole("index", index, 0, len(records) - 1)]


def example_prompt(examples: dict[str, dict[str, list[dict]]], source: str, task: str, index) -> tuple[str, str]:
    """The Example endpoint: (prompt, reference) of example ``index`` of ``task`` from ``source``, every input checked
    in the Space's own words (the API can be called without the UI's dropdowns and number box)."""
    rec = example_record(examples, source, task, index)
    return tasks.get(task).prompt(rec), reference_text(rec[tasks.SPECS[task].example_reference])


def reference_text(reference) -> str:
    """A reference as plain text: a list of accepted answers joined with `` | ``, anything else as ``str``."""
    if isinstance(reference, (list, tuple)):
        return " | ".join(str(r) for r in reference)
    return "" if reference is None else str(reference)
