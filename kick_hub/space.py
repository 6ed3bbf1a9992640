"""The kick-hub Space: dense and compressed outputs side by side, the sweep's results, a leaderboard.

A client of the library: prompts and scores come from the task modules, generation from ``Backend.stream`` (greedy,
the same settings for every model, the prompt as typed or in the chat template as chosen: ``PROMPT_FORMATS``, a
task's own format by default), the sweep table (with its significance marks) from ``bench.report`` and its figures
from ``bench.plots``, the leaderboard from ``hub.results``; the variants offered first are those where the loss shows
(``featured_variants``). Tables wrap their cells and size their columns to fit a 1024 px window (``CSS``,
``fit_widths``, ``BROWSE_WIDTHS``); the per-example browser shows the question, not the whole prompt
(``question_text``).
``space/app.py`` (the Hub Space, put on the Hub by ``kick publish-space``: ``hub/space_repo.py``) and ``kick space``
both call ``build``.

Where models run: every model loads with one ``device.Placement`` (``kick space --device/--dtype``, the Space's
KICK_DEVICE / KICK_DTYPE; ``auto`` is the GPU on GPU hardware), and a comparison's generation runs under
``spaces.GPU`` where the ``spaces`` package is present (``on_gpu``; ZeroGPU hardware), its models loaded before.
Of a run dir's variants only the kept ones (their directory with its manifest, ``is_kept``) can be compared; the
Results tab and its browser show every scored variant.

Limits: prompts longer than ``MAX_INPUT_CHARS``, or whose tokens plus the new tokens exceed a chosen model's context,
are refused with a message and never cut (every model reads exactly the prompt shown; an example whose few-shot or
passage prompt is too long can be edited down by hand, docs/context.md); at most
``MAX_NEW_TOKENS`` new tokens and ``MAX_PANES`` models per comparison; a bounded queue; models load once and stay
cached (``CACHE_SIZE``); only the run dir's models and an allowlist of Hub repo ids can be chosen (no free paths);
``trust_remote_code`` is never set (``models.load_model``). The handlers check every input themselves and answer in
kick's words (``max_new_tokens: must be between 1 and 256 ...``), since the API can be called without the UI's slider,
dropdowns and number box (the endpoints take their inputs unprocessed, and a refused input is a ``gr.Error``
without a server traceback: it is the user's input, not a fault). Tables show an infinite score (a broken model's
perplexity) as ``∞``.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from kick_hub import tasks
from kick_hub.bench.store import FILENAME

if TYPE_CHECKING:
    from kick_hub.device import Placement

MAX_INPUT_CHARS = 6000
MAX_NEW_TOKENS = 256
MAX_PANES = 4
CACHE_SIZE = 4
CONCURRENCY, QUEUE_SIZE = 2, 16
EXAMPLES_PER_TASK = 50
# the tasks whose examples can be compared: those whose spec names a reference to show (not perplexity)
COMPARE_TASKS = tuple(t for t, s in tasks.SPECS.items() if s.example_reference)
RIGHT = 0.5  # a per-example score >= 0.5 counts as right (EM / accuracy are 0 or 1; ROUGE-L is continuous)
GPU_SECONDS = 120  # the most one comparison's generation may hold a ZeroGPU device (``on_gpu``)


def is_kept(path: str | Path | None) -> bool:
    """Whether a sweep variant can still be loaded: its directory is there with its manifest
    (``kick_hub.variant.MANIFEST``); ``kick bench --keep-variants none|pushed`` deletes variant directories once
    their scores are committed (or pushed)."""
    from kick_hub.variant import MANIFEST

    return bool(path) and (Path(path) / MANIFEST).is_file()


class Models:
    """The allowlist (display name -> model id or variant dir) and an LRU cache of loaded engines. Of a run dir's
    variants only the kept ones (``is_kept``) are offered."""

    def __init__(self, run_dir: str | Path | None, allow: list[str] = (), placement: Placement | None = None
                 ) -> None:
        from kick_hub.hub import check_repo_id

        self.placement = placement  # where every engine loads (``make_engine``; None: load_model's default)
        self.choices: dict[str, str] = {"world": "world"}
        self.featured: list[str] = []  # the run dir's variants offered first (``featured_variants``)
        self.scored: list[str] = []  # every compressed variant the run dir has scores of, kept or not
        if run_dir and (Path(run_dir) / FILENAME).exists():
            from kick_hub.bench.store import Store

            store = Store.open_readonly(run_dir)
            scored = [v for v in store.variants() if v["label"] != "dense"]
            self.scored = [v["label"] for v in scored]
            offered = [v for v in scored if is_kept(v["path"])]
            self.choices = {"dense": store.model}
            self.choices.update({v["label"]: v["path"] for v in offered})
            self.featured = featured_variants(offered)
            store.close()
        for repo_id in allow:
            self.choices[check_repo_id(repo_id, "allow")] = repo_id
        self._cache: OrderedDict = OrderedDict()
        self._templates: dict[str, bool] = {}  # path -> whether its tokenizer has a chat template
        self._lock = threading.Lock()

    def resolve(self, name: str) -> str:
        """The model id or variant dir of an offered display name; ValueError naming ``model`` otherwise."""
        if not isinstance(name, str) or name not in self.choices:
            raise ValueError(f"model: {name!r} is not offered here; choose one of {sorted(self.choices)}")
        return self.choices[name]

    def has_chat_template(self, name: str) -> bool:
        """Whether ``name``'s tokenizer has a chat template (read from the loaded engine, else from the tokenizer
        alone, cached; a tokenizer that cannot be read counts as none). ValueError naming ``model`` for a name not
        offered."""
        path = self.resolve(name)
        with self._lock:
            if path in self._cache:
                return self._cache[path][0].has_chat_template()
            if path in self._templates:
                return self._templates[path]
        from transformers import AutoTokenizer

        from kick_hub.models import resolve as resolve_model

        try:
            found = bool(getattr(AutoTokenizer.from_pretrained(resolve_model(path)), "chat_template", None))
        except (OSError, ValueError, TypeError):
            found = False
        with self._lock:
            self._templates[path] = found
        return found

    def engine(self, name: str):
        """The cached engine for ``name`` (loaded once; the least recently used is dropped beyond CACHE_SIZE)."""
        from kick_hub.backends import make_engine

        path = self.resolve(name)
        with self._lock:
            if path not in self._cache:
                engine = make_engine(path, placement=self.placement, batch_size=1)
                self._cache[path] = (engine, threading.Lock())
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(path)
            return self._cache[path]


def on_gpu(fn):
    """``fn`` wrapped by ``spaces.GPU(duration=GPU_SECONDS)`` when the ``spaces`` package is importable (a Hub
    Space; on ZeroGPU hardware a function holds a GPU only while a call to it runs, and only when so wrapped; on
    other hardware the wrapper has no effect); ``fn`` itself otherwise (``kick space`` on any machine)."""
    if importlib.util.find_spec("spaces") is None:
        return fn
    import spaces

    return spaces.GPU(duration=GPU_SECONDS)(fn)


def featured_variants(variants: list[dict]) -> list[str]:
    """Labels of the variants a visitor sees first, at most ``MAX_PANES - 1``: the 50 % unstructured pruning
    variants (sweep order) and GPTQ 4-bit, where the loss of knowledge shows; without any of those, the variant
    whose sparsity is nearest 50 %, else the first one."""
    half = [v["label"] for v in variants if v.get("pattern") is None and v.get("sparsity") == 0.5]
    gptq4 = [v["label"] for v in variants if v.get("method") == "gptq" and v.get("bits") == 4][:1]
    featured = half[:MAX_PANES - 1 - len(gptq4)] + gptq4
    if featured or not variants:
        return featured
    pruned = [v for v in variants if v.get("sparsity") is not None]
    return [min(pruned, key=lambda v: abs(v["sparsity"] - 0.5))["label"] if pruned else variants[0]["label"]]


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
    from kick_hub import data

    out: dict = {}
    for source in sources:
        for name in COMPARE_TASKS:
            try:
                out.setdefault(source, {})[name] = data.load(name, source, per_task)
            except (ValueError, FileNotFoundError):
                continue
    return out


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


def check_whole(field: str, value, low: int, high: int) -> int:
    """``value`` as an int when it is a whole number in [low, high] (an integral float such as 12.0 counts, as
    gradio's Number and Slider send them); otherwise a ValueError naming ``field`` and the allowed range."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and value == int(value) and low <= value <= high)
    if not ok:
        raise ValueError(f"{field}: must be between {low} and {high} (a whole number), got {value!r}")
    return int(value)


def check_choice(field: str, value, allowed) -> str:
    """``value`` when it is one of ``allowed``; otherwise a ValueError naming ``field`` and the allowed values."""
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{field}: must be one of {allowed}, got {value!r}")
    return value


def check_flag(field: str, value) -> bool:
    """``value`` when it is a real bool (an API caller can send anything); raises ValueError naming ``field``
    otherwise (``1``, ``"true"`` and None included)."""
    if not isinstance(value, bool):
        raise ValueError(f"{field}: must be true or false, got {value!r}")
    return value


def check_prompt(prompt: str, max_new_tokens: int) -> int:
    """The Space's own limits on a comparison's text input, whatever the UI allows: a non-empty prompt of at most
    ``MAX_INPUT_CHARS`` characters and 1..``MAX_NEW_TOKENS`` new tokens (returned as an int)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: type a prompt or pick an example")
    if len(prompt) > MAX_INPUT_CHARS:
        raise ValueError(f"prompt: {len(prompt)} characters is over the limit of {MAX_INPUT_CHARS}; shorten it")
    return check_whole("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS)


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


# ------------------------------------------------------------------ per-token KL strip
KL_FULL = 1.0  # nats: a token's background is white at KL 0 and full red at KL_FULL nats or more (linear between)
KL_RGB = (220, 38, 38)  # the strip's red


def token_pieces(engine, text: str, ids: list[int]) -> list[str]:
    """The text of each token of ``ids`` (``engine.token_ids(text)``), from ``Backend.token_prefixes`` (a special
    token such as BOS, which the prefixes do not cover, is ``""``). Character offsets on fast tokenizers make the
    pieces join back into ``text``."""
    prefixes = engine.token_prefixes(text)
    special = len(ids) - (len(prefixes) - 1)  # tokens token_ids adds before the text's own (BOS)
    pieces = [""] * max(special, 0)
    for a, b in zip(prefixes[:-1], prefixes[1:]):
        pieces.append(b[len(a):] if b.startswith(a) else b)
    return (pieces + [""] * len(ids))[:len(ids)]


def output_kl(dense, variant, prompt: str, output: str, chat: bool) -> tuple[list[str], list[float]]:
    """Per-token KL(dense || variant) in nats over ``output`` (dense's greedy output of ``prompt``), teacher-forced:
    the rendered prompt (``dense.render(prompt, chat)``) plus the output run once through each model's
    ``next_token_logprobs``, and ``scoring.fidelity.token_kl`` at every position that predicts an output token.
    Returns ``(pieces, kl)``, one entry per output token (``token_pieces``), both empty for an empty output.
    ``dense`` and ``variant`` are ``Backend`` s. Raises ValueError (naming the field) when the two read the text as
    other tokens or over other vocabularies, or it does not fit a model's context."""
    from kick_hub.scoring.fidelity import token_kl

    rendered = dense.render(prompt, chat)
    text = rendered + output
    ids = dense.token_ids(text)
    if variant.token_ids(text) != ids:
        raise ValueError("variant: reads the text as other tokens than the base model (another tokenizer); a "
                         "per-token KL needs the same tokens")
    limit = min(dense.max_length, variant.max_length)
    if len(ids) > limit:
        raise ValueError(f"output: the prompt and output are {len(ids)} tokens, over the {limit}-token context")
    head = dense.token_ids(rendered)
    start = next((i for i, (a, b) in enumerate(zip(head, ids)) if a != b), min(len(head), len(ids)))
    start = max(start, 1)  # the first token has no prediction; a token merged across the boundary is output's
    if start >= len(ids):
        return [], []
    p = dense.next_token_logprobs([text])[0]
    q = variant.next_token_logprobs([text])[0]
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"variant: its vocabulary has {q.shape[-1]} tokens, the base model's {p.shape[-1]}")
    kl = token_kl(p[start - 1:len(ids) - 1], q[start - 1:len(ids) - 1])
    return token_pieces(dense, text, ids)[start:], [float(k) for k in kl]


def kl_strip_html(base: str, variant: str, pieces: list[str], kl: list[float]) -> str:
    """The heat-coloured strip of ``output_kl``: one ``<span class='kl-token'>`` per output token, its background
    red with opacity ``min(KL / KL_FULL, 1)`` (grey for a non-finite KL), a tooltip with the KL in nats, every
    text HTML-escaped; above it the mean KL over the tokens and the scale in words."""
    import html

    from kick_hub.io import format_number

    esc = html.escape
    head = f"KL({esc(base)} ‖ {esc(variant)}) per token of {esc(base)}'s output"
    if not pieces:
        return f"<div class='kl-strip'><b>{head}</b>: no output tokens to compare.</div>"
    finite = [k for k in kl if math.isfinite(k)]
    mean = sum(kl) / len(kl) if len(finite) == len(kl) else math.nan
    spans = []
    for piece, k in zip(pieces, kl):
        if math.isfinite(k):
            colour = "rgba({}, {}, {}, {:.3f})".format(*KL_RGB, min(max(k, 0.0) / KL_FULL, 1.0))
        else:
            colour = "#9ca3af"
        tip = f"{piece!r}: KL {format_number(k, '.4g')} nats"
        spans.append(f"<span class='kl-token' style='background:{colour}' title=\"{esc(tip, quote=True)}\">"
                     f"{esc(piece)}</span>")
    return (f"<div class='kl-strip'><div><b>{head}</b>: mean {format_number(mean, '.4g')} nats over "
            f"{len(kl)} tokens; colour: 0 nats white to {KL_FULL:g} nat or more full red (linear), hover a token "
            f"for its KL</div><div style='white-space:pre-wrap;font-family:monospace;line-height:1.6'>"
            + "".join(spans) + "</div></div>")


def kl_strips(models: Models, base: str, variants: list[str], prompt: str, output: str, task: str,
              prompt_format: str | None = None) -> str:
    """The KL strip endpoint: for the base model's output ``output`` of ``prompt`` (the first pane), one
    ``kl_strip_html`` per chosen variant (``output_kl`` of base against it), joined; empty without a variant. The
    inputs are checked as the Compare endpoint checks them (``check_compare``), ``output`` as text. Raises
    ValueError naming the field."""
    chosen, _, _, _, chat = check_compare(models, {}, base, variants, prompt, 1, "", task, 0, False, prompt_format)
    if not isinstance(output, str):
        raise ValueError(f"output: must be the base model's output text, got {output!r}")
    dense, dense_lock = models.engine(chosen[0])
    out = []
    for name in chosen[1:]:
        engine, lock = models.engine(name)
        first, second = (lock, dense_lock) if name < chosen[0] else (dense_lock, lock)
        with first, second:  # taken in the order of the names, so two strips never wait on each other
            pieces, kl = output_kl(dense, engine, prompt, output, chat)
        out.append(kl_strip_html(chosen[0], name, pieces, kl))
    return "\n".join(out)


def display_frame(frame):
    """A table for gradio, which sends a non-finite float as an empty cell: ``inf`` cells become the text ``∞`` /
    ``-∞`` (NaN stays empty: a missing value)."""
    from kick_hub.io import format_number

    def cell(v):
        return format_number(v) if isinstance(v, float) and math.isinf(v) else v

    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, float) and math.isinf(v)).any():
            frame[column] = frame[column].astype(object).map(cell)
    return frame


def results_sections(run_dir: str | Path | None) -> dict[str, tuple[str, list[str], list[list[str]]]]:
    """The report's own tables of a run dir (``bench.report.sections``: the same cells, significance marks and
    notes as report.md), title -> (note, header, rows of cells); empty without a run dir."""
    from kick_hub.bench import analysis, report

    if not run_dir or not (Path(run_dir) / FILENAME).exists():
        return {}
    rows, dense = _table_data(run_dir)
    names = [t for t in analysis.HEADLINE if t in dense]
    losses, significant = analysis.first_loss(rows, names), analysis.first_significant_loss(rows, names)
    return {title: (note, header, body) for title, note, header, body
            in report.sections(rows, dense, losses, significant)}


SCORES = "Scores"  # the title of the report's score table (``bench.report.sections``)
# the report's tables the Results tab shows below the scores (title -> element id)
BEYOND_ACCURACY = {"Flips against dense": "flips", "mcq-reasoning: recognition vs generation": "recognition",
                   "Distribution fidelity": "fidelity"}


def results_frame(run_dir: str | Path | None):
    """The sweep table as a DataFrame: the report's score table (``results_sections``), one row per variant and one
    column per task, each cell ``absolute ± standard error (relative to dense, * where the paired 95 % interval
    against dense excludes 0)``; empty without a run dir."""
    import pandas as pd

    sections = results_sections(run_dir)
    if SCORES not in sections:
        return pd.DataFrame()
    _, header, body = sections[SCORES]
    return pd.DataFrame(body, columns=header)


def sweep_figures(run_dir: str | Path | None) -> dict[str, object]:
    """The sweep report's figures of a run dir (``bench.plots.figures``: file name -> matplotlib Figure, the same
    drawing as its sparsity.png and nm_quant.png); empty without a run dir. Close each with ``close_figure``."""
    from kick_hub.bench import plots

    if not run_dir or not (Path(run_dir) / FILENAME).exists():
        return {}
    return plots.figures(_table_data(run_dir)[0])


def _table_data(run_dir: str | Path) -> tuple[list[dict], dict]:
    """``bench.analysis.table_data`` of the run dir's store, opened read-only."""
    from kick_hub.bench import analysis
    from kick_hub.bench.store import Store

    store = Store.open_readonly(run_dir)
    try:
        return analysis.table_data(store)
    finally:
        store.close()


def close_figure(fig) -> None:
    """Free a matplotlib figure once gradio has drawn it (``gr.Plot`` encodes it when built)."""
    import matplotlib.pyplot as plt

    plt.close(fig)


# the browser's columns (question, reference, dense, variant, dense score, variant score, id) as shares of the
# table's width: the texts get the room, wrapped in their cells (``CSS``), so nothing is cut at 1024 px
BROWSE_WIDTHS = ["26%", "13%", "16%", "16%", "10%", "10%", "9%"]
# every table's cells wrap (long ids too) and keep line breaks (an MCQ question's options, one a line); gradio's
# own cell rule is more specific than a class selector, hence !important
CSS = """
.kick-table span.text:not(.header) { white-space: pre-wrap !important; overflow-wrap: anywhere !important; }
.kick-table span.header { word-break: normal !important; overflow-wrap: anywhere !important; }
"""


PASSAGE_HEAD = 160  # characters of an in-context task's passage the browser shows before its question


def reference_text(reference) -> str:
    """A reference as plain text: a list of accepted answers joined with `` | ``, anything else as ``str``."""
    if isinstance(reference, (list, tuple)):
        return " | ".join(str(r) for r in reference)
    return "" if reference is None else str(reference)


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


LEADERBOARD_HEADERS = {"sparsity": "sparsity %", "pattern": "N:M", "knowledge_rel": "knowledge kept",
                       "perplexity_rel": "perplexity kept", "knowledge_collapse": "knowledge collapsed"}
METRIC_WORDS = {"exact_match": "exact match", "rougeL": "ROUGE-L"}


def task_header(task: str) -> str:
    """A task's column header: the task and its headline metric in words (``factoid-qa exact match``)."""
    metric = tasks.SPECS[task].metric
    return task if metric == task else f"{task} {METRIC_WORDS.get(metric, metric.replace('_', ' '))}"


def leaderboard_frame(run_dir: str | Path | None, results_repo: str | None = None):
    """Leaderboard rows from a results dataset repo or, without one, the run dir's store (one row per variant of a
    run; a ``run`` column, the run's id, when rows of several runs are shown); best knowledge first, under human
    headers (``LEADERBOARD_HEADERS``, ``task_header``), sparsity in whole percent, scores to 2
    decimals."""
    import pandas as pd

    from kick_hub.hub import results

    if results_repo:
        frame = results.load_results(results_repo).to_pandas()
    elif run_dir and (Path(run_dir) / FILENAME).exists():
        frame = pd.DataFrame(results.run_record(run_dir)[1]["rows"])
    else:
        return pd.DataFrame()
    runs = ["run"] if "run" in frame and frame["run"].nunique() > 1 else []  # rows of several runs: which is which
    keep = ["variant", "model", "method", "sparsity", "pattern", "bits", *runs, "knowledge_rel", "perplexity_rel",
            "knowledge_collapse", *[t for t in tasks.TASK_NAMES if t in frame and frame[t].notna().any()]]
    # a column no variant has a value in (N:M or bits in a sweep without such variants) is left out
    frame = frame[[c for c in keep if c in frame and (c not in ("pattern", "bits") or frame[c].notna().any())]]
    frame = frame.sort_values("knowledge_rel", ascending=False, na_position="last")
    def whole(column, scale=1):  # no "4.0" bits, no "0.5" sparsity: whole numbers, None where missing
        return pd.Series([None if pd.isna(v) else int(round(v * scale)) for v in column], index=column.index,
                         dtype=object)

    if "sparsity" in frame:
        frame["sparsity"] = whole(frame["sparsity"], 100)
    if "bits" in frame:
        frame["bits"] = whole(frame["bits"])
    if "knowledge_collapse" in frame:
        frame["knowledge_collapse"] = frame["knowledge_collapse"].map(lambda v: "yes" if v is True else "no")
    frame = frame.round(2).rename(columns={**LEADERBOARD_HEADERS, **{t: task_header(t) for t in tasks.TASK_NAMES}})
    return display_frame(frame.reset_index(drop=True))


def fit_widths(frame) -> list[str]:
    """Column widths (shares of the table's width, so the table fits its box at any window width) for a DataFrame,
    each column's share following its longest header word or cell text (between 5 and 16 characters, plus the
    cell's padding); a longer text wraps in its cell (``CSS``)."""
    def longest(column) -> int:
        words = str(column).split() or [""]
        cells = [len(str(v)) for v in frame[column] if v is not None and v == v]
        return min(max(5, *map(len, words), *cells), 16) + 3  # + 3: the cell's padding and menu button

    weights = [longest(c) for c in frame.columns]
    return [f"{100 * w / sum(weights):.2f}%" for w in weights]


NO_RUN_DIR = "No sweep results here: start the Space with `kick space --run-dir RUN_DIR`"


def build(run_dir: str | Path | None = None, allow: list[str] = (), data_sources: list[str] = ("world",),
          results_repo: str | None = None, placement: Placement | None = None):
    """The Gradio Blocks app (call ``.queue(...).launch(...)`` or use ``launch``); models load with ``placement``
    (``Models``) and a comparison's generation runs under ``on_gpu`` (ZeroGPU hardware)."""
    import gradio as gr
    import pandas as pd

    models = Models(run_dir, list(allow), placement)
    examples = load_examples(list(data_sources))
    names = list(models.choices)
    variant_names = [n for n in names if n not in ("dense", "world")]
    shown = models.featured or variant_names[:1]  # the variants compared by default

    def refuse(e: ValueError):
        """A refused input as gradio shows it: the message in the page, no server traceback in the log."""
        return gr.Error(str(e), print_exception=False)

    def pick_example(source: str, task: str, index: float):
        try:
            return example_prompt(examples, source, task, index)
        except ValueError as e:
            raise refuse(e) from None

    def offered_formats(chosen: list[str]) -> list[str]:
        """``CHAT`` is offered only when a chosen model's tokenizer has a chat template."""
        return list(PROMPT_FORMATS) if any(models.has_chat_template(n) for n in chosen) else [AS_TYPED]

    def format_update(base_name, variant_names, task_name, current, reset: bool):
        """The prompt-format radio for the chosen models: ``reset`` (a task or an example was picked) sets the
        task's own format (``task_format``), otherwise the current choice stays when still offered."""
        try:
            chosen = [base_name, *(variant_names or [])]
            offered = offered_formats([n for n in chosen if n in models.choices])
            wanted = task_format(task_name) if reset and task_name in COMPARE_TASKS else current
        except ValueError:
            return gr.update()
        return gr.update(choices=offered, value=wanted if wanted in offered else AS_TYPED)

    @on_gpu
    def generate(chosen: list[str], prompt: str, max_new_tokens: int, task: str | None, record: dict | None,
                 chat: bool):
        """The comparison's generation (``compare_stream``), under ``spaces.GPU`` on a Hub Space."""
        yield from compare_stream(models, chosen, prompt, max_new_tokens, task, record, chat)

    @on_gpu
    def teacher_force(base: str, variants: list[str], prompt: str, output: str, task: str, prompt_format: str):
        """The KL strips' forward passes (``kl_strips``), under ``spaces.GPU`` on a Hub Space."""
        return kl_strips(models, base, variants, prompt, output, task, prompt_format)

    def strip(base: str, variants: list[str], prompt: str, output: str, task: str, prompt_format: str | None = None):
        """The per-token KL strips under the outputs, once the comparison has finished (``kl_strips``)."""
        try:
            return teacher_force(base, variants, prompt, output, task, prompt_format)
        except ValueError as e:
            raise refuse(e) from None

    def compare(base: str, variants: list[str], prompt: str, max_new_tokens: float, source: str, task: str,
                index: float, from_example: bool, prompt_format: str | None = None):
        try:
            chosen, max_new_tokens, task, record, chat = check_compare(models, examples, base, variants, prompt,
                                                                       max_new_tokens, source, task, index,
                                                                       from_example, prompt_format)
            # loaded here, outside the GPU function (ZeroGPU's way: models are loaded in the main process, the GPU
            # is held only while ``generate`` runs); each pane says what its model read (``applied_format``)
            read = [applied_format(models.engine(name)[0], chat) for name in chosen]
            for texts, scores in generate(chosen, prompt, max_new_tokens, task, record, chat):
                boxes = []
                for i in range(MAX_PANES):
                    if i < len(chosen):
                        label = f"{chosen[i]} · {read[i]}" + (f" · score {scores[i]:.2f}" if scores else "")
                        boxes.append(gr.update(value=texts[i], label=label, visible=True))
                    else:
                        boxes.append(gr.update(value="", visible=False))
                yield boxes
        except ValueError as e:
            raise refuse(e) from None

    first_formats = offered_formats([names[0], *shown])
    with gr.Blocks(title="kick-hub: what compression does to an LLM's knowledge") as demo:
        gr.Markdown("# kick-hub\nDense and compressed models side by side on the LLM-KICK tasks: knowledge, "
                    "reasoning, in-context retrieval, summarization, instructions.")
        with gr.Tab("Compare"):
            with gr.Row():
                base = gr.Dropdown(names, value=names[0], label="base model")
                variants = gr.Dropdown(variant_names, value=shown, multiselect=True,
                                       label=f"compressed variants (up to {MAX_PANES - 1})", elem_id="variants")
            with gr.Row():
                source = gr.Dropdown([(source_label(s), s) for s in examples], value=next(iter(examples), None),
                                     label="examples from", elem_id="source")  # in the order given
                task = gr.Dropdown(list(COMPARE_TASKS), value=COMPARE_TASKS[0], label="task (its stop strings apply)",
                                   elem_id="task")
                index = gr.Number(value=0, precision=0, label="example #")
                load = gr.Button("Load example")
            prompt = gr.Textbox(lines=6, label="prompt", max_length=MAX_INPUT_CHARS * 2, elem_id="prompt")
            reference = gr.Textbox(label="reference answer", interactive=False)
            from_example = gr.Checkbox(value=False, label="score against the example's reference", visible=False)
            with gr.Row():
                fmt = gr.Radio(first_formats, value=task_format(COMPARE_TASKS[0]) if task_format(COMPARE_TASKS[0])
                               in first_formats else AS_TYPED, label="prompt format", elem_id="prompt-format",
                               info="what every model reads: the prompt exactly as typed, or wrapped in the model's "
                                    "chat template (offered when a chosen model has one); picking a task or an "
                                    "example sets the format kick evaluate gives that task")
                max_new = gr.Slider(1, MAX_NEW_TOKENS, value=32, step=1, label="max new tokens")
            run = gr.Button("Compare", variant="primary", elem_id="compare-button")
            with gr.Row():
                panes = [gr.Textbox(label=f"output {i + 1}", lines=6, visible=i < max(2, 1 + len(shown)),
                                    elem_id=f"pane-{i}")
                         for i in range(MAX_PANES)]
            # per-token KL(base || variant) over the base's output, filled in once both outputs are finished
            kl_html = gr.HTML("", elem_id="kl-strip")
            # the endpoints take their inputs raw (preprocess=False: the components' own checks would refuse with
            # a server traceback in the log) and check every one themselves, in kick's words (``refuse``)
            load.click(pick_example, [source, task, index], [prompt, reference], api_name="example",
                       preprocess=False).then(
                lambda: True, None, from_example, api_name=False).then(
                lambda b, v, t, f: format_update(b, v, t, f, True), [base, variants, task, fmt], fmt, api_name=False)
            task.input(lambda b, v, t, f: format_update(b, v, t, f, True), [base, variants, task, fmt], fmt,
                       api_name=False)
            for chooser in (base, variants):
                chooser.input(lambda b, v, t, f: format_update(b, v, t, f, False), [base, variants, task, fmt], fmt,
                              api_name=False)
            prompt.input(lambda: False, None, from_example, api_name=False)
            run.click(lambda: "", None, kl_html, api_name=False)  # a new comparison: the old strip goes
            run.click(compare, [base, variants, prompt, max_new, source, task, index, from_example, fmt], panes,
                      api_name="compare", preprocess=False).success(
                strip, [base, variants, prompt, panes[0], task, fmt], kl_html, api_name="kl_strip",
                preprocess=False)
        with gr.Tab("Results"):
            sweep = results_frame(run_dir)
            if not len(sweep):
                gr.Markdown(NO_RUN_DIR, elem_id="results-empty")
            table = gr.Dataframe(sweep, label="sweep: headline metric per task", interactive=False,
                                 visible=bool(len(sweep)), wrap=True, pinned_columns=1, elem_id="results-table",
                                 elem_classes="kick-table",
                                 column_widths=fit_widths(sweep) if len(sweep) else None)
            if len(sweep):
                gr.Markdown(results_sections(run_dir)[SCORES][0], elem_id="results-note")
            # beyond accuracy: answers that flipped against dense, and mcq-reasoning's recognition vs generation
            for title, (note, header, body) in results_sections(run_dir).items():
                if title in BEYOND_ACCURACY:
                    gr.Markdown(f"**{title}**: {note}")
                    gr.Dataframe(display_frame(pd.DataFrame(body, columns=header)), interactive=False, wrap=True,
                                 elem_classes="kick-table", elem_id=f"results-{BEYOND_ACCURACY[title]}")
            # the report's own figures (``plots.figures``): the same markers, bands, colours and legends as
            # sparsity.png and nm_quant.png, each drawn whole at its column's width
            for name, fig in sweep_figures(run_dir).items():
                gr.Plot(fig, show_label=False, elem_id=f"plot-{Path(name).stem}", elem_classes="kick-plot")
                close_figure(fig)
            with gr.Row():  # every scored variant: the browser reads the store, not the variant's weights
                b_variant = gr.Dropdown(models.scored, value=next((n for n in [*shown, *models.scored]
                                                                     if n in models.scored), None),
                                        label="variant", elem_id="browse-variant")
                b_task = gr.Dropdown(list(COMPARE_TASKS), value=COMPARE_TASKS[0], label="task")
                b_only = gr.Checkbox(value=True, label="only dense right, variant wrong")
                b_say = gr.Checkbox(value=False, label="only 'knows it but cannot say it' (mcq-reasoning under "
                                    "both protocols: right by log-likelihood, wrong by generation)")
            b_go = gr.Button("Show examples")
            b_note = gr.Markdown("Pick a variant and a task, then **Show examples** to read dense and variant "
                                 "outputs side by side.", elem_id="browse-note")
            b_out = gr.Dataframe(interactive=False, wrap=True, visible=False, elem_id="browse-table",
                                 elem_classes="kick-table", column_widths=BROWSE_WIDTHS)

            def do_browse(label, task_name, only, cannot_say=False):
                try:
                    return browse(run_dir, label, task_name, only, cannot_say)
                except ValueError as e:
                    raise refuse(e) from None

            def browse_note(frame, label, task_name, only, cannot_say=False):
                """The table only when it has rows; otherwise a sentence saying what was looked for."""
                which = f"where dense is right and {label} wrong" if only else f"scored for dense and {label}"
                if cannot_say:
                    which += f", {label} right by log-likelihood and wrong by generation"
                if len(frame):
                    return gr.update(visible=True), f"{len(frame)} {task_name} example{'s' * (len(frame) > 1)} {which}."
                return gr.update(visible=False), f"No {task_name} examples {which}."

            b_go.click(do_browse, [b_variant, b_task, b_only, b_say], b_out, api_name="browse",
                       preprocess=False).success(browse_note, [b_out, b_variant, b_task, b_only, b_say],
                                                 [b_out, b_note], api_name=False)
            refresh = gr.Button("Reload table", size="sm")
            refresh.click(lambda: results_frame(run_dir), None, table, api_name="results")
        with gr.Tab("Leaderboard"):
            board = leaderboard_frame(run_dir, results_repo)
            if not len(board):
                gr.Markdown(NO_RUN_DIR + " or `--results-repo ORG/NAME`", elem_id="leaderboard-empty")
            lb = gr.Dataframe(board, label="sorted by knowledge kept (relative to dense); click a header to re-sort",
                              interactive=False, visible=bool(len(board)), elem_id="leaderboard", wrap=True,
                              pinned_columns=1 if len(board) else None, elem_classes="kick-table",
                              column_widths=fit_widths(board) if len(board) else None)
            if len(board):
                scatter = board.rename(columns={"perplexity kept": "perplexity_kept", "knowledge kept": "knowledge"})
                def pad(column):  # room around the dots, so none sits on the chart's edge
                    values = scatter[column].dropna()
                    return [values.min() - 0.02, values.max() + 0.02] if len(values) else None

                gr.ScatterPlot(scatter, x="perplexity_kept", y="knowledge", color="method",
                               x_lim=pad("perplexity_kept"), y_lim=pad("knowledge"), tooltip="all",
                               title="knowledge kept vs perplexity kept (1.0 = dense)",
                               x_title="perplexity kept (dense / variant)", y_title="knowledge kept")
            lb_refresh = gr.Button("Reload", size="sm")
            lb_refresh.click(lambda: leaderboard_frame(run_dir, results_repo), None, lb, api_name="leaderboard")
    return demo


def check_run_dir(run_dir: str | Path | None) -> None:
    """Check that ``run_dir`` (when given) holds a ``kick bench`` results store (``bench.store.FILENAME``); returns
    None, raises ValueError otherwise."""
    from kick_hub.bench.store import FILENAME

    if run_dir and not (Path(run_dir) / FILENAME).exists():
        raise ValueError(f"run-dir: {run_dir} holds no {FILENAME} (run `kick bench --run-dir "
                         f"{run_dir}` first)")


def launch(run_dir: str | Path | None = None, host: str = "127.0.0.1", port: int | None = None,
           allow: list[str] = (), data_sources: list[str] = ("world",), results_repo: str | None = None,
           block: bool = True, placement: Placement | None = None):
    """Build, queue (bounded) and serve the app; returns (demo, local URL). ``placement`` is where every model the
    app loads goes (``models.load_model``; None: its default)."""
    demo = build(run_dir, allow, data_sources, results_repo, placement)
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    _, url, _ = demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block,
                            show_error=True, css=CSS)  # the charts are drawn from tables: no file of the run dir is served
    return demo, url


def from_env() -> dict:
    """Settings of the deployed Space (``build``'s keyword arguments) from its variables: KICK_RUN_DIR, KICK_ALLOW
    (comma-separated repo ids), KICK_DATA (comma-separated sources), KICK_RESULTS_REPO, and KICK_DEVICE /
    KICK_DTYPE for the placement (default ``auto`` / ``auto``: the GPU and the checkpoint's dtype on GPU hardware,
    float32 on the CPU); a bad KICK_DEVICE / KICK_DTYPE raises ValueError naming ``device`` / ``dtype`` and the
    allowed values."""
    from kick_hub.device import make_placement

    split = lambda v: [x.strip() for x in v.split(",") if x.strip()]  # noqa: E731
    return {"run_dir": os.environ.get("KICK_RUN_DIR") or None, "allow": split(os.environ.get("KICK_ALLOW", "")),
            "data_sources": split(os.environ.get("KICK_DATA", "world")),
            "results_repo": os.environ.get("KICK_RESULTS_REPO") or None,
            "placement": make_placement(os.environ.get("KICK_DEVICE") or "auto",
                                        os.environ.get("KICK_DTYPE") or "auto")}
