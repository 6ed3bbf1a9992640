"""The Space: launched on 127.0.0.1 and driven through its endpoints with gradio_client, then in headless
Chromium (Playwright with Debian's /usr/bin/chromium)."""

import shutil
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

from kick_hub import data, space, tasks  # noqa: E402
from kick_hub.engine import Engine  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def app(small_run):
    demo, url = space.launch(small_run, port=None, block=False)
    yield url, small_run, demo
    demo.close()


@pytest.fixture(scope="module")
def client(app):
    return Client(app[0], verbose=False)


def test_compare_streams_identical_greedy_outputs_with_scores(client, app):
    record = data.load("factoid", "world", space.EXAMPLES_PER_TASK)[2]
    prompt, reference = client.predict("world", "factoid-qa", 2, api_name="/example")
    assert prompt == tasks.get("factoid-qa").prompt(record) and "answer" in prompt
    assert record["answers"][0] in reference
    job = client.submit("dense", ["magnitude-70"], prompt, 12, "world", "factoid-qa", 2, True, api_name="/compare")
    final = job.result(timeout=120)
    assert len(job.outputs()) >= 2  # partial updates arrived before the final one
    spec = tasks.get("factoid-qa").SPEC
    paths = {"dense": "world", "magnitude-70": str(app[1] / "variants" / "magnitude-70")}
    for pane, (name, path) in zip(final, paths.items()):
        expected = Engine.from_name(path).generate([prompt], 12, spec.stop)[0]
        assert pane["value"] == expected  # the same greedy continuation as the batch engine
        assert pane["label"] == f"{name} · score {tasks.get('factoid-qa').score(record, expected):.2f}"
    assert final[2]["visible"] is False and final[3]["visible"] is False


def test_edited_prompt_is_not_scored(client):
    final = client.predict("dense", [], "The capital of Zelmor is", 8, "world", "factoid-qa", 0, False,
                           api_name="/compare")
    assert final[0]["label"] == "dense" and final[0]["value"]


def test_oversized_input_gets_a_clear_message(client):
    with pytest.raises(Exception, match="characters is over the limit of 6000"):
        client.predict("dense", [], "x" * 6001, 8, "world", "factoid-qa", 0, False, api_name="/compare")
    long_prompt = "Tell me about the town. " * 200  # 4,800 characters, far beyond the world model's 512 tokens
    with pytest.raises(Exception, match="exceed dense's context of 512 tokens"):
        client.predict("dense", [], long_prompt, 8, "world", "factoid-qa", 0, False, api_name="/compare")
    with pytest.raises(Exception, match="greater than maximum value 256"):  # the slider's own bound
        client.predict("dense", [], "Hi", 999, "world", "factoid-qa", 0, False, api_name="/compare")
    with pytest.raises(ValueError, match="max_new_tokens: must be between 1 and 256"):  # the library's check
        space.check_prompt("Hi", 999)


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
    assert labels == ["dense", "magnitude-70"] and "factoid-qa rel" in table["headers"]
    rows = client.predict("magnitude-70", "factoid-qa", True, api_name="/browse")
    from kick_hub.bench.store import Store

    store = Store(app[1], None)
    dense, variant = store.samples("dense", "factoid-qa"), store.samples("magnitude-70", "factoid-qa")
    store.close()
    expected = [d["id"] for d, v in zip(dense, variant) if d["score"] >= 0.5 > v["score"]]
    assert [r[0] for r in rows["data"]] == expected
    everything = client.predict("magnitude-70", "factoid-qa", False, api_name="/browse")
    assert len(everything["data"]) == len(dense)


def test_leaderboard_sorted_by_knowledge_with_perplexity_beside(client):
    board = client.predict(api_name="/leaderboard")
    col = board["headers"].index("knowledge_rel")
    assert "perplexity_rel" in board["headers"]
    values = [r[col] for r in board["data"]]
    assert values == sorted(values, reverse=True) and len(values) == 2


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)")
def test_browser_runs_a_comparison(app, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    url = app[0]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.get_by_role("button", name="Load example").click()
        page.wait_for_function("document.querySelector('textarea') && document.querySelector('textarea').value"
                               ".includes('answer')", timeout=30000)
        page.locator("#compare-button").click()
        page.wait_for_function("[...document.querySelectorAll('#pane-1 span, #pane-1 label')]"
                               ".some(e => e.textContent.includes('score'))", timeout=60000)
        shot = tmp_path / "space.png"
        page.screenshot(path=str(shot), full_page=True)
        text = page.locator("#pane-0 textarea").input_value()
        browser.close()
    assert text and shot.stat().st_size > 10_000
