"""``kick push``: a compressed variant, its model card and the sweep plots to a Hub model repo, in one commit.

Commits are atomic on the Hub: a failed push leaves the remote repo at its previous commit and never touches the
local variant. huggingface_hub compares each file's hash with the remote one before uploading, so re-running a push
uploads only what changed.

After a push the repo holds exactly what the push wrote (the variant's files, its manifest, the card and the plots)
plus ``.gitattributes``, the repo's git settings (LFS tracking) that the Hub writes when it creates a repo: every
other file, such as the calibration ids or weight shards of a variant pushed there before, is deleted in the same
commit, so a repo never holds files its card does not describe.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kick_hub.bench.store import FILENAME
from kick_hub.hub import HubError, check_org, check_repo_id, ensure_repo, hub_errors, token
from kick_hub.io import dumps, public_name
from kick_hub.variant import MANIFEST, load_manifest

if TYPE_CHECKING:
    from huggingface_hub import CommitOperation, CommitOperationAdd, HfApi

PLOTS = ("sparsity.png", "nm_quant.png")
KEEP = (".gitattributes",)  # the repo's git settings, written by the Hub at creation: kept by an exact commit


def exact_operations(api: HfApi, repo_id: str, repo_type: str, additions: list[CommitOperationAdd]
                     ) -> tuple[list[CommitOperation], str]:
    """``additions`` plus a ``CommitOperationDelete`` for every file at the head of ``repo_id`` that they do not
    write (``KEEP`` excepted), and that head's sha: commit them with ``parent_commit=`` the sha, so the commit fails
    (412, nothing changed) rather than deletes by a stale listing when the repo moved in between."""
    from huggingface_hub import CommitOperationDelete

    head = api.repo_info(repo_id, repo_type=repo_type).sha
    written = {op.path_in_repo for op in additions}
    stale = sorted(p for p in api.list_repo_files(repo_id, repo_type=repo_type, revision=head)
                   if p not in written and p not in KEEP)
    return list(additions) + [CommitOperationDelete(path_in_repo=p) for p in stale], head


def public_manifest(manifest: dict) -> dict:
    """The manifest as published: the base model and a calibration file named by ``public_name`` (no path of this
    machine), without ``base_model_path``."""
    out = {k: v for k, v in manifest.items() if k != "base_model_path"}
    out["base_model"] = public_name(manifest.get("base_model"))
    if isinstance(out.get("calibration"), dict):
        out["calibration"] = {**out["calibration"], "source": public_name(out["calibration"].get("source"))}
    return out


def _operations(variant_dir: Path, card_text: str, plots: dict[str, Path], manifest: dict):
    from huggingface_hub import CommitOperationAdd

    ops = [CommitOperationAdd(path_in_repo=p.relative_to(variant_dir).as_posix(), path_or_fileobj=str(p))
           for p in sorted(variant_dir.rglob("*"))
           if p.is_file() and not any(part.startswith(".") for part in p.relative_to(variant_dir).parts)
           and p.name not in ("README.md", MANIFEST)]
    ops.append(CommitOperationAdd(path_in_repo=MANIFEST,
                                  path_or_fileobj=(dumps(public_manifest(manifest), indent=2) + "\n").encode()))
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card_text.encode()))
    ops += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in plots.items()]
    return ops


def push_variant(variant_dir: str | Path, repo_id: str, private: bool = False, run_dir: str | Path | None = None,
                 base_model: str | None = None) -> str:
    """Create ``repo_id`` (if needed) and make it hold exactly the variant + card (and ``KEEP``) in one commit, which
    deletes the files the repo holds beyond them; returns the commit URL (the head's sha when nothing changed).

    Every argument is checked (``base_model`` must be a Hub repo id) before the token is read or the network used;
    the uploaded manifest and card name models and calibration files without paths of this machine. With
    ``private`` an existing public repo is made private before the commit, or nothing is uploaded (ValueError
    naming ``private``; ``hub.ensure_repo``)."""
    from huggingface_hub import HfApi

    from kick_hub.hub.card import plot_for, variant_card

    check_repo_id(repo_id)
    if base_model is not None:
        check_repo_id(base_model, "base-model")
    variant_dir = Path(variant_dir)
    if (variant_dir / MANIFEST).exists() and load_manifest(variant_dir).get("method") == "gguf":
        raise ValueError(f"variant: {variant_dir} is a gguf variant; GGUF quant types go to one repo with their sweep "
                         "(`kick bench --methods gguf --push ORG`, --keep-variants all: hub.gguf_repo)")
    if not (variant_dir / "config.json").exists():
        raise ValueError(f"variant: {variant_dir} is not a saved model directory (no config.json)")
    manifest = load_manifest(variant_dir)
    if run_dir is not None and not (Path(run_dir) / FILENAME).exists():
        raise ValueError(f"run-dir: {run_dir} holds no {FILENAME} (run `kick bench --run-dir {run_dir}` first)")
    secret = token()
    plots = {f"plots/{name}": Path(run_dir) / name for name in PLOTS  # only the plot of the variant's kind
             if name == plot_for(manifest["spec"]) and run_dir and (Path(run_dir) / name).exists()}
    card = variant_card(variant_dir, repo_id, run_dir, plots=list(plots), base_model=base_model)
    safe = (f"The local variant {variant_dir} is untouched and the remote repo stays at its previous commit; re-run "
            f"the same command to retry (files already on the Hub are not uploaded again).")
    api = HfApi()
    with hub_errors(f"push of {variant_dir} to {repo_id}", safe, secret):
        ensure_repo(api, repo_id, "model", private, secret)
        ops, head = exact_operations(api, repo_id, "model", _operations(variant_dir, str(card), plots, manifest))
        info = api.create_commit(repo_id, ops, repo_type="model", parent_commit=head,
                                 commit_message=f"kick-hub: {manifest['label']} of "
                                                f"{base_model or public_name(manifest['base_model'])}")
    return info.commit_url if info is not None else api.repo_info(repo_id).sha


def repo_name(model: str, label: str) -> str:
    """Repo name of a sweep variant: ``<model name>-<label>`` (``world-wanda-50``)."""
    base = public_name(model).split("/")[-1]
    return f"{base}-{label}"


def push_sweep(run_dir: str | Path, org: str, private: bool = False) -> dict[str, str]:
    """Every variant the sweep made in its run dir to ``org/<model>-<label>``, its gguf variants together to
    ``org/<model>-GGUF`` (``hub.gguf_repo``: one file per quant type); label -> commit URL. External checkpoints
    (``--variant``) are not uploaded again: the cards name them by source and commit."""
    from kick_hub.bench.store import Store

    check_org(org)
    store = Store(run_dir, None)
    model = store.model
    variants = [v for v in store.variants() if v["method"] not in ("dense", "external") and v["path"]]
    store.close()
    if not variants:
        raise HubError(f"run-dir: {run_dir} has no compressed variants to push")
    gguf = [v for v in variants if v["method"] == "gguf"]
    variants = [v for v in variants if v["method"] != "gguf"]
    repos = {v["label"]: f"{org}/{repo_name(model, v['label'])}" for v in variants}
    for repo_id in repos.values():
        check_repo_id(repo_id)
    urls = {v["label"]: push_variant(v["path"], repos[v["label"]], private, run_dir) for v in variants}
    if gguf:
        from kick_hub.hub.gguf_repo import push_gguf, repo_name as gguf_repo_name

        url = push_gguf(run_dir, f"{org}/{gguf_repo_name(model)}", private)
        urls.update({v["label"]: url for v in gguf})
    return urls
