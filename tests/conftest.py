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
