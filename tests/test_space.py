"""The Space: launched on 127.0.0.1 and driven through its endpoints with gradio_client, then in headless
Chromium (Playwright with Debian's /usr/bin/chromium)."""

import os
import re
import shutil
from collections import OrderedDict
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from kick_hub import space, tasks  # noqa: E402
from kick_hub.engine import Engine  # noqa: E402
from kick_hub.tasks import records  # noqa: E402
from tests.conftest import HANG_MS, HANG_S  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_compare_streams_identical_greedy_outputs_with_scores(client, app):
    record = records.load("factoid-qa", "world", space.EXAMPLES_PER_TASK)[2]
    prompt, reference = client.predict("world", "factoid-qa", 2, api_name="/example")
    assert prompt == tasks.get("factoid-qa").prompt(record) and "answer" in prompt
    assert record["answers"][0] in reference
    job = client.submit("dense", ["magnitude-70"], prompt, 12, "world", "factoid-qa", 2, True, space.AS_TYPED,
                        api_name="/compare")
    final = job.result(timeout=HANG_S)  # the first request loads the models: a bound that only catches a hang
    assert len(job.outputs()) >= 2  # partial updates arrived before the final one
    spec = tasks.get("factoid-qa").SPEC
    paths = {"dense": "world", "magnitude-70": str(app[1] / "variants" / "magnitude-70")}
    for pane, (name, path) in zip(final, paths.items()):
        expected = Engine.from_name(path).generate([prompt], 12, spec.stop)[0]
        assert pane["value"] == expected  # the same greedy continuation as the batch engine
        assert pane["label"] == f"{name} · as typed · score {tasks.get('factoid-qa').score([record], [expected])[1][0]['score']:.2f}"
    assert final[2]["visible"] is False and final[3]["visible"] is False


def test_edited_prompt_is_not_scored(client):
    final = client.predict("dense", [], "The capital of Zelmor is", 8, "world", "factoid-qa", 0, False,
                           api_name="/compare")
    assert final[0]["label"] == "dense · as typed" and final[0]["value"]


def test_oversized_input_gets_a_clear_message(client):
    with pytest.raises(Exception, match="characters is over the limit of 6000"):
        client.predict("dense", [], "x" * 6001, 8, "world", "factoid-qa", 0, False, api_name="/compare")
    long_prompt = "Tell me about the town. " * 200  # 4,800 characters, far beyond the world model's 512 tokens
    with pytest.raises(Exception, match="exceed dense's context of 512 tokens"):
        client.predict("dense", [], long_prompt, 8, "world", "factoid-qa", 0, False, api_name="/compare")
    with pytest.raises(Exception, match="max_new_tokens: must be between 1 and 256"):  # the handler's own check
        client.predict("dense", [], "Hi", 999, "world", "factoid-qa", 0, False, api_name="/compare")
    with pytest.raises(ValueError, match="max_new_tokens: must be between 1 and 256"):  # the library's check
        space.check_prompt("Hi", 999)


def _compare(models, examples, **over):
    args = {"base": "dense", "variants": ["magnitude-70"], "prompt": "Hi", "max_new_tokens": 8, "source": "world",
            "task": "factoid-qa", "index": 0, "from_example": False, **over}
    return next(space.compare_outputs(models, examples, **args))


COMPARE_LIMITS = [
    ({"max_new_tokens": 100000}, "max_new_tokens: must be between 1 and 256 (a whole number), got 100000"),
    ({"max_new_tokens": 0}, "max_new_tokens: must be between 1 and 256"),
    ({"max_new_tokens": 12.5}, "max_new_tokens: must be between 1 and 256 (a whole number), got 12.5"),
    ({"max_new_tokens": float("nan")}, "max_new_tokens: must be between 1 and 256"),
    ({"max_new_tokens": True}, "max_new_tokens: must be between 1 and 256"),
    ({"max_new_tokens": "12"}, "max_new_tokens: must be between 1 and 256"),
    ({"prompt": ""}, "prompt: type a prompt or pick an example"),
    ({"prompt": None}, "prompt: type a prompt or pick an example"),
    ({"prompt": "x" * 6001}, "prompt: 6001 characters is over the limit of 6000"),
    ({"base": "/etc"}, "base: must be one of ['dense', 'magnitude-70', 'org/a', 'org/b', 'org/c'], got '/etc'"),
    ({"variants": ["../model"]}, "variants: must be one of"),
    ({"variants": "magnitude-70"}, "variants: must be a list of model names"),
    ({"variants": ["magnitude-70", "org/a", "org/b", "org/c"]}, "variants: at most 3 beside the base model, got 4"),
    ({"from_example": "yes"}, "from_example: must be true or false, got 'yes'"),
    ({"from_example": True, "source": "nowhere"}, "source: must be one of ['world'], got 'nowhere'"),
    ({"from_example": True, "task": "perplexity"}, "task: must be one of ['factoid-qa', 'mcq-reasoning'"),
    ({"task": "perplexity"}, "task: must be one of ['factoid-qa', 'mcq-reasoning'"),
    ({"prompt_format": "markdown"}, "prompt_format: must be one of ['as typed (no template)', 'chat template'], "
                                    "got 'markdown'"),
    ({"from_example": True, "index": 50}, "index: must be between 0 and 49 (a whole number), got 50"),
    ({"from_example": True, "index": -1}, "index: must be between 0 and 49"),
    ({"from_example": True, "index": 1.5}, "index: must be between 0 and 49 (a whole number), got 1.5"),
    ({"from_example": True, "index": None}, "index: must be between 0 and 49 (a whole number), got None"),
]


@pytest.mark.parametrize("over, message", COMPARE_LIMITS, ids=[m.split(":")[0] + str(i)
                                                                for i, (_, m) in enumerate(COMPARE_LIMITS)])
def test_compare_limits_in_kicks_words_without_the_ui(app, over, message):
    """The handler itself refuses what the UI's slider, dropdowns and number box would, before any model loads."""
    models = space.Models(app[1], ["org/a", "org/b", "org/c"])
    examples = space.load_examples(["world"])
    with pytest.raises(ValueError) as err:
        _compare(models, examples, **over)
    assert message in str(err.value)
    assert models._cache == OrderedDict()


@pytest.mark.parametrize("args, message", [
    (("hub", "factoid-qa", 0), "source: must be one of ['world'], got 'hub'"),
    (("world", "essay", 0), "task: must be one of ['factoid-qa'"),
    (("world", "factoid-qa", 999), "index: must be between 0 and 49 (a whole number), got 999"),
    (("world", "factoid-qa", 2.5), "index: must be between 0 and 49 (a whole number), got 2.5"),
])
def test_example_limits(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        space.example_prompt(space.load_examples(["world"]), *args)


@pytest.mark.parametrize("args, message", [
    (("magnitude-70", "perplexity", True), "task: must be one of ['factoid-qa'"),
    (("nope", "factoid-qa", True), "variant: must be one of ['dense', 'magnitude-70'], got 'nope'"),
    (("magnitude-70", "factoid-qa", "yes"), "only_regressions: must be true or false, got 'yes'"),
])
def test_browse_limits(app, args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        space.browse(app[1], *args)


def test_registered_handlers_answer_in_kicks_words(app, client):
    """The app's own event handlers (what an API call reaches after gradio's preprocessing) turn the checks into a
    gr.Error with the same words; where no component bound intercepts (the example number), so does the client."""
    fns = {f.api_name: f.fn for f in app[2].fns.values()}
    with pytest.raises(gr.Error, match=re.escape("max_new_tokens: must be between 1 and 256 (a whole number), got "
                                                 "100000")):
        next(fns["compare"]("dense", [], "Hi", 100000, "world", "factoid-qa", 0, False, space.AS_TYPED))
    with pytest.raises(gr.Error, match=re.escape("index: must be between 0 and 49")):
        fns["example"]("world", "factoid-qa", 999)
    with pytest.raises(gr.Error, match=re.escape("task: must be one of")):
        fns["browse"]("magnitude-70", "poetry", True)
    with pytest.raises(Exception, match=re.escape("index: must be between 0 and 49 (a whole number), got 999")):
        client.predict("world", "factoid-qa", 999, api_name="/example")
    with pytest.raises(Exception, match=re.escape("index: must be between 0 and 49 (a whole number), got 999")):
        client.predict("dense", [], "Hi", 8, "world", "factoid-qa", 999, True, api_name="/compare")


def test_queue_is_bounded(app):
    demo = app[2]
    assert (demo._queue.max_size, demo._queue.default_concurrency_limit) == (space.QUEUE_SIZE, space.CONCURRENCY)


def test_only_offered_models_load():
    models = space.Models(None, ["org/allowed-model"])
    assert sorted(models.choices) == ["org/allowed-model", "world"]
    with pytest.raises(ValueError, match="model: '/etc' is not offered here; choose one of"):
        models.engine("/etc")
    with pytest.raises(ValueError, match="allow: "):
        space.Models(None, ["../not/a/repo"])


def test_results_table_and_regression_browser(client, app):
    table = client.predict(api_name="/results")
    labels = [row[0] for row in table["data"]]
    assert labels == ["dense", "magnitude-70"] and table["headers"][:2] == ["variant", "factoid-qa (exact_match)"]
    rows = client.predict("magnitude-70", "factoid-qa", True, api_name="/browse")
    from kick_hub.bench.store import Store

    store = Store(app[1], None)
    dense, variant = store.samples("dense", "factoid-qa"), store.samples("magnitude-70", "factoid-qa")
    store.close()
    expected = [d["id"] for d, v in zip(dense, variant) if d["score"] >= 0.5 > v["score"]]
    assert rows["headers"] == ["question", "reference", "dense", "magnitude-70", "dense score",
                               "magnitude-70 score", "id"]
    assert [r[-1] for r in rows["data"]] == expected
    everything = client.predict("magnitude-70", "factoid-qa", False, api_name="/browse")
    assert len(everything["data"]) == len(dense)


def test_leaderboard_sorted_by_knowledge_with_perplexity_beside(client):
    board = client.predict(api_name="/leaderboard")
    col = board["headers"].index("knowledge kept")
    assert "perplexity kept" in board["headers"] and "factoid-qa exact match" in board["headers"]
    assert not [h for h in board["headers"] if "_" in h]  # human headers, not the dataset's field names
    values = [r[col] for r in board["data"]]
    assert values == sorted(values, reverse=True) and len(values) == 2
    sparsity = board["headers"].index("sparsity %")
    assert [r[sparsity] for r in board["data"]] == [None, 70]  # whole percent, empty for dense
    assert all(round(v, 2) == v for r in board["data"] for v in r if isinstance(v, float))


def _variant(label, method, sparsity=None, pattern=None, bits=None):
    return {"label": label, "method": method, "sparsity": sparsity, "pattern": pattern, "bits": bits}


def test_featured_variants_show_the_story():
    """The 50 % variants and GPTQ 4-bit first (at most MAX_PANES - 1), else the sparsity nearest 50 %."""
    sweep = [_variant("magnitude-10", "magnitude", 0.1), _variant("magnitude-50", "magnitude", 0.5),
             _variant("magnitude-2of4", "magnitude", 0.5, "2:4"), _variant("wanda-50", "wanda", 0.5),
             _variant("sparsegpt-50", "sparsegpt", 0.5), _variant("gptq-8bit", "gptq", bits=8),
             _variant("gptq-4bit", "gptq", bits=4)]
    assert space.featured_variants(sweep) == ["magnitude-50", "wanda-50", "gptq-4bit"]
    assert space.featured_variants(sweep[:4]) == ["magnitude-50", "wanda-50"]
    assert space.featured_variants([sweep[0], _variant("wanda-70", "wanda", 0.7)]) == ["wanda-70"]
    assert space.featured_variants([sweep[5]]) == ["gptq-8bit"] and space.featured_variants([]) == []


def test_sources_are_named_in_words():
    assert space.source_label("world") == "the synthetic world (built in)"
    assert space.source_label("hub:org/kick-data") == "Hub dataset org/kick-data"
    assert space.source_label("../shared/data") == "local files: shared/data"
    assert "../" not in space.source_label("../../x/y/z")


def test_sweep_figures_are_the_reports(app):
    """The Results tab shows the report's own figures: the same axes and legend entries as sparsity.png."""
    from kick_hub.bench import analysis, plots
    from kick_hub.bench.store import Store

    figs = space.sweep_figures(app[1])
    store = Store(app[1], None)
    rows, _ = analysis.table_data(store)
    store.close()
    again = plots.figures(rows)
    assert list(figs) == list(again) == ["sparsity.png"]
    legend = [t.get_text() for t in figs["sparsity.png"].legends[0].get_texts()]
    assert legend == [t.get_text() for t in again["sparsity.png"].legends[0].get_texts()]
    for fig in [*figs.values(), *again.values()]:
        space.close_figure(fig)
    assert space.sweep_figures(None) == {}


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)")
def test_browser_runs_a_comparison(app, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    url = app[0]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(HANG_MS)  # every wait is for an event; the bound only catches a hang
        page.goto(url)
        page.get_by_role("button", name="Load example").click()
        page.wait_for_function("document.querySelector('textarea') && document.querySelector('textarea').value"
                               ".includes('answer')", timeout=HANG_MS)
        page.locator("#compare-button").click()
        page.wait_for_function("[...document.querySelectorAll('#pane-1 span, #pane-1 label')]"
                               ".some(e => e.textContent.includes('score'))", timeout=HANG_MS)
        shot = tmp_path / "space.png"
        page.screenshot(path=str(shot), full_page=True)
        text = page.locator("#pane-0 textarea").input_value()
        browser.close()
    assert text and shot.stat().st_size > 10_000


@pytest.fixture(scope="module")
def sweep_app(tmp_path_factory):
    """A sweep with something to show (10 % and 50 % unstructured, 2:4) served with a second example source
    given as a relative path, as `kick space --data world ../shared/data` would be."""
    from kick_hub.bench import plan, report, sweep
    from kick_hub.world.export import data_dir

    run_dir = tmp_path_factory.mktemp("sweep")
    store = sweep.run("world", run_dir, plan.plan(["magnitude"], [0.1, 0.5], ["2:4"], []),
                      ["factoid-qa", "perplexity"], limit=8, progress=False)
    report.write(store, run_dir)
    store.close()
    demo, url = space.launch(run_dir, port=None, data_sources=["world", os.path.relpath(data_dir())], block=False)
    yield url, run_dir
    demo.close()


def _chromium(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"])


# every chart of the Results tab (the report's figures as images): drawn, inside its box and at least 300 px wide
PLOTS_WHOLE = """() => [...document.querySelectorAll('.kick-plot')].map(el => {
    const box = el.getBoundingClientRect(), img = el.querySelector('img');
    if (!img || !img.naturalWidth) return {id: el.id, drawn: false};
    const r = img.getBoundingClientRect();
    return {id: el.id, drawn: true, width: r.width,
            inBox: r.left >= box.left - 1 && r.right <= box.right + 1 && r.top >= box.top - 1
                   && r.bottom <= box.bottom + 1, contentInside: r.right <= window.innerWidth + 1};
})"""
# any image shown at another aspect ratio than its own, or cut by object-fit: cover
IMAGES_CROPPED = """() => [...document.querySelectorAll('img')].filter(i => i.naturalWidth && i.offsetWidth).filter(i =>
    getComputedStyle(i).objectFit === 'cover'
    || Math.abs(i.offsetWidth / i.offsetHeight - i.naturalWidth / i.naturalHeight) > 0.02).map(i => i.src)"""


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)")
def test_browser_shows_the_sweep_whole_and_in_words(sweep_app, tmp_path):
    """What a visitor sees on each tab: the 50 % variant chosen, sources in words, every chart whole, human
    leaderboard headers, an empty browser that says what to do (screenshots under $KICK_SPACE_SHOTS if set)."""
    playwright = pytest.importorskip("playwright.sync_api")
    shots = Path(os.environ.get("KICK_SPACE_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = _chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(HANG_MS)  # every wait is for an event; the bound only catches a hang
        page.goto(sweep_app[0])
        page.wait_for_selector("#variants")
        page.screenshot(path=str(shots / "compare.png"), full_page=True)
        chosen = page.locator("#variants").inner_text()
        source = page.locator("#source input").input_value()
        compare_text = page.locator("body").inner_text()
        page.locator("#source input").click()
        options = page.get_by_role("option").all_inner_texts()
        page.keyboard.press("Escape")

        page.get_by_role("tab", name="Results").click()
        page.wait_for_function("[...document.querySelectorAll('.kick-plot img')].filter(i => i.naturalWidth)"
                               ".length >= 3", timeout=HANG_MS)
        plots, cropped = page.evaluate(PLOTS_WHOLE), page.evaluate(IMAGES_CROPPED)
        browse_variant = page.locator("#browse-variant input").input_value()
        note = page.locator("#browse-note").inner_text()
        empty_table = page.locator("#browse-table").count()
        page.screenshot(path=str(shots / "results.png"), full_page=True)
        page.get_by_role("button", name="Show examples").click()
        page.wait_for_function("document.querySelector('#browse-note').innerText.includes('where dense is right')",
                               timeout=HANG_MS)
        after_note = page.locator("#browse-note").inner_text()
        shown = page.locator("#browse-table").count()
        page.screenshot(path=str(shots / "results-browsed.png"), full_page=True)
        results_text = page.locator("body").inner_text()

        page.get_by_role("tab", name="Leaderboard").click()
        page.wait_for_selector("#leaderboard th")
        headers = [h.strip().rstrip("⋮").strip() for h in page.locator("#leaderboard th").all_inner_texts()]
        page.screenshot(path=str(shots / "leaderboard.png"), full_page=True)
        browser.close()

    assert "magnitude-50" in chosen and "magnitude-10" not in chosen  # the default variant shows a loss
    assert browse_variant == "magnitude-50"
    assert source == "the synthetic world (built in)" and any(o.startswith("local files: ") for o in options)
    for text in (compare_text, results_text, *options):
        assert "../" not in text and "./" not in text  # no path as typed
    assert {p["id"] for p in plots} == {"plot-sparsity", "plot-nm_quant", "plot-signals"}  # signals: 2+ variants
    for plot in plots:
        assert plot["drawn"] and plot["inBox"] and plot["contentInside"] and plot["width"] > 300, plot
    assert cropped == []
    assert empty_table == 0 and "Show examples" in note  # before use: a sentence, no headless "1 2 3" table
    assert re.match(r"(\d+|No) factoid-qa examples? where dense is right and magnitude-50 wrong", after_note)
    assert shown == (0 if after_note.startswith("No ") else 1)
    assert {"variant", "sparsity %", "N:M", "knowledge kept", "perplexity kept", "knowledge collapsed",
            "factoid-qa exact match"} <= set(headers)
    assert not [h for h in headers if "_" in h]


@pytest.fixture(scope="module")
def thinned_run(tmp_path_factory):
    """A sweep whose variants were partly deleted, as `kick bench --keep-variants none|pushed` does: magnitude-70's
    directory is gone and magnitude-30's lost its manifest; only magnitude-50 is kept."""
    from kick_hub.bench import plan, sweep
    from kick_hub.variant import MANIFEST

    run_dir = tmp_path_factory.mktemp("thinned")
    sweep.run("world", run_dir, plan.plan(["magnitude"], [0.3, 0.5, 0.7], [], []), ["factoid-qa"], limit=4,
              progress=False).close()
    shutil.rmtree(run_dir / "variants" / "magnitude-70")
    (run_dir / "variants" / "magnitude-30" / MANIFEST).unlink()
    return run_dir


def test_only_kept_variants_are_offered(thinned_run):
    models = space.Models(thinned_run)
    assert sorted(models.choices) == ["dense", "magnitude-50"]
    assert models.scored == ["magnitude-30", "magnitude-50", "magnitude-70"] and models.featured == ["magnitude-50"]
    with pytest.raises(ValueError, match=re.escape("model: 'magnitude-70' is not offered here; choose one of "
                                                   "['dense', 'magnitude-50']")):
        models.engine("magnitude-70")
    rows = space.browse(thinned_run, "magnitude-70", "factoid-qa", False)  # its scored outputs stay browsable
    assert len(rows) == 4 and "magnitude-70 score" in rows.columns
    demo = space.build(thinned_run)
    dropdowns = {b.elem_id: [value for _, value in b.choices] for b in demo.blocks.values()
                 if isinstance(b, gr.Dropdown) and b.elem_id in ("variants", "browse-variant")}
    assert dropdowns == {"variants": ["magnitude-50"],
                         "browse-variant": ["magnitude-30", "magnitude-50", "magnitude-70"]}


def test_space_without_run_dir_builds():
    """The published Space's usual case (no KICK_RUN_DIR): the world model and the allowlist, empty results."""
    demo = space.build(None, ["org/allowed-model"])
    variants = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.elem_id == "variants")
    assert [value for _, value in variants.choices] == ["org/allowed-model"]


def test_placement_reaches_every_model_load():
    """Models load with the Space's placement: on CPU in float32 with the library's outputs; a device that is not
    there is refused in kick's words before anything is cached."""
    import torch

    from kick_hub.device import Placement

    models = space.Models(None, placement=Placement(device="cpu", dtype="float32"))
    engine, _ = models.engine("world")
    assert engine.device == torch.device("cpu") and engine.model.dtype == torch.float32
    assert (list(engine.stream("The capital of Zelmor is", 6))[-1]
            == Engine.from_name("world").generate(["The capital of Zelmor is"], 6)[0])
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: nothing to refuse")
    models = space.Models(None, placement=Placement(device="cuda"))
    with pytest.raises(ValueError, match="device: "):
        models.engine("world")
    assert models._cache == OrderedDict()


def test_gpu_wrapper_is_a_no_op_without_spaces():
    """Without the spaces package (anywhere but a Hub Space) the comparison handler is the function itself;
    tests/test_publish_space.py runs the published app with a real stand-in spaces module."""
    import importlib.util

    if importlib.util.find_spec("spaces") is not None:
        pytest.skip("a spaces package is installed here")

    def handler():
        yield 1

    assert space.on_gpu(handler) is handler
