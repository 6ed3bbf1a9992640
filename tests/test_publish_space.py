"""kick publish-space against the loopback Hub (tests/hub_server.py): the Space's files, card, variables and
hardware through the real huggingface_hub client, an exact and idempotent re-publish, bad input refused before any
request, and the published Space itself run from a download of it (with a tiny real ``spaces`` module on the path,
as on ZeroGPU hardware)."""

import hashlib
import textwrap

import pytest
import yaml

from kick_hub.hub.space_repo import package_files
from tests.conftest import ROOT
from tests.kick_runner import TOKEN, client, hub_kick

SPACE = "test-org/kick-compare"
APP = ROOT / "kick_hub" / "space_app"


def header(readme: bytes) -> dict:
    return yaml.safe_load(readme.decode().split("---")[1])


READ_BACK = """
from huggingface_hub import HfApi

api = HfApi()
runtime = api.get_space_runtime({space!r})
info = api.space_info({space!r})
emit({{"sdk": info.sdk, "private": info.private, "hardware": runtime.hardware, "stage": runtime.stage,
       "variables": {{k: [v.value, v.description] for k, v in api.get_space_variables({space!r}).items()}}}})
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot() -> dict[str, str]:
    """path in the Space -> sha256 of the local package file now."""
    return {path: sha(local.read_bytes()) for path, local in package_files().items()}


def test_publish_space_round_trip(hub):
    before = snapshot()
    out = hub_kick(hub, "publish-space", SPACE, "--allow", "org/model-a", "--allow", "org/model-b", "org/model-a",
                   "--results-repo", "test-org/kick-results", "--hardware", "t4-small", "--private")
    assert out.stdout.splitlines()[0] == f"Space: {hub.url}/spaces/{SPACE}"
    assert "variable KICK_ALLOW=org/model-a,org/model-b" in out.stdout
    assert "hardware requested: t4-small" in out.stdout
    files = hub.files(SPACE, "space")
    package = package_files()
    assert "kick_hub/space/app.py" in package and "kick_hub/world/model/model.safetensors" in package
    assert not [p for p in package if "__pycache__" in p or p.endswith(".pyc") or "space_app" in p]
    assert set(files) == {".gitattributes", "app.py", "README.md", "requirements.txt", *package}
    assert files["app.py"] == (APP / "app.py").read_bytes()
    for path, local in package.items():  # the package byte for byte (links as their targets), where unchanged
        if before.get(path) == sha(local.read_bytes()):  # since (another checkout user may be editing a file)
            assert sha(files[path]) == before[path], path
    assert "kick_hub/world/model/model.safetensors" in hub.lfs_files(SPACE, "space")
    card = header(files["README.md"])
    assert (card["sdk"], card["app_file"]) == ("gradio", "app.py")
    assert card["models"] == ["org/model-a", "org/model-b"] and card["datasets"] == ["test-org/kick-results"]
    assert card["suggested_hardware"] == "t4-small"
    assert files["README.md"].split(b"---", 2)[2] == (APP / "README.md").read_bytes().split(b"---", 2)[2]
    requirements = files["requirements.txt"].decode().splitlines()
    assert {"torch>=2.4", "transformers>=5.20", "huggingface_hub>=1.0", "pandas"} <= set(requirements)
    assert [r for r in requirements if r.startswith("gradio")] == ["gradio<7,>=6"]
    assert not [r for r in requirements if r.split("<")[0].split(">")[0].split("=")[0] in
                ("pytest", "gptqmodel", "openai", "ray", "kick-hub")]
    for path, data in files.items():  # nothing of this machine or the token is published
        assert str(ROOT).encode() not in data and TOKEN.encode() not in data, path
    assert hub.space_variables(SPACE) == {"KICK_ALLOW": "org/model-a,org/model-b",
                                          "KICK_RESULTS_REPO": "test-org/kick-results"}
    assert hub.space_hardware(SPACE) == "t4-small"
    got = client(hub, READ_BACK.format(space=SPACE))
    assert (got["sdk"], got["private"], got["hardware"], got["stage"]) == ("gradio", True, "t4-small", "BUILDING")
    assert got["variables"]["KICK_ALLOW"][0] == "org/model-a,org/model-b"
    assert "--allow" in got["variables"]["KICK_ALLOW"][1]


def test_republish_is_exact_and_idempotent(hub):
    hub.create_repo(SPACE, "space")
    hub.commit_files(SPACE, {"old_app.py": b"print('stale')\n"}, "space")
    hub_kick(hub, "publish-space", SPACE, "--allow", "org/model-a", "--results-repo", "test-org/kick-results",
             "--hardware", "zero-a10g")
    client(hub, f"from huggingface_hub import HfApi\nHfApi().add_space_variable({SPACE!r}, 'KICK_DATA', "
                f"'world,world-heldout')\nemit(1)")
    assert "old_app.py" not in hub.files(SPACE, "space")  # the stale file is deleted by the publishing commit
    commits = len(hub.commits(SPACE, "space"))

    hub_kick(hub, "publish-space", SPACE, "--allow", "org/model-b")  # no results repo, no hardware this time
    assert len(hub.commits(SPACE, "space")) == commits + 1  # the card's header changed
    card = header(hub.files(SPACE, "space")["README.md"])
    assert card["models"] == ["org/model-b"] and "datasets" not in card and "suggested_hardware" not in card
    assert hub.space_variables(SPACE) == {"KICK_ALLOW": "org/model-b", "KICK_DATA": "world,world-heldout"}
    assert hub.space_hardware(SPACE) == "zero-a10g"  # not asked: left as it was

    hub.requests.clear()
    before = snapshot()
    hub_kick(hub, "publish-space", SPACE, "--allow", "org/model-b")  # nothing changed: no commit, no variable set
    if snapshot() == before:  # (unless someone edited the package in between, in a shared checkout)
        assert len(hub.commits(SPACE, "space")) == commits + 1
        writes = [(m, p) for m, p in hub.requests if m in ("PUT", "DELETE") or m == "POST" and (
            p.endswith(("/repos/create", "/variables", "/hardware")) or "/commit/" in p)]
        assert writes == [("POST", "/api/repos/create")]  # answered 409 (exist_ok), nothing else written


BAD_INPUT = [
    (["no-slash"], "repo-id: must be ORG/NAME"),
    ([SPACE, "--allow", "org/ok", "../etc"], "allow: '../etc' is not a valid Hub repo id"),
    ([SPACE, "--results-repo", "results"], "results-repo: must be ORG/NAME"),
    ([SPACE, "--hardware", "h100x9"], "hardware: must be one of ['cpu-basic', 'cpu-upgrade', 'zero-a10g', "
                                      "'t4-small', 't4-medium'"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUT, ids=[m.split(":")[0] for _, m in BAD_INPUT])
def test_bad_input_exits_2_before_the_token_or_network(argv, message, capsys, monkeypatch):
    """Checked first: no token is read (there is none) and nothing is sent (HF_HUB_OFFLINE=1 would fail a request
    with another error and exit 1)."""
    from kick_hub.cli import main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["publish-space", *argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err, err
    if "--hardware" in argv:
        assert "'a100-large'" in err and "got 'h100x9'" in err  # every allowed flavor is listed


def test_no_token_is_refused_before_any_request(hub):
    out = hub_kick(hub, "publish-space", SPACE, env={"HF_TOKEN": None}, expect=1)
    assert "token: no Hugging Face token found" in out.stderr
    assert hub.requests == []


def test_wrong_token_and_refused_hardware_are_clear_errors(hub):
    out = hub_kick(hub, "publish-space", SPACE, env={"HF_TOKEN": "hf_wrong_token_abcdef"}, expect=1)
    assert "publishing the Space test-org/kick-compare failed at" in out.stderr and "401" in out.stderr
    assert "hf_wrong_token_abcdef" not in out.stderr
    hub.fail_next("/hardware", "402")  # as the Hub answers a paid flavor without a payment method
    out = hub_kick(hub, "publish-space", SPACE, "--hardware", "a100-large", expect=1)
    assert "402" in out.stderr and "re-run the same command" in out.stderr
    assert "app.py" in hub.files(SPACE, "space") and hub.space_hardware(SPACE) == "cpu-basic"


FAKE_SPACES = '''
"""A stand-in for the Hub's spaces package: GPU(duration=...) records each function it is applied to."""
APPLIED = []


def GPU(fn=None, duration=60):
    def wrap(f):
        APPLIED.append((f.__qualname__, duration))
        return f
    return wrap(fn) if fn is not None else wrap
'''

RUN_SPACE = """
import os, sys
from huggingface_hub import snapshot_download

snap = snapshot_download({space!r}, repo_type="space", local_dir={local!r})
os.chdir(snap)
sys.path[:0] = [{fake!r}, snap]  # as the Space runs app.py: its own folder first
os.environ.update({variables!r})
import spaces
import app
import kick_hub.space

fns = {{f.api_name: f.fn for f in app.demo.fns.values()}}
panes = list(fns["compare"]("world", [], "The capital of Zelmor is", 6, "world", "factoid-qa", 0, False))[-1]
emit({{"package": os.path.relpath(kick_hub.__file__, snap), "applied": spaces.APPLIED,
       "handler": fns["compare"].__qualname__, "allow": kick_hub.space.from_env()["allow"],
       "output": panes[0]["value"]}})
"""


def test_published_space_runs_from_its_download(hub, tmp_path):
    """The Space as the Hub would run it: its files downloaded, app.py imported with the Space's variables as
    the environment and a real ``spaces`` module on the path; it uses its own copy of kick_hub, runs the
    comparison's generation under spaces.GPU and answers with the same greedy text as the library."""
    hub_kick(hub, "publish-space", SPACE, "--allow", "org/model-a", "--hardware", "zero-a10g")
    fake = tmp_path / "fake"
    (fake / "spaces").mkdir(parents=True)
    (fake / "spaces" / "__init__.py").write_text(textwrap.dedent(FAKE_SPACES))
    got = client(hub, RUN_SPACE.format(space=SPACE, local=str(tmp_path / "space"), fake=str(fake),
                                       variables=hub.space_variables(SPACE)))
    assert got["package"] == "kick_hub/__init__.py"  # the Space's own copy, not this checkout
    # the forward passes (the comparison's generation, the KL strip's teacher forcing), not the whole handlers
    assert got["applied"] == [["build.<locals>.generate", 120], ["build.<locals>.teacher_force", 120]]
    assert got["handler"] == "build.<locals>.compare"
    assert got["allow"] == ["org/model-a"]
    from kick_hub.engine import Engine

    # a typed prompt (not an example's) in the selected task's own format: factoid-qa's, as typed with its stop
    # strings (space.check_compare)
    expected = Engine.from_name("world").generate(["The capital of Zelmor is"], 6, ("\n",))[0]
    assert got["output"] == expected and expected
