"""``kick judge SAMPLES.jsonl --judge ...``: kick's LLM judge on the generations lm-eval logged for a judged task
(icsum, instruction-following), since lm-eval has no judge of its own. lm-eval generates; kick judges afterwards.

The judge gets what it gets under ``kick evaluate --judge``: for icsum the story the model summarised (with
LLM-KICK's highlights under the llm-kick protocol) and the summary; for instruction-following the question, the
answer and, for a pairwise prompt (the default ``pairwise-v1``), the reference answer. Backends, prompts and reply
parsing are ``kick_hub.scoring.judge``'s (``make_judges``, ``Judge.score``).

Output: ``judge_<task>_<time>.json`` beside the samples file (or ``--output``): the judge's name, the task's judge
numbers and each example's judge fields, exactly as ``kick evaluate --judge`` puts them in its results and samples
(``JudgeResult.scores`` / ``JudgeResult.sample``). ``kick import-lm-eval`` reads it into the store with the task's
other scores.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from kick_hub.harness import by_name
from kick_hub.harness.functions import story
from kick_hub.harness.importer import read_task_samples
from kick_hub.io import write_json
from kick_hub.tasks.specs import SPECS

SAMPLES_RE = re.compile(r"^samples_(?P<task>.+?)_(?P<time>\d{4}-\d\d-\d\dT.+)\.jsonl$")


def judge_output_path(samples: Path) -> Path:
    """Where ``kick judge`` writes by default: ``judge_<task>_<time>.json`` beside ``samples_<task>_<time>.jsonl``
    (the name ``kick import-lm-eval`` looks for)."""
    return samples.with_name("judge_" + samples.name[len("samples_"):-len(".jsonl")] + ".json")


def read_samples(path: str | Path) -> tuple[str, list[dict], list[str]]:
    """(lm-eval task name, kick records, outputs) of an lm-eval samples file of a judged LLM-KICK task, in document
    order; ValueError naming the file and the field otherwise."""
    path = Path(path)
    m = SAMPLES_RE.match(path.name)
    if not path.exists():
        raise ValueError(f"samples: {path} does not exist")
    if not path.is_file():
        raise ValueError(f"samples: {path} is not a file (pass lm-eval's samples_<task>_<time>.jsonl)")
    if not m:
        raise ValueError(f"samples: {path} is not an lm-eval samples file (samples_<task>_<time>.jsonl)")
    t = by_name().get(m.group("task"))
    judged = sorted(n for n, x in by_name().items() if SPECS[x.task].judge_prompt)
    if t is None or not SPECS[t.task].judge_prompt:
        raise ValueError(f"samples: {path} is of task {m.group('task')!r}; kick judges only {judged}")
    records, outputs = read_task_samples(path, t)
    return t.name, records, [o.strip() for o in outputs]


def check_output(output: str | Path) -> Path:
    """``output`` (where ``kick judge`` writes its JSON) when it can be written as a file: ValueError naming
    ``output`` for an existing folder, a path below something that is not a folder, or one whose nearest existing
    folder cannot be written (the verdict cache is kept beside it). Checked before any judge request is sent."""
    output = Path(output)
    if output.is_dir():
        raise ValueError(f"output: --output {output} is an existing folder; it must name the JSON file to write "
                         f"(kick import-lm-eval reads judge_<task>_<time>.json beside the samples, the default)")
    for parent in output.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"output: --output {output}: {parent} is not a folder")
            try:  # a real probe (os.access says yes to root on read-only media): the verdict cache and the JSON
                os.rmdir(tempfile.mkdtemp(prefix=".kick-probe-", dir=parent))  # go there, after paid requests
            except OSError as e:
                raise ValueError(f"output: --output {output}: {parent} is not writable ({e.strerror}); give an "
                                 "--output in a writable folder") from None
            break
    return output


def judge_file(samples: str | Path, judge, output: str | Path | None = None, progress: bool = True
               ) -> tuple[Path, dict]:
    """Judge every sample of ``samples`` with ``judge`` (a ``kick_hub.scoring.judge.Judge``, e.g. from
    ``make_judges``) as the task's ``run`` does, and write the result (default ``judge_output_path``): ``task``,
    ``kick_task``, ``protocol``, ``judge`` (backend and prompt, as the store records it), ``scores``
    (``JudgeResult.scores``: the task's ``judge_*`` numbers) and ``samples`` (``id`` and ``JudgeResult.sample``'s
    fields per example, in document order). Returns (path written, what was written). Raises ValueError for a bad
    samples file or ``output`` (``check_output``, before any request), and what ``Judge.score`` raises."""
    from kick_hub.bench.sweep import task_settings

    samples = Path(samples)
    name, records, outputs = read_samples(samples)
    path = check_output(output if output else judge_output_path(samples))  # before any request
    t = by_name()[name]
    bar = f"judge {t.task}" if progress else None
    if t.task == "icsum":  # the story as the model read it
        result = judge.score([story(r, t.protocol) for r in records], outputs, progress=bar)
    else:
        refs = [r["reference"] for r in records]
        result = judge.score([r["question"] for r in records], outputs, refs if judge.pairwise else None,
                             progress=bar)
    out = {"task": name, "kick_task": t.task, "protocol": t.protocol,
           "judge": task_settings(t.task, None, {t.task: judge})["judge"], "scores": result.scores(),
           "samples": [{"id": r["id"], **result.sample(i)} for i, r in enumerate(records)]}
    write_json(path, out)
    return path, out
