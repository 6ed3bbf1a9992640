"""The Space's models: which can be chosen (the run dir's kept variants, an allowlist of Hub repo ids), the
variants offered first, the LRU cache of loaded engines (``Models``), and where generation runs (``on_gpu``)."""

from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from kick_hub.bench.store import FILENAME
from kick_hub.space.limits import CACHE_SIZE, GPU_SECONDS, MAX_PANES

if TYPE_CHECKING:
    from kick_hub.device import Placement


def is_kept(path: str | Path | None) -> bool:
    """Whether a sweep variant can still be loaded: its directory is there with its manifest
    (``kick_hub.variant.MANIFEST``); ``kick bench --keep-variants none|pushed`` deletes variant directories once
    their scores are committed (or pushed)."""
    from kick_hub.variant import MANIFEST

    return bool(path) and (Path(path) / MANIFEST).is_file()


class Models:
    """The allowlist (display name -> model id or variant dir) and an LRU cache of loaded engines. Of a run dir's
    variants only the kept ones (``is_kept``) are offered."""

    def __init__(self, run_dir: str | Path | None, allow: list[str] = (), placement: Placement | None = None
                 ) -> None:
        from kick_hub.hub import check_repo_id

        self.placement = placement  # where every engine loads (``make_engine``; None: load_model's default)
        self.choices: dict[str, str] = {"world": "world"}
        self.featured: list[str] = []  # the run dir's variants offered first (``featured_variants``)
        self.scored: list[str] = []  # every compressed variant the run dir has scores of, kept or not
        if run_dir and (Path(run_dir) / FILENAME).exists():
            from kick_hub.bench.store import Store

            store = Store.open_readonly(run_dir)
            scored = [v for v in store.variants() if v["label"] != "dense"]
            self.scored = [v["label"] for v in scored]
            offered = [v for v in scored if is_kept(v["path"])]
            self.choices = {"dense": store.model}
            self.choices.update({v["label"]: v["path"] for v in offered})
            self.featured = featured_variants(offered)
            store.close()
        for repo_id in allow:
            self.choices[check_repo_id(repo_id, "allow")] = repo_id
        self._cache: OrderedDict = OrderedDict()
        self._templates: dict[str, bool] = {}  # path -> whether its tokenizer has a chat template
        self._lock = threading.Lock()

    def resolve(self, name: str) -> str:
        """The model id or variant dir of an offered display name; ValueError naming ``model`` otherwise."""
        if not isinstance(name, str) or name not in self.choices:
            raise ValueError(f"model: {name!r} is not offered here; choose one of {sorted(self.choices)}")
        return self.choices[name]

    def has_chat_template(self, name: str) -> bool:
        """Whether ``name``'s tokenizer has a chat template (read from the loaded engine, else from the tokenizer
        alone, cached; a tokenizer that cannot be read counts as none). ValueError naming ``model`` for a name not
        offered."""
        path = self.resolve(name)
        with self._lock:
            if path in self._cache:
                return self._cache[path][0].has_chat_template()
            if path in self._templates:
                return self._templates[path]
        from transformers import AutoTokenizer

        from kick_hub.models import resolve as resolve_model

        try:
            found = bool(getattr(AutoTokenizer.from_pretrained(resolve_model(path)), "chat_template", None))
        except (OSError, ValueError, TypeError):
            found = False
        with self._lock:
            self._templates[path] = found
        return found

    def engine(self, name: str):
        """The cached engine for ``name`` (loaded once; the least recently used is dropped beyond CACHE_SIZE)."""
        from kick_hub.backends import make_engine

        path = self.resolve(name)
        with self._lock:
            if path not in self._cache:
                engine = make_engine(path, placement=self.placement, batch_size=1)
                self._cache[path] = (engine, threading.Lock())
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(path)
            return self._cache[path]


def on_gpu(fn):
    """``fn`` wrapped by ``spaces.GPU(duration=GPU_SECONDS)`` when the ``spaces`` package is importable (a Hub
    Space; on ZeroGPU hardware a function holds a GPU only while a call to it runs, and only when so wrapped; on
    other hardware the wrapper has no effect); ``fn`` itself otherwise (``kick space`` on any machine)."""
    if importlib.util.find_spec("spaces") is None:
        return fn
    import spaces

    return spaces.GPU(duration=GPU_SECONDS)(fn)


def featured_variants(variants: list[dict]) -> list[str]:
    """Labels of the variants a visitor sees first, at most ``MAX_PANES - 1``: the 50 % unstructured pruning
    variants (sweep order) and GPTQ 4-bit, where the loss of knowledge shows; without any of those, the variant
    whose sparsity is nearest 50 %, else the first one."""
    half = [v["label"] for v in variants if v.get("pattern") is None and v.get("sparsity") == 0.5]
    gptq4 = [v["label"] for v in variants if v.get("method") == "gptq" and v.get("bits") == 4][:1]
    featured = half[:MAX_PANES - 1 - len(gptq4)] + gptq4
    if featured or not variants:
        return featured
    pruned = [v for v in variants if v.get("sparsity") is not None]
    return [min(pruned, key=lambda v: abs(v["sparsity"] - 0.5))["label"] if pruned else variants[0]["label"]]
