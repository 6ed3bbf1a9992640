"""``--private`` on a repo that already exists as public: every repo-creating command (push, push-results,
publish-tasks, publish-space, bench --push) makes it private before its first upload (``hub.ensure_repo``), or
stops with exit 2 before uploading when the Hub refuses. Real ``kick`` commands against the loopback Hub
(tests/hub_server.py), whose record of each commit's visibility shows that nothing landed while the repo was
public."""

from tests.hub_server import HubServer
from tests.kick_runner import hub_kick


def assert_private_before_upload(hub: HubServer, repo_id: str, repo_type: str = "model") -> None:
    assert hub.is_private(repo_id, repo_type)
    visibility = hub.commit_visibility(repo_id, repo_type)
    assert len(visibility) >= 2, "nothing was uploaded"
    assert visibility[0] is False  # the repo was created public (seeded below)
    assert all(visibility[1:]), f"a commit landed while {repo_id} was public: {visibility}"


def test_push_makes_an_existing_public_repo_private(hub, small_run):
    repo = "tester/world-magnitude-70"
    hub.create_repo(repo, private=False)
    hub_kick(hub, "push", str(small_run / "variants" / "magnitude-70"), "--repo-id", repo, "--private")
    assert_private_before_upload(hub, repo)
    assert "model.safetensors" in hub.files(repo)


def test_push_results_makes_an_existing_public_dataset_private(hub, small_run):
    repo = "test-org/kick-results"
    hub.create_repo(repo, "dataset", private=False)
    hub_kick(hub, "push-results", str(small_run), "--repo-id", repo, "--private")
    assert_private_before_upload(hub, repo, "dataset")


def test_publish_tasks_makes_an_existing_public_space_private(hub):
    space = "test-org/factoid-qa"
    hub.create_repo(space, "space", private=False)
    hub_kick(hub, "publish-tasks", "--org", "test-org", "--tasks", "factoid-qa", "--private")
    assert_private_before_upload(hub, space, "space")
    assert "factoid-qa.py" in hub.files(space, "space")


def test_publish_space_makes_an_existing_public_space_private(hub):
    space = "test-org/kick-compare"
    hub.create_repo(space, "space", private=False)
    hub_kick(hub, "publish-space", space, "--private")
    assert_private_before_upload(hub, space, "space")


def test_bench_push_makes_an_existing_public_repo_private(hub, tmp_path):
    repo = "test-org/world-magnitude-50"
    hub.create_repo(repo, private=False)
    hub_kick(hub, "bench", "--run-dir", str(tmp_path / "run"), "--methods", "magnitude", "--sparsities", "0.5",
             "--tasks", "factoid-qa", "--limit", "4", "--push", "test-org", "--private")
    assert_private_before_upload(hub, repo)


def test_refused_visibility_change_stops_before_any_upload(hub, small_run):
    repo = "tester/world-magnitude-70"
    hub.create_repo(repo, private=False)
    hub.fail_next("/settings", "403")
    out = hub_kick(hub, "push", str(small_run / "variants" / "magnitude-70"), "--repo-id", repo, "--private",
                   expect=2)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kick: error: private: the model repo tester/world-magnitude-70 "
                                                   "exists as a public repo and could not be made private")
    assert "nothing was uploaded" in lines[0] and "Traceback" not in out.stderr
    assert not hub.is_private(repo) and len(hub.commits(repo)) == 1  # the creation commit only
    assert not any(method == "POST" and "/commit/" in path for method, path in hub.requests)


def test_without_private_an_existing_private_repo_stays_private(hub, small_run):
    repo = "tester/world-magnitude-70"
    hub.create_repo(repo, private=True)
    hub_kick(hub, "push", str(small_run / "variants" / "magnitude-70"), "--repo-id", repo)
    assert hub.is_private(repo) and all(hub.commit_visibility(repo))
    assert not any(method == "PUT" and path.endswith("/settings") for method, path in hub.requests)
