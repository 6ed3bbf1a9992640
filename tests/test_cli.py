"""The `kick` command end to end: once as a user runs it (``python -m kick_hub.cli`` in a fresh interpreter), the
rest through the same ``main`` in this process (tests/kick_runner.py)."""

import json

import pytest

from tests.kick_runner import kick


def test_help_lists_commands():
    out = kick("--help", check=True, subprocess=True)
    for command in ("world", "evaluate"):
        assert command in out.stdout


def test_world_info_json():
    data = json.loads(kick("world", "info", "--json", check=True).stdout)
    assert {"model_dir", "params", "scores"} <= set(data)
    assert 1_000_000 < data["params"] < 10_000_000
    assert data["scores"]["factoid-qa"]["exact_match"] >= 0.90
    assert {"mcq-reasoning", "icra-qa", "factoid-qa-heldout"} <= set(data["scores"])
    assert data["world"]["known_people"] == 240
    assert "parameters" in kick("world", "info", check=True).stdout


def test_world_build_writes_loadable_sets(tmp_path):
    kick("world", "build", "--output", str(tmp_path / "w"), "--seed", "5", "--n-known", "30", "--n-unseen", "20",
         check=True)
    manifest = json.loads((tmp_path / "w" / "world.json").read_text())
    assert manifest["config"]["seed"] == 5 and manifest["sizes"]["known_people"] == 30
    from kick_hub.tasks import records

    assert len(records.load("factoid-qa", str(tmp_path / "w"))) == manifest["sizes"]["known_facts"]


def test_evaluate_reproduces_shipped_scores(tmp_path):
    """`kick evaluate` on the full world sets gives exactly the numbers recorded beside the shipped model."""
    from kick_hub.engine import WORLD_MODEL_DIR

    recorded = json.loads((WORLD_MODEL_DIR / "scores.json").read_text())["scores"]
    out_file = tmp_path / "res.json"
    out = kick("evaluate", "--task", "factoid-qa", "mcq-reasoning", "icra-qa", "--output", str(out_file),
               check=True)
    assert "factoid-qa" in out.stdout and "exact_match" in out.stdout
    result = json.loads(out_file.read_text())
    assert set(result) == {"results", "config", "samples"}
    for task in ("factoid-qa", "mcq-reasoning", "icra-qa"):
        for metric, value in recorded[task].items():
            assert result["results"][task][metric] == pytest.approx(value, abs=1e-9), (task, metric)
    sample = result["samples"]["factoid-qa"][0]
    assert {"prompt", "output", "reference", "score"} <= set(sample)
    assert result["config"]["model"] == "world" and result["config"]["protocol"] == "default"


def test_evaluate_llm_kick_protocol_and_limit(tmp_path):
    out_file = tmp_path / "r.json"
    kick("evaluate", "--task", "all", "--limit", "4", "--protocol", "llm-kick", "--output", str(out_file),
         check=True)
    result = json.loads(out_file.read_text())
    assert set(result["results"]) == {"factoid-qa", "mcq-reasoning", "icra-qa", "icsum", "instruction-following",
                                      "perplexity"}
    assert all(r["n"] == 4 for r in result["results"].values())


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--task", "riddles"], "task: must be one of"),
    (["evaluate", "--limit", "0"], "must be a positive integer"),
    (["evaluate", "--protocol", "strict"], "invalid choice"),
    (["evaluate", "--output", "/proc/nope/out.json"], "not writable"),
    (["evaluate", "--data", "/no/such/dir", "--task", "factoid-qa"], "data:"),
    (["evaluate", "--model", "/no/such/model", "--task", "factoid-qa"], "model: no such directory: '/no/such/model'"),
    (["world", "info", "--seed", "-1"], "non-negative"),
    (["world", "build", "--output", "/proc/nope/w"], "not writable"),
    (["world", "build", "--output", "{tmp}/x", "--n-known", "3"], "n_known"),
    (["world", "train", "--output", "{tmp}/m", "--phase", "poetry:10"], "curriculum: must be one of"),
    (["world", "train", "--output", "{tmp}/m", "--phase", "mixed:10"], "must be one of ['facts_read', 'skills']"),
    (["world", "train", "--output", "{tmp}/m", "--phase", "skills:0"], "steps: must be a positive integer"),
    (["world", "train", "--output", "{tmp}/m", "--phase", "skills"], "CURRICULUM:STEPS"),
    (["world", "train", "--output", "{tmp}/m", "--phase", "skills:ten"], "steps must be a positive integer"),
    (["world", "train", "--output", "{tmp}/m", "--phase", "skills:10:-1"], "lr: must be positive"),
    (["world", "train", "--output", "{tmp}/m", "--init", "{tmp}"], "--init: give the phases"),
    (["world", "train", "--output", "{tmp}/m", "--init", "{tmp}", "--phase", "skills:5"], "not a world model"),
])
def test_bad_input_is_a_clear_error(args, message, tmp_path):
    out = kick(*[a.format(tmp=tmp_path) for a in args])
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.unit
def test_phase_option_keeps_the_recipe_settings_of_its_curriculum():
    from kick_hub.cli import _phase
    from kick_hub.world.train import Phase

    assert _phase("facts_read:10") == Phase("facts_read", 10, lr=2e-3, prompt_weight=1.0)
    assert _phase("skills:50:0.0005") == Phase("skills", 50, lr=5e-4)
