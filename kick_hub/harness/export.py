"""``kick lm-eval-tasks --output DIR``: the LLM-KICK tasks as lm-evaluation-harness task YAMLs.

Writes, into ``DIR``: one ``<task>.yaml`` per exported task (``kick_hub.harness.lm_eval_tasks``: every kick task and
protocol, icra-qa's closed-book half as a task of its own), ``llmkick.yaml`` and ``llmkick_llm_kick.yaml`` (the
groups of the default and the llm-kick protocol: every task but perplexity, which runs on its own), and ``utils.py``, which the YAMLs reference with ``!function`` and
which imports ``kick_hub.harness.functions``: records from kick's loaders, prompts from kick's task modules, scores
from ``kick_hub.scoring``. Nothing here imports lm-eval.

Settings each YAML carries, so lm-eval's requests are ``kick evaluate``'s:

- generation: ``max_gen_toks`` = the task's ``max_new_tokens``, ``until`` = its stop strings (lm-eval adds the
  end-of-sequence token, where kick stops at the model's stop token ids), greedy (``do_sample: false``);
- mcq-reasoning (default protocol): ``multiple_choice`` over the letters ``A``-``D`` with ``target_delimiter: " "``,
  so the scored continuation is `` A`` after ``Answer:``, the token kick scores; ``num_fewshot: 0``, since kick's
  prompt already holds its 5 solved examples;
- icsum and instruction-following read kick's prompt through the model's chat template: run them with lm-eval's
  ``--apply_chat_template`` when the model has one (kick applies it whenever there is one);
- perplexity is a ``loglikelihood_rolling`` task (lm-eval shows word / byte perplexity and bits per byte);
  ``kick import-lm-eval`` turns its log-likelihoods into kick's token-level perplexity. Run it with
  ``--model_args ...,add_bos_token=False`` when the tokenizer adds a BOS token: lm-eval's rolling windows already
  start from BOS, and would otherwise also score the BOS the tokenizer adds as the text's first token.

Data: ``data`` is any source ``kick evaluate --data`` takes (``world``, ``world-heldout``, a local file, folder or
data root in the datasets' release formats, ``hub`` or ``hub:<dataset id>``); a local path is written absolute.
Before anything is written, one record of each task is loaded from it (``check_tasks``): a source from which no task
loads is refused naming ``--data``, and the tasks whose data a local source does not hold are left out (with a note).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from kick_hub import __version__
from kick_hub.harness import GROUPS, LmEvalTask, lm_eval_tasks
from kick_hub.harness.functions import METRICS
from kick_hub.io import atomic_write_text
from kick_hub.tasks.specs import SPECS

UTILS = '''"""lm-eval functions of the LLM-KICK tasks (written by `kick lm-eval-tasks`; kick-hub must be installed in the
environment lm-eval runs in). Everything lives in kick_hub.harness.functions."""

from kick_hub.harness.functions import doc_to_target, doc_to_text, load, process_results  # noqa: F401
'''
SOURCES = ("world", "world-heldout", "hub")


def _q(value) -> str:
    """A YAML scalar for ``value`` (a JSON string / number / bool, which YAML reads as the same value)."""
    return json.dumps(value)


def check_data(data: str) -> str:
    """``data`` as the YAMLs record it: a named source as is, an existing local path made absolute; ValueError
    naming ``data`` otherwise (checked before anything is written)."""
    if data in SOURCES or data.startswith("hub:"):
        return data
    if os.path.exists(data):
        return str(Path(data).resolve())
    raise ValueError(f"data: {data!r} is neither {list(SOURCES)}, 'hub:<dataset id>' nor an existing path")


def check_tasks(data: str) -> dict[str, str]:
    """Load one record of every kick task from ``data`` (``check_data``'s value) before anything is written, so a
    source that is not data (a model folder, an empty folder) fails here rather than later inside lm-eval. Returns
    the tasks left out, each with why: a task whose data is not there (no folder of its own in a data root, or a
    single dataset's file or folder holding another task's data) is left out when some other task loads. ValueError
    naming ``--data`` when no task loads, and for a task whose own folder in the data root does not load (bad data,
    not missing data). ``hub`` sources are not loaded here (that downloads each whole dataset): lm-eval loads them."""
    from kick_hub.tasks import records

    if data == "hub" or data.startswith("hub:"):
        return {}
    skipped = {}
    for task, spec in SPECS.items():
        try:
            records.load(task, data, limit=1)
        except (ValueError, OSError) as e:
            own = [d for d in spec.sources.folders if (Path(data) / d).is_dir()] if os.path.isdir(data) else []
            if own:
                raise ValueError(f"data: --data {data}: task {task}'s data in {Path(data) / own[0]} does not load "
                                 f"({e})") from None
            skipped[task] = str(e)
    if len(skipped) == len(SPECS):
        why = "; ".join(f"{t}: {e}" for t, e in skipped.items())
        raise ValueError(f"data: --data {data} holds no LLM-KICK task's data ({why})"[:2000])
    return skipped


def task_yaml(t: LmEvalTask, data: str) -> str:
    """The YAML text of one exported task."""
    spec = SPECS[t.task]
    lines = [f"# LLM-KICK {t.task} ({'closed book, ' if t.part == 'closed_book' else ''}protocol {t.protocol}), "
             f"written by kick-hub {__version__} `kick lm-eval-tasks`",
             f"task: {t.name}",
             "custom_dataset: !function utils.load",
             "dataset_kwargs:",
             f"  kick_task: {_q(t.task)}",
             f"  kick_data: {_q(data)}",
             f"  kick_protocol: {_q(t.protocol)}",
             f"  kick_part: {_q(t.part)}",
             "test_split: test",
             "num_fewshot: 0"]
    if t.task == "perplexity":
        lines += ["output_type: loglikelihood_rolling",
                  'doc_to_text: ""',
                  "doc_to_target: !function utils.doc_to_target",
                  "metric_list:",
                  "  - metric: word_perplexity",
                  "  - metric: byte_perplexity",
                  "  - metric: bits_per_byte"]
    else:
        lines += ["doc_to_text: !function utils.doc_to_text",
                  "doc_to_target: !function utils.doc_to_target",
                  "process_results: !function utils.process_results"]
        if t.task == "mcq-reasoning" and t.protocol == "default":
            lines += ["output_type: multiple_choice",
                      f"doc_to_choice: {_q(['A', 'B', 'C', 'D'])}",
                      'target_delimiter: " "']
        else:
            if spec.chat:
                lines.append("# kick reads this prompt through the model's chat template: run with "
                             "--apply_chat_template when the model has one")
            lines += ["output_type: generate_until",
                      "generation_kwargs:",
                      f"  until: {_q(list(spec.stop))}",
                      f"  max_gen_toks: {spec.max_new_tokens}",
                      "  do_sample: false"]
        lines.append("metric_list:")
        for metric in METRICS[t.task, t.protocol]:
            lines += [f"  - metric: {metric}", "    aggregation: mean", "    higher_is_better: true"]
    lines += ["metadata:", "  version: 1.0", f"  kick_hub: {_q(__version__)}"]
    return "\n".join(lines) + "\n"


def group_yaml(protocol: str, names: list[str]) -> str:
    """The YAML text of the group of one protocol's tasks."""
    return "\n".join([f"# LLM-KICK, protocol {protocol}: every task (kick-hub {__version__} `kick lm-eval-tasks`)",
                      f"group: {GROUPS[protocol]}", "task:", *[f"  - {n}" for n in names],
                      "metadata:", "  version: 1.0"]) + "\n"


def export(output: str | Path, data: str = "world", note=None) -> list[Path]:
    """Write the task YAMLs, the two group YAMLs and ``utils.py`` into ``output`` (created when missing; each file
    written atomically, other files left alone); returns the paths written. Every task's data is loaded from
    ``data`` first (``check_tasks``); the tasks whose data is not there are left out of the YAMLs and groups, each
    with a line to ``note`` (default: stderr). ValueError naming ``data`` or ``output`` before anything is
    written."""
    data = check_data(data)
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output: {output} exists and is not a folder")
    skipped = check_tasks(data)
    for task, why in skipped.items():
        (note or (lambda line: print(line, file=sys.stderr)))(
            f"note: no {task} task written: its data is not in {data} ({why})")
    exported = [t for t in lm_eval_tasks() if t.task not in skipped]
    written = [atomic_write_text(output / "utils.py", UTILS)]
    for t in exported:
        written.append(atomic_write_text(output / f"{t.name}.yaml", task_yaml(t, data)))
    for protocol, group in GROUPS.items():
        # perplexity runs on its own (it needs add_bos_token=False where the other tasks need the BOS)
        names = [t.name for t in exported if t.protocol == protocol and t.task != "perplexity"]
        if not names:  # only perplexity's data there: no group (lm-eval refuses an empty one)
            continue
        written.append(atomic_write_text(output / f"{group}.yaml", group_yaml(protocol, names)))
    return written
