"""The results dataset holds one row per variant of a run: a run's file is named by its id (from the store's creation
record), so pushing a resumed sweep again replaces it, and rows of different runs differ in ``run``. Pushed to the
loopback Hub (tests/hub_server.py) and read back with ``datasets`` and the Space's leaderboard."""

import json

from kick_hub.bench.store import Store
from kick_hub.cli import main
from tests.kick_runner import client, hub_kick

REPO = "test-org/kick-results"
SWEEP = ["--methods", "magnitude", "--patterns", "--tasks", "factoid-qa", "--limit", "5", "--sparsities"]

READ = """
from kick_hub.hub.results import load_results
from kick_hub.space import leaderboard_frame

rows = load_results("test-org/kick-results")
board = leaderboard_frame(None, "test-org/kick-results")
emit({"rows": [[r["run"], r["variant"]] for r in rows], "board": board[["run", "variant"]].values.tolist()
      if "run" in board else board[["variant"]].values.tolist()})
"""


def run_id(run_dir) -> str:
    store = Store.open_readonly(run_dir)
    try:
        return store.run_identity()
    finally:
        store.close()


def test_a_resumed_run_pushed_again_has_one_row_per_variant(hub, tmp_path):
    first = tmp_path / "first"
    assert main(["bench", "--run-dir", str(first), *SWEEP, "0.5"]) == 0
    out = hub_kick(hub, "push-results", str(first), "--repo-id", REPO)
    ident = run_id(first)
    assert out.stdout.strip() == f"results/world/run_{ident}.json"
    assert main(["bench", "--run-dir", str(first), *SWEEP, "0.5", "0.7"]) == 0  # resumed: one more sparsity
    assert run_id(first) == ident
    hub_kick(hub, "push-results", str(first), "--repo-id", REPO)
    files = {p: json.loads(text) for p, text in hub.files(REPO, "dataset").items() if p.startswith("results/")}
    assert list(files) == [f"results/world/run_{ident}.json"]  # the later push replaced the file
    got = client(hub, READ)
    assert sorted(got["rows"]) == [[ident, "dense"], [ident, "magnitude-50"], [ident, "magnitude-70"]]
    assert sorted(got["board"]) == [["dense"], ["magnitude-50"], ["magnitude-70"]]  # one run: no run column

    second = tmp_path / "second"  # another run of the same model and settings
    assert main(["bench", "--run-dir", str(second), *SWEEP, "0.5"]) == 0
    other = run_id(second)
    assert other != ident
    hub_kick(hub, "push-results", str(second), "--repo-id", REPO)
    got = client(hub, READ)
    assert sorted(got["rows"]) == sorted([[ident, "dense"], [ident, "magnitude-50"], [ident, "magnitude-70"],
                                          [other, "dense"], [other, "magnitude-50"]])
    assert sorted(got["board"]) == sorted(got["rows"])  # the leaderboard tells the runs apart
    record = files[f"results/world/run_{ident}.json"]
    assert record["config"]["run"] == ident and {r["run"] for r in record["rows"]} == {ident}
