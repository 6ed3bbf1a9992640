"""kick push / publish-tasks / push-results against the loopback Hub (tests/hub_server.py), with the real
huggingface_hub, transformers, evaluate and datasets clients in subprocesses whose HF_ENDPOINT points at it."""

import hashlib
import json

import pytest

from tests.hub_server import HubServer
from tests.kick_runner import TOKEN, client, hub_kick

REPO = "test-org/world-magnitude-70"


def digest(folder) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def puts(hub: HubServer) -> int:
    return sum(1 for method, path in hub.requests if method == "PUT")


ROUNDTRIP = """
import torch
from huggingface_hub import ModelCard, snapshot_download
from transformers import AutoModelForCausalLM, AutoTokenizer

local = {variant!r}
remote = AutoModelForCausalLM.from_pretrained({repo!r})
tok = AutoTokenizer.from_pretrained({repo!r})
ids = tok(["Please give answer to this question: Where was Kelma Loro born?"], return_tensors="pt")["input_ids"]
same = torch.equal(remote(ids).logits, AutoModelForCausalLM.from_pretrained(local)(ids).logits)
snap = snapshot_download({repo!r})
card = ModelCard.load({repo!r})
emit({{"same_logits": same, "files": sorted(__import__("os").listdir(snap)), "tags": card.data.tags,
       "metrics": [(r.task_name, r.metric_type, r.metric_value) for r in card.data.eval_results],
       "text": card.text}})
"""


@pytest.mark.parametrize("mode", ["lfs", "regular"])
def test_push_variant_round_trip(hub, small_run, mode):
    """LFS path (client without Xet) and the server answering uploadMode "regular" (client with Xet on)."""
    hub.upload_mode = mode
    env = {"HF_HUB_DISABLE_XET": None} if mode == "regular" else None
    variant = small_run / "variants" / "magnitude-70"
    before = digest(variant)
    out = hub_kick(hub, "push", str(variant), "--repo-id", REPO, "--run-dir", str(small_run), env=env)
    assert f"{hub.url}/{REPO}/commit/" in out.stdout
    assert len(hub.commits(REPO)) == 2  # creation + exactly one upload commit
    files = hub.files(REPO)
    assert {"config.json", "model.safetensors", "kick_manifest.json", "tokenizer.json", "README.md",
            "plots/sparsity.png"} <= set(files)
    assert (("model.safetensors" in hub.lfs_files(REPO)) == (mode == "lfs"))
    assert all(TOKEN.encode() not in data for data in files.values())
    got = client(hub, ROUNDTRIP.format(variant=str(variant), repo=REPO), env=env)
    assert got["same_logits"] is True
    assert {"llm-kick", "pruned", "magnitude", "sparsity-70"} <= set(got["tags"])
    tasks = {name for name, _, _ in got["metrics"]}
    assert tasks == {"factoid-qa", "mcq-reasoning", "perplexity"}
    assert "| factoid-qa (knowledge) | exact_match |" in got["text"] and "![sparsity](plots/sparsity.png)" in got["text"]
    assert f'from_pretrained("{REPO}")' in got["text"]
    assert "\nkick compress --model world --method magnitude --sparsity 0.7 --output DIR\n" in got["text"]
    assert digest(variant) == before  # the local variant is untouched


@pytest.mark.parametrize("fault", ["500", "drop"])
def test_failed_push_keeps_both_sides_and_rerun_uploads_only_changes(hub, small_run, fault):
    hub.upload_mode = "lfs"
    variant = small_run / "variants" / "magnitude-70"
    before = digest(variant)
    hub.create_repo(REPO)
    first = hub.commits(REPO)
    hub.fail_next("/commit/", fault)
    out = hub_kick(hub, "push", str(variant), "--repo-id", REPO, expect=1)
    message = out.stderr.strip().splitlines()[-1]
    assert message.startswith(f"kick: error: push of {variant} to {REPO} failed at {hub.url}")
    assert "untouched" in message and "previous commit" in message and "re-run" in message
    assert hub.commits(REPO) == first and digest(variant) == before
    uploaded = puts(hub)
    assert uploaded >= 1  # the weights reached LFS storage before the commit failed
    hub_kick(hub, "push", str(variant), "--repo-id", REPO)
    assert len(hub.commits(REPO)) == len(first) + 1
    assert puts(hub) == uploaded  # the retry did not upload the weights again
    hub_kick(hub, "push", str(variant), "--repo-id", REPO)
    assert len(hub.commits(REPO)) == len(first) + 1 and puts(hub) == uploaded  # unchanged: nothing to commit


def test_bad_input_is_refused_before_any_request(hub, small_run, tmp_path):
    variant = small_run / "variants" / "magnitude-70"
    out = hub_kick(hub, "push", str(variant), "--repo-id", "bad id/x", expect=2)
    assert "repo-id: 'bad id/x' is not a valid Hub repo id" in out.stderr
    out = hub_kick(hub, "push", str(variant), "--repo-id", "no-slash", expect=2)
    assert "repo-id: must be ORG/NAME" in out.stderr
    out = hub_kick(hub, "push", str(tmp_path), "--repo-id", REPO, expect=2)
    assert "not a saved model directory" in out.stderr
    out = hub_kick(hub, "push", str(variant), "--repo-id", REPO, env={"HF_TOKEN": None}, expect=1)
    assert "token: no Hugging Face token found" in out.stderr
    out = hub_kick(hub, "publish-tasks", "--org", "a/b", expect=2)
    assert "org: must be an organisation" in out.stderr
    out = hub_kick(hub, "bench", "--push", "bad org", "--limit", "1", expect=2)
    assert "push: 'bad org/x' is not a valid Hub repo id" in out.stderr
    assert hub.requests == []


def test_wrong_token_is_a_clear_error_without_the_token(hub, small_run):
    out = hub_kick(hub, "push", str(small_run / "variants" / "magnitude-70"), "--repo-id", REPO,
                   env={"HF_TOKEN": "hf_wrong_token_abcdef"}, expect=1)
    assert "failed at" in out.stderr and "401" in out.stderr and "hf_wrong_token_abcdef" not in out.stderr


METRIC = """
import evaluate

remote = evaluate.load("llmkick/{task}")
local = evaluate.load({local!r})
emit({{"remote": remote.compute(**{args}), "local": local.compute(**{args}), "name": remote.name}})
"""


def test_published_tasks_load_with_evaluate(hub):
    out = hub_kick(hub, "publish-tasks", "--org", "llmkick")
    spaces = [line.split(":")[0] for line in out.stdout.splitlines()]
    assert len(spaces) == 6 and "llmkick/factoid-qa" in spaces
    files = hub.files("llmkick/factoid-qa", "space")
    assert {"factoid-qa.py", "kick_qa.py", "app.py", "README.md", "requirements.txt"} <= set(files)
    assert b"sdk: gradio" in files["README.md"]
    from tests.conftest import ROOT

    cases = {"factoid-qa": {"predictions": ["Paris", "Rome"], "references": [["Paris", "paris city"], ["Oslo"]]},
             "mcq-reasoning": {"predictions": ["A", "C", "B"], "references": ["A", "B", "B"]}}
    for task, args in cases.items():
        local = ROOT / "evaluate_metrics" / task.replace("-", "_")
        got = client(hub, METRIC.format(task=task, local=str(local), args=args))
        assert got["remote"] == got["local"], task
    again = hub_kick(hub, "publish-tasks", "--org", "llmkick", "--tasks", "factoid-qa")
    assert "llmkick/factoid-qa" in again.stdout
    assert len(hub.commits("llmkick/factoid-qa", "space")) == 2  # unchanged module: no new commit


READ_RESULTS = """
from kick_hub.hub.results import load_results
from kick_hub.space import leaderboard_frame

rows = load_results("test-org/kick-results")
board = leaderboard_frame(None, "test-org/kick-results")
emit({"n": len(rows), "columns": rows.column_names, "variants": list(rows["variant"]),
      "factoid": list(rows["factoid-qa"]), "board": board["variant"].tolist()})
"""


def test_results_dataset_round_trip(hub, small_run):
    from kick_hub.hub.results import run_record

    out = hub_kick(hub, "push-results", str(small_run), "--repo-id", "test-org/kick-results")
    path, record = run_record(small_run)
    assert out.stdout.strip() == path and path.startswith("results/world/run_")
    assert json.loads(hub.files("test-org/kick-results", "dataset")[path]) == json.loads(json.dumps(record))
    got = client(hub, READ_RESULTS)
    assert got["n"] == 2 and sorted(got["variants"]) == ["dense", "magnitude-70"]
    assert got["factoid"] == pytest.approx([r["factoid-qa"] for r in record["rows"]])  # pyarrow parses JSON floats
    assert {"knowledge_rel", "perplexity_rel", "knowledge_collapse"} <= set(got["columns"])
    assert len(got["board"]) == 2


def test_bench_push_pushes_every_variant(hub, tmp_path):
    run_dir = tmp_path / "run"
    hub_kick(hub, "bench", "--run-dir", str(run_dir), "--methods", "magnitude", "--sparsities", "0.5", "--patterns",
             "2:4", "--bits", "--tasks", "factoid-qa", "perplexity", "--limit", "8", "--push", "test-org",
             "--results-repo", "test-org/kick-results")
    for label in ("magnitude-50", "magnitude-2of4"):
        files = hub.files(f"test-org/world-{label}")
        assert "model.safetensors" in files and b"llm-kick" in files["README.md"]
    assert any(p.startswith("results/world/") for p in hub.files("test-org/kick-results", "dataset"))
