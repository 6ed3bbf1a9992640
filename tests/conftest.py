"""Test setup: offline Hugging Face stack, a private cache, and the shared real-data folder when it exists."""

import os
import tempfile
from pathlib import Path

for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                   "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false",
                   "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(key, value)
os.environ.setdefault("KICK_HUB_CACHE", tempfile.mkdtemp(prefix="kick-hub-test-cache-"))

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
STORIES260K = SHARED / "models" / "stories260K"
# The bound on every wait for an event in a browser or Space test (an element appears, a text changes, a job
# ends): it only catches a hang, never judges speed, since the first request also loads the models (seconds on an
# idle machine, minutes on a busy one).
HANG_S = 600
HANG_MS = HANG_S * 1000


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def stories260k() -> Path:
    if not (STORIES260K / "model.safetensors").exists():
        pytest.skip("../shared/models/stories260K is not present")
    return STORIES260K


@pytest.fixture()
def hub():
    """A fresh loopback Hub (tests/hub_server.py) on 127.0.0.1 for one test, its token ``tests.kick_runner.TOKEN``;
    run ``kick`` against it with ``tests.kick_runner.hub_kick`` and the real clients with ``client``."""
    from tests.hub_server import HubServer
    from tests.kick_runner import TOKEN

    with HubServer(token=TOKEN) as server:
        yield server


@pytest.fixture(scope="session")
def world_engine():
    from kick_hub.engine import Engine

    return Engine.from_name("world", batch_size=32)


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """A real little sweep of the world model (dense + magnitude 70 %) with its report, for the Hub and Space."""
    from kick_hub.bench import plan, report, sweep

    run_dir = tmp_path_factory.mktemp("run")
    cells = plan.plan(["magnitude"], [0.7], [], [])
    store = sweep.run("world", run_dir, cells, ["factoid-qa", "mcq-reasoning", "perplexity"], limit=24,
                      progress=False)
    report.write(store, run_dir)
    store.close()
    return run_dir


@pytest.fixture(scope="module")
def app(small_run):
    """The Space on 127.0.0.1 over ``small_run`` (one per test module): (url, run dir, gradio Blocks)."""
    from kick_hub import space

    demo, url = space.launch(small_run, port=None, block=False)
    yield url, small_run, demo
    demo.close()


@pytest.fixture(scope="module")
def client(app):
    """A ``gradio_client.Client`` of ``app``."""
    from gradio_client import Client

    return Client(app[0], verbose=False)
