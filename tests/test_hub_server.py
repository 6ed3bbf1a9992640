"""Self-test of tests/hub_server.py: the real huggingface_hub / transformers / evaluate clients, run in subprocesses
(the pytest process is offline and has imported huggingface_hub already), against the in-memory fake Hub."""

import hashlib
import json
import urllib.error
import urllib.request

import pytest

from tests.kick_runner import TOKEN, client

pytestmark = pytest.mark.unit  # needs no model: the fast tier (`pytest -m unit`)


def make_folder(root, files: dict[str, bytes]):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


FILES = {"config.json": b'{"hidden_size": 8}', "README.md": b"---\nlicense: mit\ntags: [tiny]\n---\n# Tiny\n",
         "data/notes.txt": b"hello\n", "weights.bin": bytes(range(256)) * 4}

ROUNDTRIP = """
    import os
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    api = HfApi()
    api.create_repo("{repo}")
    first = api.upload_folder(folder_path={folder!r}, repo_id="{repo}").oid
    info = api.model_info("{repo}", files_metadata=True)
    snap = snapshot_download("{repo}")
    snapshot = {{}}
    for dirpath, _, names in os.walk(snap):
        for n in names:
            p = os.path.join(dirpath, n)
            snapshot[os.path.relpath(p, snap)] = open(p, "rb").read().hex()
    single = open(hf_hub_download("{repo}", "data/notes.txt", revision=first), "rb").read().decode()
    tree = sorted((e.path, type(e).__name__) for e in api.list_repo_tree("{repo}", recursive=True))
    top = sorted(e.path for e in api.list_repo_tree("{repo}"))
    second = api.upload_folder(folder_path={folder!r}, repo_id="{repo}").oid
    emit({{"first": first, "second": second, "sha": info.sha, "card": info.card_data.to_dict(),
          "siblings": {{s.rfilename: [s.size, s.lfs is not None] for s in info.siblings}},
          "snapshot": snapshot, "single": single, "tree": tree, "top": top}})
"""


def check_roundtrip(hub, result, repo, lfs: bool):
    assert result["first"] == result["sha"] == result["second"] == hub.commits(repo)[-1]
    assert len(hub.commits(repo)) == 2  # creation + one upload: the unchanged re-upload made no commit
    stored = hub.files(repo)
    assert {k: v for k, v in stored.items() if k != ".gitattributes"} == FILES
    assert result["snapshot"] == {k: v.hex() for k, v in stored.items()}
    assert result["siblings"] == {k: [len(v), lfs and k != ".gitattributes"] for k, v in stored.items()}
    assert result["card"] == {"license": "mit", "tags": ["tiny"]}
    assert result["single"] == "hello\n"
    assert ["data", "RepoFolder"] in result["tree"] and ["data/notes.txt", "RepoFile"] in result["tree"]
    assert result["top"] == [".gitattributes", "README.md", "config.json", "data", "weights.bin"]


def test_create_repos_of_each_type(hub):
    result = client(hub, """
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError
        api = HfApi()
        urls = [api.create_repo("org/m"), api.create_repo("org/d", repo_type="dataset"),
                api.create_repo("org/s", repo_type="space", space_sdk="gradio")]
        again = api.create_repo("org/m", exist_ok=True)
        try:
            api.create_repo("org/m")
            status = None
        except HfHubHTTPError as e:
            status = e.response.status_code
        emit({"urls": [[u.repo_type, u.repo_id] for u in urls], "again": again.repo_id, "conflict": status,
              "sdk": api.space_info("org/s").sdk, "dataset": api.dataset_info("org/d").id,
              "exists": [api.repo_exists("org/m"), api.repo_exists("org/nope")], "me": api.whoami()["name"]})
    """)
    assert result == {"urls": [["model", "org/m"], ["dataset", "org/d"], ["space", "org/s"]], "again": "org/m",
                      "conflict": 409, "sdk": "gradio", "dataset": "org/d", "exists": [True, False], "me": "tester"}
    assert len(hub.commits("org/s", "space")) == 1 and list(hub.files("org/d", "dataset")) == [".gitattributes"]


def test_regular_upload_roundtrip_with_xet_enabled(hub, tmp_path):
    hub.upload_mode = "regular"  # with nothing to send to Xet, the default (Xet-enabled) client works
    folder = make_folder(tmp_path, FILES)
    result = client(hub, ROUNDTRIP.format(repo="org/plain", folder=str(folder)), env={"HF_HUB_DISABLE_XET": "0"})
    check_roundtrip(hub, result, "org/plain", lfs=False)
    assert not hub.lfs_files("org/plain") and not any(m == "PUT" for m, _ in hub.requests)


def test_lfs_upload_roundtrip_and_unchanged_reupload(hub, tmp_path):
    hub.upload_mode = "lfs"
    folder = make_folder(tmp_path / "up", FILES)
    result = client(hub, ROUNDTRIP.format(repo="org/big", folder=str(folder)))  # run_client: HF_HUB_DISABLE_XET=1
    check_roundtrip(hub, result, "org/big", lfs=True)
    assert hub.lfs_files("org/big") == set(FILES)
    puts = [p for m, p in hub.requests if m == "PUT"]
    assert len(puts) == len(FILES) and all(p.startswith("/_lfs/model/org/big/") for p in puts)

    hub.requests.clear()
    (folder / "data/notes.txt").write_bytes(b"changed\n")
    meta = client(hub, f"""
        from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
        HfApi().upload_folder(folder_path={str(folder)!r}, repo_id="org/big")
        m = get_hf_file_metadata(hf_hub_url("org/big", "weights.bin"))
        emit({{"etag": m.etag, "size": m.size, "commit": m.commit_hash}})
    """)
    changed = "/_lfs/model/org/big/" + hashlib.sha256(b"changed\n").hexdigest()
    assert [p for m, p in hub.requests if m == "PUT"] == [changed]  # only the changed file is uploaded again
    assert hub.files("org/big")["data/notes.txt"] == b"changed\n" and len(hub.commits("org/big")) == 3
    weights = FILES["weights.bin"]
    assert meta == {"etag": hashlib.sha256(weights).hexdigest(), "size": len(weights),
                    "commit": hub.commits("org/big")[-1]}


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_failed_commit_changes_nothing(hub, tmp_path, mode):
    folder = make_folder(tmp_path, {"a.txt": b"a"})
    hub.create_repo("org/flaky")
    before = hub.commits("org/flaky")
    hub.fail_next("/commit/", mode)
    result = client(hub, f"""
        from huggingface_hub import HfApi
        api = HfApi()
        try:
            api.upload_folder(folder_path={str(folder)!r}, repo_id="org/flaky")
            failed = None
        except Exception as e:
            failed = type(e).__name__
        emit({{"failed": failed, "retry": api.upload_folder(folder_path={str(folder)!r}, repo_id="org/flaky").oid}})
    """)
    assert result["failed"] == ("HfHubHTTPError" if mode == "500" else "RemoteProtocolError")
    commits = hub.commits("org/flaky")
    assert commits[:-1] == before and commits[-1] == result["retry"] and hub.files("org/flaky")["a.txt"] == b"a"
    assert [p for m, p in hub.requests if p.endswith("/commit/main")] == ["/api/models/org/flaky/commit/main"] * 2


def test_commit_with_additions_and_deletions(hub):
    """One commit adds a file, deletes a file and a folder (CommitOperationDelete) and lists the rest; deleting a
    path that is not there fails (404) and changes nothing."""
    hub.create_repo("org/mixed")
    hub.commit_files("org/mixed", {"keep.txt": b"k", "old.bin": b"o", "sub/a.txt": b"a", "sub/deep/b.txt": b"b"})
    before = hub.commits("org/mixed")
    result = client(hub, """
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
        from huggingface_hub.errors import HfHubHTTPError
        api = HfApi()
        head = api.repo_info("org/mixed").sha
        ops = [CommitOperationAdd(path_in_repo="new.txt", path_or_fileobj=b"n"),
               CommitOperationDelete(path_in_repo="old.bin"), CommitOperationDelete(path_in_repo="sub/")]
        sha = api.create_commit("org/mixed", ops, commit_message="swap", parent_commit=head).oid
        files = api.list_repo_files("org/mixed")
        try:
            api.create_commit("org/mixed", [CommitOperationDelete(path_in_repo="gone.txt")], commit_message="x")
            missing = None
        except HfHubHTTPError as e:
            missing = [type(e).__name__, e.response.status_code]
        emit({"head": head, "sha": sha, "files": files, "missing": missing})
    """)
    assert result["head"] == before[-1] and hub.commits("org/mixed") == [*before, result["sha"]]
    assert sorted(result["files"]) == [".gitattributes", "keep.txt", "new.txt"]
    assert set(hub.files("org/mixed")) == set(result["files"]) and hub.files("org/mixed")["new.txt"] == b"n"
    assert result["missing"] == ["RemoteEntryNotFoundError", 404]


def test_private_repo_errors_and_bad_token(hub):
    hub.create_repo("org/secret", private=True)
    hub.commit_files("org/secret", {"f.txt": b"x"})
    result = client(hub, """
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError
        def error(fn, *args, **kwargs):
            try:
                fn(*args, **kwargs)
            except HfHubHTTPError as e:
                return [type(e).__name__, e.response.status_code]
        api = HfApi()
        emit({"mine": api.model_info("org/secret").private,
              "anon_info": error(HfApi(token=False).model_info, "org/secret"),
              "anon_file": error(hf_hub_download, "org/secret", "f.txt", token=False),
              "bad_token": error(HfApi(token="hf_wrong").create_repo, "org/new"),
              "bad_whoami": error(HfApi(token="hf_wrong").whoami),
              "no_entry": error(hf_hub_download, "org/secret", "nope.txt"),
              "no_rev": error(hf_hub_download, "org/secret", "f.txt", revision="0" * 40),
              "no_repo": error(api.model_info, "org/missing"),
              "stale_parent": error(api.upload_file, path_or_fileobj=b"y", path_in_repo="g.txt",
                                    repo_id="org/secret", parent_commit="1" * 40)})
    """)
    assert result == {"mine": True, "anon_info": ["RepositoryNotFoundError", 401],
                      "anon_file": ["RepositoryNotFoundError", 401], "bad_token": ["HfHubHTTPError", 401],
                      "bad_whoami": ["HfHubHTTPError", 401], "no_entry": ["RemoteEntryNotFoundError", 404],
                      "no_rev": ["RevisionNotFoundError", 404], "no_repo": ["RepositoryNotFoundError", 404],
                      "stale_parent": ["HfHubHTTPError", 412]}
    with pytest.raises(KeyError):
        hub.commits("org/new")


def test_raw_protocol_details(hub):
    hub.create_repo("org/raw")
    hub.commit_files("org/raw", {"w.bin": bytes(range(10))}, lfs=True)

    def call(method, path, body=None, headers=None):
        request = urllib.request.Request(hub.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    status, headers, data = call("GET", "/org/raw/resolve/main/w.bin", headers={"Range": "bytes=2-4"})
    assert (status, data, headers["Content-Range"]) == (206, bytes([2, 3, 4]), "bytes 2-4/10")
    assert headers["X-Linked-Size"] == "10" and headers["X-Repo-Commit"] == hub.commits("org/raw")[-1]
    assert call("GET", "/org/raw/resolve/main/w.bin", headers={"Range": "bytes=20-"})[0] == 416
    assert call("POST", "/api/repos/create", json.dumps({"name": "bad--name"}).encode(), auth)[0] == 400
    assert call("POST", "/api/repos/create", json.dumps({"name": "x"}).encode())[0] == 401
    bad_yaml = json.dumps({"content": "---\n- a list\n---\n", "repoType": "model"}).encode()
    assert call("POST", "/api/validate-yaml", bad_yaml, auth)[0] == 400
    oid = hashlib.sha256(b"payload").hexdigest()
    batch = json.dumps({"operation": "upload", "transfers": ["basic", "multipart"],
                        "objects": [{"oid": oid, "size": 7}]}).encode()
    status, _, data = call("POST", "/org/raw.git/info/lfs/objects/batch", batch, auth)
    answer = json.loads(data)
    assert status == 200 and answer["transfer"] == "basic"
    href = answer["objects"][0]["actions"]["upload"]["href"][len(hub.url):]
    assert call("PUT", href.split("?")[0], b"payload")[0] == 403  # unsigned
    assert call("PUT", href, b"tampered")[0] == 400  # sha256 mismatch
    commit = b'{"key": "header", "value": {"summary": "s"}}\n{"key": "lfsFile", "value": {"path": "p", "oid": "%s"}}\n'
    ndjson = {**auth, "Content-Type": "application/x-ndjson"}
    assert call("POST", "/api/models/org/raw/commit/main", commit % oid.encode(), ndjson)[0] == 400  # not uploaded
    assert call("PUT", href, b"payload")[0] == 200
    assert call("POST", "/api/models/org/raw/commit/main", commit % oid.encode(), ndjson)[0] == 200
    assert hub.files("org/raw")["p"] == b"payload" and "p" in hub.lfs_files("org/raw")
    assert json.loads(call("POST", "/org/raw.git/info/lfs/objects/batch", batch, auth)[2])["objects"][0].get(
        "actions") is None


def test_transformers_autoconfig_from_pushed_config(hub, tmp_path):
    result = client(hub, f"""
        from huggingface_hub import HfApi
        from transformers import AutoConfig, LlamaConfig
        LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=2, vocab_size=64).save_pretrained({str(tmp_path)!r})
        api = HfApi()
        api.create_repo("org/tiny-llama")
        api.upload_folder(folder_path={str(tmp_path)!r}, repo_id="org/tiny-llama")
        config = AutoConfig.from_pretrained("org/tiny-llama")
        emit({{"type": config.model_type, "hidden": config.hidden_size, "layers": config.num_hidden_layers}})
    """, timeout=120)
    assert result == {"type": "llama", "hidden": 16, "layers": 1}


def test_datasets_load_dataset_from_dataset_repo(hub):
    hub.create_repo("org/table", repo_type="dataset")
    hub.commit_files("org/table", {"data/train.csv": b"a,b\n1,x\n2,y\n", "README.md": b"---\nlicense: mit\n---\n"},
                     repo_type="dataset")
    result = client(hub, """
        import datasets
        emit(datasets.load_dataset("org/table", split="train").to_dict())
    """, timeout=120)
    assert result == {"a": [1, 2], "b": ["x", "y"]}


METRIC = '''import datasets
import evaluate

from .tiny_helper import fraction_equal


class TinyAcc(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="tiny accuracy", citation="", inputs_description="",
            features=datasets.Features({"predictions": datasets.Value("int32"),
                                        "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references):
        return {"accuracy": fraction_equal(predictions, references)}
'''
HELPER = "def fraction_equal(a, b):\n    return sum(x == y for x, y in zip(a, b)) / len(a)\n"


def test_evaluate_load_metric_from_space(hub, tmp_path):
    make_folder(tmp_path, {"tiny-acc.py": METRIC.encode(), "tiny_helper.py": HELPER.encode(),
                           "README.md": b"---\ntitle: tiny-acc\nsdk: gradio\ntags: [evaluate, metric]\n---\n"})
    result = client(hub, f"""
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo("org/tiny-acc", repo_type="space", space_sdk="gradio")
        api.upload_folder(folder_path={str(tmp_path)!r}, repo_id="org/tiny-acc", repo_type="space")
        import evaluate
        metric = evaluate.load("org/tiny-acc")
        emit(metric.compute(predictions=[1, 2, 3, 4], references=[1, 2, 0, 4]))
    """, timeout=120)
    assert result == {"accuracy": 0.75}
    fetched = [p for m, p in hub.requests if m == "GET" and "/resolve/" in p]
    assert "/spaces/org/tiny-acc/resolve/main/tiny-acc.py" in fetched
    assert "/spaces/org/tiny-acc/resolve/main/tiny_helper.py" in fetched
