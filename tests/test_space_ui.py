"""The Space's reading surfaces: the per-example browser (question, reference, answers, scores, readable at 1024 px),
the sweep table with the report's significance marks, the prompt format (as typed or chat template), refused inputs
without server tracebacks, the report's figures, and the variant card's world text and plots."""

import os
import shutil
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from kick_hub import space, tasks  # noqa: E402
from kick_hub.bench import analysis, plots, report  # noqa: E402
from kick_hub.bench.store import Store  # noqa: E402
from kick_hub.engine import Engine  # noqa: E402
from kick_hub.tasks import records as task_records  # noqa: E402
from tests.conftest import HANG_MS  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian chromium is not installed (apt-get install chromium)")
WAIT_MS = HANG_MS  # only catches a hang: every wait is for an event, never a verdict on timing


# ---------------------------------------------------------------- what a browser row shows
@pytest.mark.parametrize("task", space.COMPARE_TASKS)
def test_question_text_is_the_question_not_the_prompt(task):
    """Every comparable task's stored prompt reads back as its question: MCQ's final question with its options and
    no solved examples, the in-context tasks' passage head and question or instruction."""
    from kick_hub.tasks.mcq_reasoning import mcq_prompt

    records = task_records.load(task, "world", 3)
    for record in records:
        prompt = tasks.get(task).prompt(record)
        shown = space.question_text(task, prompt)
        if task == "mcq-reasoning":
            assert record["fewshot"] and shown == mcq_prompt(record["question"], record["options"]).removesuffix(
                "Answer:").strip()
            assert "Answer:" not in shown and "multiple choice questions" not in shown
        elif task == "icra-qa":
            assert shown.endswith("Q: " + record["question"].strip())
            assert shown.startswith(" ".join(record["context"].split())[:40]) and len(shown) < len(prompt)
        elif task == "icsum":
            assert shown.startswith(" ".join(record["story"].split())[:40])
            assert shown.endswith(tasks.SPECS[task].prompts["prompt"].rsplit("}", 1)[-1].strip())
            assert len(shown) <= space.PASSAGE_HEAD + len(tasks.SPECS[task].prompts["prompt"])
        else:
            assert shown == record["question"].strip()


def test_reference_is_plain_text():
    assert space.reference_text(["1951", "nineteen fifty-one"]) == "1951 | nineteen fifty-one"
    assert space.reference_text("B") == "B" and space.reference_text(None) == ""


@pytest.mark.parametrize("task", ["factoid-qa", "mcq-reasoning"])
def test_browse_shows_question_reference_answers_then_scores(small_run, task):
    frame = space.browse(small_run, "magnitude-70", task, False)
    assert list(frame.columns) == ["question", "reference", "dense", "magnitude-70", "dense score",
                                   "magnitude-70 score", "id"]
    store = Store(small_run, None)
    dense = [s for s in store.samples("dense", task) if isinstance(s.get("score"), (int, float))]
    store.close()
    assert list(frame["question"]) == [space.question_text(task, s["prompt"]) for s in dense]
    assert list(frame["reference"]) == [space.reference_text(s["reference"]) for s in dense]
    assert not frame["reference"].str.startswith("[").any() and not frame["question"].str.contains("Answer:").any()


# ---------------------------------------------------------------- the sweep table
def test_sweep_table_is_the_reports_score_table_with_its_marks(small_run):
    """The Space's table is report.md's score table, cell for cell: a ``*`` exactly where the report's paired
    comparison (``stats.Paired.significant``) says so."""
    frame = space.results_frame(small_run)
    store = Store(small_run, None)
    rows, dense = analysis.table_data(store)
    store.close()
    names = [t for t in analysis.HEADLINE if t in dense]
    assert list(frame.columns) == ["variant"] + [f"{t} ({analysis.HEADLINE[t]})" for t in names] + list(
        report.FIDELITY_COLUMNS)  # the sweep ran perplexity: KL from dense and top-1 agreement beside the scores
    for row, cells in zip(rows, frame.itertuples(index=False)):
        assert cells[0] == row["label"]
        for t, cell in zip(names, cells[1:]):
            p = row["paired"].get(t)
            assert cell.endswith("*)") == bool(p is not None and p.low is not None and p.significant), (t, cell)
    md = (small_run / "report.md").read_text()
    for cells in frame.itertuples(index=False):
        assert "| " + " | ".join(cells) + " |" in md  # the very row report.md shows


# ---------------------------------------------------------------- the prompt format
def test_pasted_task_prompt_gives_kick_evaluates_output():
    """A prompt typed (or pasted) by hand reads as the selected task's own prompt by default: the factoid prompt
    gives exactly what ``kick evaluate`` (the task's ``run``) generated for it, and the chat template only when
    chosen."""
    models, examples = space.Models(None), space.load_examples(["world"])
    record = task_records.load("factoid-qa", "world", 1)[0]
    prompt = tasks.get("factoid-qa").prompt(record)
    engine = models.engine("world")[0]
    _, samples = tasks.get("factoid-qa").run(engine, [record])

    def output(prompt_format):
        *_, (chosen, texts, scores) = space.compare_outputs(
            models, examples, "world", [], prompt, 16, "world", "factoid-qa", 0, False, prompt_format)
        return texts[0]

    assert output(None) == output(space.AS_TYPED) == samples[0]["output"] and samples[0]["output"]
    spec = tasks.SPECS["factoid-qa"]
    templated = engine.generate([prompt], 16, spec.stop, chat=True)[0]
    assert output(space.CHAT) == templated != samples[0]["output"]
    for name, spec in tasks.SPECS.items():  # each task's default is the format kick evaluate gives it
        if name in space.COMPARE_TASKS:
            assert space.task_format(name) == (space.CHAT if spec.chat else space.AS_TYPED)


def test_format_in_the_app_says_what_each_model_read(client, app):
    """Through the endpoint: the pane says the format its model read; without a prompt format the task's own."""
    record = task_records.load("factoid-qa", "world", 1)[0]
    prompt = tasks.get("factoid-qa").prompt(record)
    typed = client.predict("dense", [], prompt, 16, "world", "factoid-qa", 0, False, space.AS_TYPED,
                           api_name="/compare")
    chat = client.predict("dense", [], prompt, 16, "world", "factoid-qa", 0, False, space.CHAT, api_name="/compare")
    assert typed[0]["label"] == "dense · as typed" and chat[0]["label"] == "dense · chat template"
    engine = Engine.from_name("world")
    stop = tasks.SPECS["factoid-qa"].stop
    assert typed[0]["value"] == engine.generate([prompt], 16, stop)[0]
    assert chat[0]["value"] == engine.generate([prompt], 16, stop, chat=True)[0]
    fns = {f.api_name: f.fn for f in app[2].fns.values()}
    default = list(fns["compare"]("dense", [], prompt, 16, "world", "factoid-qa", 0, False))[-1]
    assert default[0]["label"] == "dense · as typed" and default[0]["value"] == typed[0]["value"]


def test_chat_template_is_offered_only_when_a_model_has_one():
    models = space.Models(None)
    assert models.has_chat_template("world") is True
    engine = models.engine("world")[0]
    assert space.applied_format(engine, False) == "as typed"
    assert space.applied_format(engine, True) == "chat template"
    saved = engine.tokenizer.chat_template
    engine.tokenizer.chat_template = None  # the same engine, as a model without a template loads
    try:
        assert space.applied_format(engine, True) == "as typed (no chat template)"
        assert models.has_chat_template("world") is False
    finally:
        engine.tokenizer.chat_template = saved
    demo = space.build(None)
    radio = next(b for b in demo.blocks.values() if isinstance(b, gr.Radio) and b.elem_id == "prompt-format")
    assert [value for _, value in radio.choices] == list(space.PROMPT_FORMATS)
    assert radio.value == space.task_format(space.COMPARE_TASKS[0])


# ---------------------------------------------------------------- refused inputs
def test_refused_inputs_leave_no_server_traceback(client, capfd):
    """A refused input is a message for the user, not a server fault: no traceback in the log."""
    capfd.readouterr()
    with pytest.raises(Exception, match="index: must be between 0 and 49"):
        client.predict("world", "factoid-qa", 999, api_name="/example")
    with pytest.raises(Exception, match="index: must be between 0 and 49"):
        client.predict("dense", [], "Hi", 8, "world", "factoid-qa", 999, True, space.AS_TYPED, api_name="/compare")
    with pytest.raises(Exception, match="prompt_format: must be one of"):
        client.predict("dense", [], "Hi", 8, "world", "factoid-qa", 0, False, "html", api_name="/compare")
    with pytest.raises(Exception, match="max_new_tokens: must be between 1 and 256"):  # beyond the slider's bound
        client.predict("dense", [], "Hi", 999, "world", "factoid-qa", 0, False, space.AS_TYPED, api_name="/compare")
    with pytest.raises(Exception, match="base: must be one of"):  # not one of the dropdown's choices
        client.predict("/etc", [], "Hi", 8, "world", "factoid-qa", 0, False, space.AS_TYPED, api_name="/compare")
    with pytest.raises(Exception, match="variant: must be one of"):
        client.predict("nope", "factoid-qa", True, api_name="/browse")
    with pytest.raises(Exception, match="task: must be one of"):
        client.predict("magnitude-70", "poetry", True, api_name="/browse")
    log = capfd.readouterr()
    assert "Traceback" not in log.err + log.out and "ValueError" not in log.err + log.out


# ---------------------------------------------------------------- the report's figures
def _row(label, method, rel, sparsity=None, pattern=None, bits=None):
    return {"label": label, "method": method, "sparsity": sparsity, "pattern": pattern, "bits": bits,
            "rel": rel, "paired": {}}


ROWS = [_row("dense", "dense", {"factoid-qa": 1.0, "perplexity": 1.0}),
        _row("magnitude-50", "magnitude", {"factoid-qa": 0.7, "perplexity": 0.97}, 0.5),
        _row("wanda-50", "wanda", {"factoid-qa": 0.8, "perplexity": 0.98}, 0.5),
        _row("magnitude-2of4", "magnitude", {"factoid-qa": 0.5, "perplexity": 0.9}, 0.5, "2:4"),
        _row("gptq-4bit", "gptq", {"factoid-qa": 0.9, "perplexity": 0.99}, bits=4)]


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_figures_keep_legends_off_the_data_and_say_what_they_show():
    import matplotlib.pyplot as plt

    figs = plots.figures(ROWS)
    try:
        for name, fig in figs.items():
            fig.canvas.draw()
            renderer = fig.canvas.get_renderer()
            legend = fig.legends[0].get_window_extent(renderer)
            for ax in fig.axes:
                assert not _overlaps(legend, ax.get_window_extent(renderer)), name  # below the axes, not on them
        sparsity = figs["sparsity.png"]
        labels = [t.get_text() for t in sparsity.legends[0].get_texts()]
        assert labels == ["factoid-qa", "perplexity (dense / variant)", "0.95 of dense (a 5% loss)"]
        assert "hides" not in sparsity._suptitle.get_text()
        colours = {line.get_label(): line.get_color() for ax in sparsity.axes for line in ax.get_lines()}
        assert colours["factoid-qa"] == plots.TASK_COLOURS["factoid-qa"]
        assert [line.get_marker() for line in sparsity.axes[0].get_lines()[:2]] == ["o", "o"]
        bars = figs["nm_quant.png"].axes[0]
        assert bars.get_title().startswith("N:M sparsity and quantization")
    finally:
        for fig in figs.values():
            plt.close(fig)
    only_quant = plots.figures([r for r in ROWS if r["pattern"] is None])
    only_nm = plots.figures([r for r in ROWS if r["bits"] is None])
    try:
        assert only_quant["nm_quant.png"].axes[0].get_title().startswith("quantization")
        assert only_nm["nm_quant.png"].axes[0].get_title().startswith("N:M sparsity:")
    finally:
        for fig in [*only_quant.values(), *only_nm.values()]:
            plt.close(fig)


def test_not_measured_is_not_the_colour_of_a_failed_claim(small_run):
    page = (small_run / "report.html").read_text()
    assert "<b class='unmeasured'>not measured</b>" in page and ".unmeasured{color:#57606a}" in page
    assert "<b class='not'>not measured</b>" not in page


# ---------------------------------------------------------------- the variant card
def test_card_says_what_world_is_and_shows_only_its_own_plot(small_run):
    from kick_hub.hub.card import WORLD_MODEL_TEXT, plot_for, variant_card

    card = variant_card(small_run / "variants" / "magnitude-70", "org/world-magnitude-70", small_run,
                        plots=["plots/sparsity.png", "plots/nm_quant.png"])
    text = str(card)
    assert WORLD_MODEL_TEXT in text and "docs/world-model.md" in text and str(small_run) not in text
    assert "![sparsity](plots/sparsity.png)" in text and "nm_quant" not in text
    assert plot_for({"method": "magnitude", "sparsity": 0.5, "pattern": "2:4"}) == "nm_quant.png"
    assert plot_for({"method": "gptq", "bits": 4}) == "nm_quant.png"
    assert plot_for({"method": "wanda", "sparsity": 0.5, "pattern": None}) == "sparsity.png"


# ---------------------------------------------------------------- readable at common widths
# each named header's box and every cell of its column: inside the viewport and not cut (no hidden overflow)
CELLS_SEEN = """(names) => {
    const root = document.querySelector('#browse-table');
    const heads = [...root.querySelectorAll('th')].filter(th => th.getBoundingClientRect().width > 0);
    return names.map(name => {
        const th = heads.find(h => (h.getAttribute('title') || h.innerText).trim() === name);
        if (!th) return {name, found: false};
        const r = th.getBoundingClientRect();
        const spans = [...root.querySelectorAll('span.text:not(.header)')].filter(s => {
            const b = s.getBoundingClientRect();
            return b.width > 0 && Math.abs(b.left - r.left) < r.width / 2;
        });
        return {name, found: true, left: r.left, right: r.right, width: r.width, viewport: window.innerWidth,
                cells: spans.length,
                cut: spans.filter(s => s.scrollWidth > s.clientWidth + 1).map(s => s.innerText.slice(0, 40))};
    });
}"""


@needs_chromium
@pytest.mark.parametrize("width", [1024, 1400])
def test_browser_columns_are_readable_in_the_viewport(app, width, tmp_path):
    """At common window widths the browser's question, reference, dense and variant columns, the sweep table and the
    leaderboard sit inside the window, their text wrapped rather than cut (screenshots under $KICK_SPACE_SHOTS if
    set)."""
    playwright = pytest.importorskip("playwright.sync_api")
    shots = Path(os.environ.get("KICK_SPACE_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": width, "height": 1000})
        page.set_default_timeout(WAIT_MS)  # clicks and fills wait for their element as long
        page.goto(app[0])
        page.get_by_role("tab", name="Results").click()
        page.wait_for_selector("#results-table th", timeout=WAIT_MS)
        table = page.evaluate("""() => { const t = document.querySelector('#results-table table');
            const r = t.getBoundingClientRect(); return {right: r.right, width: window.innerWidth}; }""")
        page.locator("#results-table").screenshot(path=str(shots / f"sweep-table-{width}.png"))
        page.get_by_label("task", exact=True).last.click()
        page.get_by_role("option", name="mcq-reasoning").click()
        page.get_by_label("only dense right, variant wrong").uncheck()
        page.get_by_role("button", name="Show examples").click()
        page.wait_for_function("document.querySelector('#browse-note').innerText.includes('mcq-reasoning')",
                               timeout=WAIT_MS)
        page.wait_for_selector("#browse-table span.text:not(.header)", timeout=WAIT_MS)
        seen = page.evaluate(CELLS_SEEN, ["question", "reference", "dense", "magnitude-70"])
        first = page.locator("#browse-table span.text:not(.header)").first.inner_text()
        page.locator("#browse-table").screenshot(path=str(shots / f"browse-mcq-{width}.png"))
        page.get_by_role("tab", name="Leaderboard").click()
        page.wait_for_selector("#leaderboard th", timeout=WAIT_MS)
        board = page.evaluate("""() => { const t = document.querySelector('#leaderboard table');
            const r = t.getBoundingClientRect(); return {right: r.right, width: window.innerWidth}; }""")
        page.locator("#leaderboard").screenshot(path=str(shots / f"leaderboard-{width}.png"))
        browser.close()
    assert table["right"] <= table["width"]  # the whole sweep table in the window: no sideways scrolling
    assert board["right"] <= board["width"]  # and the leaderboard
    for column in seen:
        assert column["found"] and column["cells"] > 0, column
        assert 0 <= column["left"] and column["right"] <= column["viewport"], column
        assert column["width"] >= 80 and column["cut"] == [], column
    assert "\nA. " in first and "Answer:" not in first  # the question with its options, one a line


@needs_chromium
def test_picking_a_task_sets_its_own_prompt_format(app):
    """In the page: choosing a task sets the format kick evaluate gives it (icsum: the chat template; factoid-qa:
    as typed), and the radio shows it."""
    playwright = pytest.importorskip("playwright.sync_api")
    checked = "document.querySelector('#prompt-format input:checked') && " \
              "document.querySelector('#prompt-format input:checked').value === {!r}"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1024, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        page.goto(app[0])
        page.wait_for_function(checked.format(space.AS_TYPED), timeout=WAIT_MS)
        for task in ("icsum", "factoid-qa"):
            page.locator("#task input").click()
            page.get_by_role("option", name=task, exact=True).click()
            page.wait_for_function(checked.format(space.task_format(task)), timeout=WAIT_MS)
        offered = page.locator("#prompt-format input").evaluate_all("els => els.map(e => e.value)")
        browser.close()
    assert space.task_format("icsum") == space.CHAT and offered == list(space.PROMPT_FORMATS)
