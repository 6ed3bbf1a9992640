"""``kick publish-tasks``: every evaluate module folder as a Gradio Space, so that
``evaluate.load("<org>/<task-id>")`` works against the Hub endpoint in use.

The folders are package data (``kick_hub/evaluate_metrics/<task>/``; ``evaluate_metrics/`` at the repository root
links there), so publishing works the same from a checkout and from an installed wheel, where the links to the
scoring files are real copies.

evaluate fetches ``<name>.py`` from the Space ``<org>/<name>`` (``factoid-qa.py`` for ``llmkick/factoid-qa``), then
the files it imports relatively; the scoring files are symlinks in the checkout and are uploaded as their content.
Each commit leaves the Space holding exactly the module's files (plus ``.gitattributes``; see
``kick_hub.hub.push.exact_operations``): a file the module no longer has is deleted in the same commit.
"""

from __future__ import annotations

from pathlib import Path

from kick_hub.hub import check_org, check_repo_id, ensure_repo, hub_errors, token

MODULES_DIR = Path(__file__).resolve().parents[1] / "evaluate_metrics"
DEFAULT_ORG = "llmkick"


def task_id(folder: Path) -> str:
    """The Space / evaluate-module name of a task module folder: its name with ``_`` as ``-`` (``factoid_qa`` ->
    ``factoid-qa``)."""
    return folder.name.replace("_", "-")


def module_files(folder: Path, org: str) -> dict[str, bytes]:
    """path in the Space -> content: the script renamed after the Space, ``app.py`` loading from ``org``."""
    files = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix == ".pyc":
            continue
        name = f"{task_id(folder)}.py" if path.name == f"{folder.name}.py" else path.name
        data = path.read_bytes()
        if path.name == "app.py":
            data = data.replace(f'"{DEFAULT_ORG}/'.encode(), f'"{org}/'.encode())
        files[name] = data
    return files


def publish_tasks(org: str = DEFAULT_ORG, private: bool = False, modules_dir: str | Path = MODULES_DIR,
                  only: list[str] | None = None) -> dict[str, str]:
    """Create/update one Space per module so that it holds exactly the module's files; returns Space id -> commit URL
    (or the current sha when unchanged)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from kick_hub.hub.push import exact_operations

    check_org(org)
    folders = [f for f in sorted(Path(modules_dir).iterdir()) if (f / f"{f.name}.py").is_file()]
    if not folders:
        raise ValueError(f"modules-dir: {modules_dir} holds no evaluate module folders")
    if only:
        known = {task_id(f): f for f in folders}
        unknown = sorted(set(only) - set(known))
        if unknown:
            raise ValueError(f"task: unknown {unknown}; allowed: {sorted(known)}")
        folders = [known[t] for t in only]
    for f in folders:
        check_repo_id(f"{org}/{task_id(f)}")
    secret = token()
    api = HfApi()
    out = {}
    for folder in folders:
        space = f"{org}/{task_id(folder)}"
        ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data)
               for name, data in module_files(folder, org).items()]
        with hub_errors(f"publishing {folder.name} to the Space {space}", "The Space stays at its previous commit; "
                        "re-run to retry.", secret):
            ensure_repo(api, space, "space", private, secret, space_sdk="gradio")
            ops, head = exact_operations(api, space, "space", ops)
            info = api.create_commit(space, ops, repo_type="space", parent_commit=head,
                                     commit_message=f"kick-hub: {space}")
            out[space] = info.commit_url if info is not None else api.space_info(space).sha
    return out
