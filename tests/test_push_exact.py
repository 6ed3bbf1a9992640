"""A push leaves the repo holding exactly what it pushed (plus ``.gitattributes``): files of a variant pushed there
before (calibration ids, weight shards, plots) are deleted in the same single commit; likewise for the task Spaces.
Against the loopback Hub (tests/hub_server.py) with the real huggingface_hub client."""

import shutil

import pytest

from kick_hub.variant import CALIBRATION_FILE
from tests.hub_server import HubServer
from tests.kick_runner import client, hub_kick

REPO = "test-org/world-pruned"


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """(wanda 2:4 with calibration ids, magnitude 50 % data-free, the magnitude variant with sharded weights)."""
    from transformers import AutoModelForCausalLM

    from kick_hub.cli import main

    root = tmp_path_factory.mktemp("variants")
    wanda, magnitude, sharded = root / "wanda", root / "magnitude", root / "sharded"
    assert main(["compress", "--model", "world", "--method", "wanda", "--pattern", "2:4", "--nsamples", "4",
                 "--seqlen", "64", "--output", str(wanda)]) == 0
    assert main(["compress", "--model", "world", "--method", "magnitude", "--sparsity", "0.5", "--output",
                 str(magnitude)]) == 0
    shutil.copytree(magnitude, sharded)
    (sharded / "model.safetensors").unlink()
    AutoModelForCausalLM.from_pretrained(magnitude).save_pretrained(sharded, max_shard_size="4MB")
    return wanda, magnitude, sharded


def pushed(variant) -> set[str]:
    """What a push of ``variant`` writes: its files (not hidden ones) and the card."""
    return {p.relative_to(variant).as_posix() for p in variant.rglob("*")
            if p.is_file() and not p.name.startswith(".")} | {"README.md"}


def commit_posts(hub: HubServer) -> int:
    return sum(1 for method, path in hub.requests if method == "POST" and "/commit/" in path)


LIST = """
from huggingface_hub import HfApi
emit(sorted(HfApi().list_repo_files({repo!r}, repo_type={kind!r})))
"""


def test_repush_leaves_exactly_the_new_variant_in_one_commit(hub, variants):
    wanda, magnitude, sharded = variants
    shards = pushed(sharded) - pushed(magnitude)
    assert "model.safetensors.index.json" in shards and len(shards) >= 3
    assert CALIBRATION_FILE in pushed(wanda) and CALIBRATION_FILE not in pushed(magnitude)
    hub_kick(hub, "push", str(wanda), "--repo-id", REPO)
    assert set(hub.files(REPO)) == pushed(wanda) | {".gitattributes"}
    # files no push of these variants writes: plots of an earlier push with --run-dir, a nested folder
    stale = {"plots/sparsity.png": b"\x89PNG old plot", "notes/old/readme.txt": b"old\n"}
    hub.commit_files(REPO, stale)
    steps = [(magnitude, {CALIBRATION_FILE, *stale}), (sharded, {"model.safetensors"}), (magnitude, shards)]
    for variant, gone in steps:
        before, posts, previous = hub.commits(REPO), commit_posts(hub), set(hub.files(REPO))
        hub_kick(hub, "push", str(variant), "--repo-id", REPO)
        after = hub.commits(REPO)
        assert after[:-1] == before and commit_posts(hub) == posts + 1  # one commit, deletions included
        now = set(hub.files(REPO))
        assert now == pushed(variant) | {".gitattributes"}
        assert previous - now == gone and set(hub.files(REPO, rev=before[-1])) == previous
        assert client(hub, LIST.format(repo=REPO, kind="model")) == sorted(now)
    card = hub.files(REPO)["README.md"].decode()
    assert "| calibration | none (data-free method) |" in card and CALIBRATION_FILE not in card
    assert b'"method": "magnitude"' in hub.files(REPO)["kick_manifest.json"]


def test_publish_tasks_leaves_exactly_the_module_files(hub):
    from kick_hub.hub.tasks import MODULES_DIR, module_files

    space = "llmkick/factoid-qa"
    hub.create_repo(space, "space")
    hub.commit_files(space, {"old_helper.py": b"x = 1\n", "README.md": b"---\nsdk: gradio\n---\nold\n"},
                     repo_type="space")
    before = hub.commits(space, "space")
    hub_kick(hub, "publish-tasks", "--org", "llmkick", "--tasks", "factoid-qa")
    files = module_files(MODULES_DIR / "factoid_qa", "llmkick")
    assert hub.files(space, "space") == {**files, ".gitattributes": hub.files(space, "space", before[0])[
        ".gitattributes"]}
    assert hub.commits(space, "space")[:-1] == before
    assert client(hub, LIST.format(repo=space, kind="space")) == sorted([*files, ".gitattributes"])
