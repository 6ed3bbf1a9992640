"""``kick import-lm-eval RESULTS_DIR --run-dir RUN --label LABEL``: lm-eval results of the exported LLM-KICK tasks
as one cell of a sweep store, so ``kick bench --status``, the report, ``kick push --run-dir`` and the Space read them
like a cell ``kick bench`` measured.

Input: what ``lm_eval ... --include_path DIR --log_samples --output_path OUT`` writes: ``results_<time>.json`` and,
beside it, ``samples_<task>_<time>.jsonl`` per task (and ``judge_<task>_<time>.json`` from ``kick judge`` for the
judged tasks). ``RESULTS_DIR`` is that folder, a folder above it, or the results file itself; a folder holding
several results files is refused (pass the file).

Scores: each task is rescored from the logged outputs with kick's scorers (``kick_hub.harness.functions.score``),
so the store holds kick's metrics (mcq-reasoning's per-subject and per-category tables, icra-qa's open minus closed
book gap, icsum's buckets) and kick-format samples. Perplexity is token-level: lm-eval's summed log-likelihood of each
text over the text's tokens (counted with the model's tokenizer), as kick reports it. The settings stored with them are the run's: model (lm-eval's
``pretrained``, or a kick variant's base model), data (the exported tasks' source), protocol, lm-eval's batch size
and each task's limit.

Samples: each samples file must log documents ``0..N-1`` once each (lm-eval's ``--limit N`` takes the first N
documents; a repeated or missing ``doc_id`` is refused), and N must be the results file's ``n-samples`` count
(``effective``) for the task. The limit stored is ``effective`` when below ``original`` (None, the full set,
otherwise); a results file without ``n-samples`` for the task stores the number of samples present as the limit,
never the full set, since nothing says the file holds every example.

Decoding and precision are part of a cell's identity. kick's generations are greedy: a run whose generation
settings sample (lm-eval's per-task ``configs.<task>.generation_kwargs``, which ``--gen_kwargs`` updates, recorded
also as ``config.gen_kwargs``: ``do_sample`` true, or a ``temperature`` above 0 without ``do_sample=False``) or search
beams (``num_beams`` above 1) is refused naming the field, unless ``allow_sampling`` (``--allow-sampling``), and then
its label must say so (contain ``sampled``) and the cell's spec records the decoding. The dtype the model ran in
(``dtype=`` / ``torch_dtype=`` of ``config.model_args``; ``auto`` when absent) is the store's ``dtype`` setting: a run
at another dtype than the store's results is refused (a store of ``auto`` takes any).

Every check (the files, each field read, the tasks, the model against the store's) runs before the store is
opened for writing: a refused import writes nothing (ValueError naming the file and the field; CLI exit 2).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kick_hub.harness import LmEvalTask, by_name
from kick_hub.harness.functions import perplexity, prediction, prompt, score
from kick_hub.tasks.specs import SPECS

RESULTS_RE = re.compile(r"^results_(?P<time>.+)\.json$")
IMPORTABLE = tuple(SPECS)


@dataclass
class Imported:
    """What one lm-eval run gives a store cell: kick's results and samples per task, and the settings."""

    model: str                      # the model the store records (base model of a kick variant)
    pretrained: str                 # lm-eval's pretrained argument
    data: str
    protocol: str
    batch_size: int | str | None
    limits: dict[str, int | None]   # kick task -> examples limit (None: all)
    judges: dict[str, str | None]   # kick task -> judge name (None: not judged)
    results: dict[str, dict] = field(default_factory=dict)
    samples: dict[str, list[dict]] = field(default_factory=dict)
    records: dict[str, list[dict]] = field(default_factory=dict)  # kick task -> the records lm-eval ran, in order
    seconds: float = 0.0
    manifest: dict | None = None    # the kick variant's manifest when pretrained is one
    dtype: str = "auto"             # config.model_args dtype / torch_dtype (``model_dtype``)
    decoding: dict | None = None    # non-greedy generation settings (``decoding``), only with allow_sampling


def find_results(path: str | Path) -> Path:
    """The lm-eval ``results_*.json`` at or under ``path``; ValueError naming ``results`` when there is none or
    several."""
    path = Path(path)
    if path.is_file():
        if not RESULTS_RE.match(path.name):
            raise ValueError(f"results: {path} is not an lm-eval results file (results_<time>.json)")
        return path
    if not path.is_dir():
        raise ValueError(f"results: {path} does not exist")
    found = sorted(p for p in path.rglob("results_*.json") if RESULTS_RE.match(p.name))
    if not found:
        raise ValueError(f"results: {path} holds no lm-eval results_<time>.json (the --output_path of "
                         f"`lm_eval ... --log_samples`)")
    if len(found) > 1:
        raise ValueError(f"results: {path} holds {len(found)} lm-eval results files "
                         f"({', '.join(str(p.relative_to(path)) for p in found)}); pass the one to import")
    return found[0]


def _field(obj: dict, key: str, kind, file: Path, where: str = ""):
    """``obj[key]`` when it is a ``kind``; else ValueError naming the file and the field."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        raise ValueError(f"{where}{key}: {file}: missing or not a {getattr(kind, '__name__', kind)} (is this "
                         f"lm-eval output of the tasks `kick lm-eval-tasks` writes?)")
    return value


def _model_args(config: dict) -> dict:
    """lm-eval's ``config.model_args`` as a dict (it is a dict or a ``k=v,...`` string); {} when neither."""
    args = config.get("model_args")
    if isinstance(args, str):
        args = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
    return args if isinstance(args, dict) else {}


DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}


def model_dtype(config: dict) -> str:
    """The dtype lm-eval loaded the model in: ``dtype`` or ``torch_dtype`` of ``config.model_args`` without a
    ``torch.`` prefix (``bf16`` / ``fp16`` / ``half`` / ``fp32`` / ``float`` as their full names); ``auto`` when
    neither is given (lm-eval's default)."""
    args = _model_args(config)
    value = str(args.get("dtype") or args.get("torch_dtype") or "auto").strip().removeprefix("torch.")
    return DTYPE_ALIASES.get(value.lower(), value.lower())


def _kwargs(value) -> dict:
    """Generation kwargs as lm-eval records them (a dict, or a ``k=v,...`` string) as a dict; {} when neither."""
    if isinstance(value, str):
        return {k.strip(): v.strip() for k, v in (kv.split("=", 1) for kv in value.split(",") if "=" in kv)}
    return dict(value) if isinstance(value, dict) else {}


def _truth(value) -> bool | None:
    """A do_sample value as lm-eval takes it (a bool, or its text from ``--gen_kwargs``); None when unset."""
    if value is None:
        return None
    return str(value).strip().lower() in ("true", "1", "yes") if isinstance(value, str) else bool(value)


def _number(value, field: str, file: Path) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: {file}: must be a number, got {value!r}"[:300]) from None


def decoding(configs: dict, config: dict, names: list[str], file: Path) -> tuple[dict, str] | None:
    """(the non-greedy settings, the field that says so) of the generating tasks ``names`` of an lm-eval run, or
    None when every one decodes greedily as kick does. Read from each task's ``configs.<task>.generation_kwargs``
    (``--gen_kwargs`` updates them) and the run's ``config.gen_kwargs``: sampling is ``do_sample`` true, or a
    ``temperature`` above 0 without ``do_sample=False``; beam search is ``num_beams`` above 1."""
    run_kwargs = _kwargs(config.get("gen_kwargs"))
    for name in names:
        cfg = configs.get(name) if isinstance(configs.get(name), dict) else {}
        if cfg.get("output_type") not in (None, "generate_until"):
            continue
        task_kwargs = _kwargs(cfg.get("generation_kwargs"))
        merged = {**task_kwargs, **run_kwargs}

        def where(key: str) -> str:
            return "config.gen_kwargs" if key in run_kwargs else f"configs.{name}.generation_kwargs"

        sample = _truth(merged.get("do_sample"))
        temperature = _number(merged["temperature"], f"{where('temperature')}.temperature", file) \
            if merged.get("temperature") is not None else 0.0
        beams = _number(merged["num_beams"], f"{where('num_beams')}.num_beams", file) \
            if merged.get("num_beams") is not None else 1
        shown = {k: merged[k] for k in ("do_sample", "temperature", "top_p", "top_k", "num_beams") if k in merged}
        if sample:
            return shown, f"{where('do_sample')}.do_sample"
        if temperature > 0 and sample is None:
            return shown, f"{where('temperature')}.temperature"
        if beams > 1:
            return shown, f"{where('num_beams')}.num_beams"
    return None


def _pretrained(config: dict, file: Path) -> str:
    """lm-eval's ``pretrained`` model argument (``config.model_args``)."""
    args = _model_args(config)
    if not isinstance(args.get("pretrained"), str) or not args["pretrained"]:
        raise ValueError(f"config.model_args.pretrained: {file}: missing (lm-eval's --model_args "
                         f"pretrained=MODEL)")
    return args["pretrained"]


def same_model(a: str, b: str) -> bool:
    """Whether two model names are the same model: equal, or the same local directory (``world`` is the world
    model's directory)."""
    from kick_hub.models import WORLD_MODEL_DIR

    def norm(name: str) -> str:
        name = str(WORLD_MODEL_DIR) if name == "world" else name
        p = Path(name).expanduser()
        return str(p.resolve()) if p.exists() else name

    return a == b or norm(a) == norm(b)


def read_task_samples(file: Path, t: LmEvalTask) -> tuple[list[dict], list[str]]:
    """(kick records, model outputs) of one lm-eval samples file of task ``t``, in document order: every line a
    sample of ``t`` with its kick record, each doc_id once, documents 0..N-1 (lm-eval's ``--limit N``); ValueError
    naming the file, line and field otherwise."""
    if not file.exists():
        raise ValueError(f"samples: {file.parent} has no {file.name} for task {t.name!r} (run lm_eval with "
                         f"--log_samples)")
    rows = []
    seen: dict[int, int] = {}  # doc_id -> line
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{file} line {n}"
        try:
            s = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"samples: {where}: not valid JSON ({e.msg})") from None
        doc = s.get("doc") if isinstance(s, dict) else None
        if not isinstance(doc, dict) or not isinstance(doc.get("record"), str) or doc.get("task") != t.task:
            raise ValueError(f"doc.record: {where}: missing, or not a document of kick task {t.task!r} (a sample "
                             f"of the tasks `kick lm-eval-tasks` writes)")
        resps = s.get("filtered_resps")
        doc_id = s.get("doc_id")
        if not isinstance(doc_id, int) or isinstance(doc_id, bool) or doc_id < 0:
            raise ValueError(f"doc_id: {where}: missing or not a non-negative integer, got {doc_id!r}"[:300])
        if doc_id in seen:
            raise ValueError(f"doc_id: {where}: repeats doc_id {doc_id} (first at line {seen[doc_id]}); each "
                             f"document must be logged once (one lm-eval run's samples file, not several joined)")
        seen[doc_id] = n
        if not isinstance(resps, list) or not resps:
            raise ValueError(f"filtered_resps: {where}: missing or empty")
        try:
            record = json.loads(doc["record"])
            output = prediction(t.task, t.protocol, resps)
        except (ValueError, TypeError, IndexError) as e:
            raise ValueError(f"filtered_resps: {where}: cannot be read as task {t.name!r}'s output ({e})") from None
        what = "log-likelihood" if t.task == "perplexity" else "generated text"
        if not isinstance(output, float if t.task == "perplexity" else str):
            raise ValueError(f"filtered_resps: {where}: must hold the {what}, got {output!r}"[:300])
        rows.append((s["doc_id"], record, output))
    if not rows:
        raise ValueError(f"samples: {file}: holds no samples")
    rows.sort(key=lambda r: r[0])
    if rows[-1][0] != len(rows) - 1:  # lm-eval's --limit N logs documents 0..N-1; kick's limit means the same
        missing = sorted(set(range(rows[-1][0] + 1)) - set(seen))
        raise ValueError(f"doc_id: {file}: holds {len(rows)} samples, but not documents 0..{len(rows) - 1} "
                         f"(doc_ids up to {rows[-1][0]}, missing {missing[:10]}{' ...' if len(missing) > 10 else ''}); "
                         f"kick stores the first N examples of a task (lm-eval's --limit N), not a selection")
    return [r[1] for r in rows], [r[2] for r in rows]


def _limit(run_file: Path, counts: dict, t: LmEvalTask, samples_file: Path, n: int) -> int | None:
    """The examples limit of lm-eval task ``t`` whose samples file holds ``n`` samples: from the results file's
    ``n-samples`` (``effective`` when below ``original``, else None: the full set), which must count ``n``; without
    an ``n-samples`` entry for the task, ``n`` itself (the samples present, never the full set). ValueError naming
    ``n-samples`` and both files when they disagree."""
    if t.name not in counts:
        return n
    entry = counts[t.name]
    if not (isinstance(entry, dict) and all(isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool)
                                            and entry.get(k) >= 0 for k in ("original", "effective"))):
        raise ValueError(f"n-samples: {run_file}: n-samples.{t.name} must hold integer 'original' and 'effective' "
                         f"counts, got {entry!r}"[:300])
    if entry["effective"] != n:
        raise ValueError(f"n-samples: {samples_file} holds {n} samples of task {t.name!r}, but {run_file} says "
                         f"n-samples.{t.name}.effective = {entry['effective']} (a samples file of another run, or "
                         f"cut / joined)")
    return entry["effective"] if entry["effective"] < entry["original"] else None


def _judge(file: Path, t: LmEvalTask, n: int) -> dict | None:
    """The ``kick judge`` output for a judged task (``judge_<task>_<time>.json``), None when there is none."""
    if not file.exists():
        return None
    from kick_hub.io import loads

    try:
        out = loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"judge: {file}: not valid JSON ({e.msg})") from None
    for key, kind in (("judge", str), ("scores", dict), ("samples", list)):
        _field(out, key, kind, file)
    if out.get("task") != t.name or len(out["samples"]) != n:
        raise ValueError(f"samples: {file}: must judge the {n} samples of task {t.name!r}")
    return out


def _token_counts(pretrained: str, add_bos: str | None, texts: list[str], file: Path) -> list[int]:
    """The tokens lm-eval's ``loglikelihood_rolling`` scored in each text (``tok_encode(text)``: the tokenizer's
    special tokens unless ``add_bos_token`` says otherwise), counted with the model's tokenizer. A BOS among them
    means lm-eval scored the BOS token as the text's first token, which kick does not: refused, naming
    ``add_bos_token``."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(pretrained)
    except (OSError, ValueError) as e:
        raise ValueError(f"config.model_args.pretrained: {file}: cannot load the tokenizer of {pretrained!r} to "
                         f"count perplexity's tokens ({e})") from None
    special = {} if add_bos is None else {"add_special_tokens": str(add_bos).lower() == "true"}
    encoded = [tokenizer(t, **special)["input_ids"] for t in texts]
    bos = tokenizer.bos_token_id
    if bos is not None and any(ids[:1] == [bos] for ids in encoded):
        raise ValueError(f"config.model_args.add_bos_token: {file}: lm-eval scored the tokenizer's BOS token as "
                         f"the first token of each llmkick_perplexity text (kick scores the text's tokens after "
                         f"BOS); run llmkick_perplexity with --model_args ...,add_bos_token=False")
    return [len(ids) for ids in encoded]


def read(results_path: str | Path, protocol: str = "default", tasks: list[str] | None = None,
         model: str | None = None, allow_sampling: bool = False) -> Imported:
    """Read and check one lm-eval run (``find_results``) and rescore its LLM-KICK tasks of ``protocol``; ``tasks``
    (kick task ids) must all be there (default: every one the run has). ``model`` overrides the model name the
    store records (default: lm-eval's ``pretrained``, ``world`` for the world model's directory, or a kick variant's
    base model). A run that did not decode greedily (``decoding``) is refused unless ``allow_sampling``. Raises
    ValueError naming the file and field of anything missing or wrong."""
    from kick_hub.variant import MANIFEST, load_manifest

    file = find_results(results_path)
    stamp = RESULTS_RE.match(file.name).group("time")
    try:
        run = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"results: {file}: not valid JSON ({e})") from None
    if not isinstance(run, dict):
        raise ValueError(f"results: {file}: not an lm-eval results object")
    results = _field(run, "results", dict, file)
    configs = _field(run, "configs", dict, file)
    config = _field(run, "config", dict, file)
    known = by_name()

    def ours(t: LmEvalTask) -> bool:  # a task without this protocol (perplexity) runs its default, as in kick
        return t.protocol == task_protocol(t.task, protocol)

    have = {name: known[name] for name in results if name in known and ours(known[name])}
    kick_tasks = list(dict.fromkeys(t.task for t in have.values() if t.task in IMPORTABLE))
    if tasks:
        unknown = [t for t in tasks if t not in IMPORTABLE]
        if unknown:
            raise ValueError(f"tasks: {unknown} cannot be imported; allowed: {list(IMPORTABLE)}")
        kick_tasks = list(tasks)
    if not kick_tasks:
        raise ValueError(f"results: {file} has no LLM-KICK task of protocol {protocol!r} (tasks there: "
                         f"{sorted(results)}); export them with `kick lm-eval-tasks` and run lm_eval with "
                         f"--include_path")
    parts = {}
    for task in kick_tasks:
        for t in known.values():
            if t.task == task and ours(t):
                if t.name not in results:
                    raise ValueError(f"results: {file} has no task {t.name!r} (field 'results' holds "
                                     f"{sorted(results)})")
                parts[t.name] = t
    templated = [t for t in kick_tasks if not SPECS[t].chat and t != "perplexity"]
    if run.get("chat_template") and templated:
        raise ValueError(f"chat_template: {file}: lm-eval read the prompts through the model's chat template "
                         f"(--apply_chat_template), but kick reads {templated} without one; run those tasks without "
                         f"--apply_chat_template (and icsum / instruction-following with it)")
    if run.get("system_instruction"):
        raise ValueError(f"system_instruction: {file}: lm-eval added a system instruction, which kick's prompts "
                         f"do not have; run without --system_instruction")
    pretrained = _pretrained(config, file)
    sampled = decoding(configs, config, list(parts), file)
    if sampled is not None and not allow_sampling:
        settings, where = sampled
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        raise ValueError(f"{where}: {file}: lm-eval did not decode greedily ({shown}), but kick's results are "
                         f"greedy generations; rerun lm_eval without "
                         f"sampling, or pass --allow-sampling with a --label that says so (containing 'sampled')")
    manifest = None
    if (Path(pretrained) / MANIFEST).exists():
        manifest = load_manifest(pretrained)
    name = model or (manifest["base_model"] if manifest else pretrained)
    if model is None and same_model(name, "world"):
        name = "world"
    sources = set()
    for t in parts.values():
        kwargs = _field(_field(configs, t.name, dict, file, "configs."), "dataset_kwargs", dict, file,
                        f"configs.{t.name}.")
        sources.add(kwargs.get("kick_data"))
    if len(sources) != 1 or not isinstance(next(iter(sources)), str):
        raise ValueError(f"configs.*.dataset_kwargs.kick_data: {file}: the tasks must share one data source, "
                         f"got {sorted(map(str, sources))}")
    counts = run.get("n-samples", {})
    if not isinstance(counts, dict):
        raise ValueError(f"n-samples: {file}: must be an object of per-task sample counts, got {counts!r}"[:300])
    batch = config.get("batch_size")
    out = Imported(model=name, pretrained=pretrained, data=sources.pop(), protocol=protocol,
                   batch_size=int(batch) if isinstance(batch, str) and batch.isdigit() else batch, limits={},
                   judges={}, seconds=float(run.get("total_evaluation_time_seconds") or 0.0), manifest=manifest,
                   dtype=model_dtype(config), decoding=sampled[0] if sampled else None)
    for task in kick_tasks:
        mine = [t for t in parts.values() if t.task == task]
        read_parts, limits = {}, {}
        for t in mine:
            samples_file = file.parent / f"samples_{t.name}_{stamp}.jsonl"
            read_parts[t.part] = (t, *read_task_samples(samples_file, t))
            limits[t.part] = _limit(file, counts, t, samples_file, len(read_parts[t.part][1]))
        t, records, outputs = read_parts["main"]
        out.records[task] = records
        out.limits[task] = limits["main"]
        judged = _judge(file.parent / f"judge_{t.name}_{stamp}.json", t, len(records)) if SPECS[task].judge_prompt \
            else None
        out.judges[task] = judged["judge"] if judged else None
        tokens = (_token_counts(pretrained, _model_args(config).get("add_bos_token"), [r["text"] for r in records],
                                file) if task == "perplexity" else None)
        out.results[task], out.samples[task] = _task(task, task_protocol(task, protocol), read_parts, judged, tokens)
    return out


def task_protocol(task: str, protocol: str) -> str:
    """The protocol ``task`` runs under when ``protocol`` is asked for: its default when it has no such protocol."""
    return protocol if protocol in SPECS[task].protocols else "default"


def _task(task: str, protocol: str, parts: dict, judged: dict | None, tokens: list[int] | None = None
          ) -> tuple[dict, list[dict]]:
    """kick's results and samples of one task from its lm-eval parts (icra-qa: open and closed book); perplexity
    needs each text's ``tokens``."""
    t, records, outputs = parts["main"]
    if task == "perplexity":
        results, per = perplexity(outputs, tokens)
        return {"n": len(records), **results}, [{"id": r["id"], "prompt": r["text"], "output": "", "reference": "",
                                                  **p} for r, p in zip(records, per)]
    results, per = score(task, protocol, "main", records, outputs)
    samples = []
    for i, (r, p) in enumerate(zip(records, per)):
        ref = r.get("answers", r.get("answer", r.get("reference")))
        sample = {"id": r["id"], "prompt": prompt(task, protocol, "main", r), "output": p["output"],
                  "reference": ref, "score": p["score"]}
        if task == "mcq-reasoning":
            sample["shots"] = min(SPECS[task].num_fewshot, len(r.get("fewshot", [])))
        if "bucket" in r:
            sample["bucket"] = r["bucket"]
        if "category" in r and task == "instruction-following":
            sample["category"] = r["category"]
        samples.append(sample)
    if task == "icra-qa":
        tc, closed_records, closed_outputs = parts["closed_book"]
        if [r["id"] for r in closed_records] != [r["id"] for r in records]:
            raise ValueError(f"samples: task {tc.name!r} holds other questions than {t.name!r} (run both with the "
                             f"same --limit)")
        closed, closed_per = score(task, protocol, "closed_book", closed_records, closed_outputs)
        results = {"exact_match": results["exact_match"], "f1": results["f1"],
                   "closed_book_exact_match": closed["exact_match"], "closed_book_f1": closed["f1"],
                   "open_minus_closed_exact_match": results["exact_match"] - closed["exact_match"]}
        for s, c in zip(samples, closed_per):
            s.update(closed_book_output=c["output"], closed_book_score=c["score"])
    if judged:
        results.update(judged["scores"])
        for s, j in zip(samples, judged["samples"]):
            if not isinstance(j, dict) or j.get("id") != s["id"]:
                raise ValueError(f"samples: the judge file of task {task!r} holds other examples than its samples")
            s.update({k: v for k, v in j.items() if k != "id"})
    return {"n": len(samples), **results}, samples


def import_run(results_path: str | Path, run_dir: str | Path, label: str, protocol: str = "default",
               tasks: list[str] | None = None, model: str | None = None, allow_sampling: bool = False) -> list[str]:
    """Read and check the lm-eval run (``read``), check it against the store in ``run_dir`` (same model, data,
    protocol and dtype as its results, the same records of each task; the label's tasks and their limits / judges
    not stored yet), then write it as cell ``label`` in one transaction, holding the run dir's lock. A run that
    sampled is taken only with ``allow_sampling`` and a label containing ``sampled``; its cell's spec records the
    decoding. Returns the tasks written. ValueError (StoreError) naming the field before anything is written."""
    from kick_hub.bench.store import FILENAME, Store
    from kick_hub.bench.sweep import hold, run_settings
    from kick_hub.data import records_digest

    if not label or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", label):
        raise ValueError(f"label: must be letters, digits, '.', '_' or '-' (e.g. dense, wanda-50), got {label!r}")
    if allow_sampling and "sampled" not in label:
        raise ValueError(f"label: --allow-sampling imports a non-greedy run, which must not pass for a greedy cell; "
                         f"use a label containing 'sampled' (e.g. dense-sampled), got {label!r}")
    imported = read(results_path, protocol, tasks, model, allow_sampling)
    if imported.manifest is not None and imported.manifest.get("label") != label:
        raise ValueError(f"label: {imported.pretrained} is kick variant {imported.manifest.get('label')!r} (its "
                         f"manifest's label); import it with --label {imported.manifest.get('label')}")
    run_dir = Path(run_dir)
    calibration = (imported.manifest or {}).get("calibration") or {}
    settings = run_settings(imported.model, imported.data, protocol, imported.batch_size, calibration.get("source"),
                            calibration.get("nsamples"), calibration.get("seqlen"))
    settings["dtype"] = imported.dtype
    per_task = {t: {"limit": imported.limits[t], "judge": imported.judges[t],
                    "data": {"digest": records_digest(imported.records[t]), "files": {}}}
                for t in imported.results}
    if (run_dir / FILENAME).exists():
        _check_store(run_dir, imported, label, per_task)
    if imported.manifest is not None:
        spec, method = imported.manifest["spec"], imported.manifest["spec"]["method"]
    else:  # a model that is no kick variant: dense, or another model's results beside it
        spec, method = None, "dense" if label == "dense" else "lm-eval"
    if imported.decoding is not None:  # a non-greedy cell: its decoding is part of its identity
        spec = {**(spec or {}), "decoding": imported.decoding}
    with hold(run_dir):
        if (run_dir / FILENAME).exists():  # again under the lock: another writer may have come in between
            _check_store(run_dir, imported, label, per_task)
        store = Store(run_dir, imported.model)
        try:
            if not store.has_results():
                store.begin(settings)
            run_id = store.start_run(sys.argv)
            return store.write_cell(label, method, spec, imported.manifest, imported.pretrained, imported.results,
                                    imported.samples, run_id, imported.seconds, task_settings=per_task)
        finally:
            store.close()


def _check_store(run_dir: Path, imported: Imported, label: str, per_task: dict[str, dict]) -> None:
    """Refuse (ValueError naming the field) an import that does not fit the results ``run_dir`` already holds."""
    from kick_hub.bench.store import Store
    from kick_hub.io import public_name

    store = Store.open_readonly(run_dir)
    try:
        if not store.has_results():
            return
        if not same_model(store.model, imported.model):
            raise ValueError(f"config.model_args.pretrained: the lm-eval run is of model "
                             f"{public_name(imported.model)!r}, but run-dir {run_dir} holds results for model "
                             f"{public_name(store.model)!r}; use another --run-dir (or --model to name it)")
        settings = store.settings() or {}
        for key, have in (("data", imported.data), ("protocol", imported.protocol)):
            if settings.get(key) is not None and settings.get(key) != have:
                raise ValueError(f"{key}: the lm-eval run has {key} {public_name(have)!r}, but run-dir {run_dir} "
                                 f"was measured with {public_name(settings.get(key))!r}")
        stored_dtype = settings.get("dtype", "auto")
        if stored_dtype != "auto" and stored_dtype != imported.dtype:
            raise ValueError(f"config.model_args.dtype: the lm-eval run loaded the model as {imported.dtype}, but "
                             f"run-dir {run_dir} holds results measured in {stored_dtype}; rerun lm_eval with "
                             f"--model_args ...,dtype={stored_dtype}, or use another --run-dir")
        recorded = store.task_settings()
        for task, asked in per_task.items():
            for key in ("limit", "judge"):
                if task in recorded and recorded[task].get(key) != asked[key]:
                    raise ValueError(f"{key}: task {task} of the lm-eval run has {key} {asked[key]!r}, but run-dir "
                                     f"{run_dir} measured it with {recorded[task].get(key)!r}")
            have = (recorded.get(task) or {}).get("data")
            if have and have["digest"] != asked["data"]["digest"]:
                raise ValueError(f"samples: task {task} of the lm-eval run holds other records (questions, contexts, "
                                 f"few-shot examples) than run-dir {run_dir} measured it on; export the tasks from the "
                                 f"same data (kick lm-eval-tasks --data) or use another --run-dir")
        done = store.done().get(label, set()) & set(per_task)
        if done:
            raise ValueError(f"label: run-dir {run_dir} already holds {sorted(done)} for {label!r}; use another "
                             f"--label or --run-dir")
    finally:
        store.close()
