"""The Gradio app: ``build`` (the Compare, Results and Leaderboard tabs wired to the handlers of the other
modules), ``launch`` (``kick space``) and ``from_env`` (the Hub Space's settings from its variables)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from kick_hub.space.browse import browse
from kick_hub.space.compare import (AS_TYPED, PROMPT_FORMATS, applied_format, check_compare, compare_stream,
                                    task_format)
from kick_hub.space.examples import example_prompt, load_examples, source_label
from kick_hub.space.kl import kl_strips
from kick_hub.space.leaderboard import leaderboard_frame
from kick_hub.space.limits import (COMPARE_TASKS, CONCURRENCY, MAX_INPUT_CHARS, MAX_NEW_TOKENS, MAX_PANES,
                                   QUEUE_SIZE)
from kick_hub.space.models import Models, on_gpu
from kick_hub.space.results import (BEYOND_ACCURACY, SCORES, close_figure, results_frame, results_sections,
                                    sweep_figures)
from kick_hub.space.tables import BROWSE_WIDTHS, CSS, display_frame, fit_widths

if TYPE_CHECKING:
    from kick_hub.device import Placement

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
