"""The llama.cpp backend: a GGUF file run through llama-cpp-python's low-level API (the ``kick_hub.backends.Backend``
protocol), for the quantizations most people run locally (Q8_0, Q6_K, Q4_K_M, the i-quants ...).

``LlamaCppEngine`` keeps the protocol's rules as the transformers backend does (``kick_hub.backends.transformers``):

- Stop rule: generation ends at any end-of-generation token the GGUF's vocabulary marks (``llama_vocab_is_eog``: its
  ``eos``, ``eot`` and the ids llama.cpp recognises as ending a turn), and is cut at the first stop string. Decoding is
  greedy (``argmax`` of the raw logits, the first index on ties, as ``torch.argmax``), so runs are deterministic.
- Context rule: the context is ``max_length`` tokens (default: the GGUF's training context, capped at
  ``DEFAULT_MAX_LENGTH``); a prompt that does not fit raises ``ValueError``, never cut. Perplexity scores long texts in
  the strided windows of ``kick_hub.scoring.perplexity.windows``, the rule every backend shares.
- One sequence per decode, the KV cache cleared between inputs: a text's scores never depend on what ran before it,
  so they are the same at every ``batch_size`` (kept for the protocol; llama.cpp's own batching splits a long input
  into ``n_ubatch`` chunks).
- Non-finite rule: every logit row read (a generation step before the stop, an option's log-prob, a scored
  perplexity position, a returned distribution) is checked with ``numpy.isfinite``; inputs with NaN / inf are counted
  in ``checked`` and the outputs keep their types.

The AMX crash: llama.cpp's CPU backend repacks quantized weights into "extra" buffer types, and its AMX path
(``ggml_backend_amx_mul_mat``, llama.cpp issue #20824) segfaults at the first decode of a quantized GGUF on CPUs with
AMX when llama-cpp-python was built with ``GGML_NATIVE=ON`` (pip's default). The model is therefore always loaded with
``use_extra_bufts = False`` (a ``llama_model_params`` field; the high-level ``llama_cpp.Llama`` does not expose it and
silently drops unknown keywords), whatever build is installed. Scores are unchanged (the plain CPU kernels compute
the same types).

Chat templates: the GGUF's ``tokenizer.chat_template`` is rendered with transformers' own jinja2 renderer
(``render_jinja_template``, with the special tokens as variables), exactly as ``apply_chat_template`` renders it.
Threads: ``llama_threads``, the count torch runs on (``kick`` commands set it from ``--threads``, ``OMP_NUM_THREADS``,
the cgroup quota: ``kick_hub.device.set_threads``); generation on busy cores is much faster with fewer threads
(docs/gguf.md).
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from kick_hub.backends import LogitCheck, NonFiniteLogits, check_fits, cut_at_stop

__all__ = ["LlamaCppEngine", "GGUFTokenizer", "HUB_GGUF", "INSTALL", "DEFAULT_MAX_LENGTH", "check_available",
           "find_gguf", "gguf_path", "hub_gguf", "is_gguf", "llama_threads", "load_model_file", "metadata",
           "model_params", "tokenize_text"]

INSTALL = ('pip install -e ".[gguf]"   (llama-cpp-python builds from source, about 6 min of CPU; '
           "see docs/gguf.md)")
DEFAULT_MAX_LENGTH = 8192  # the default context when the GGUF's own is longer (KV-cache memory grows with it)
N_UBATCH = 512  # tokens per physical batch (llama.cpp splits a longer input; the logits are the same)


def check_available() -> None:
    """Raise ImportError naming the install command when llama-cpp-python is missing."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        raise ImportError(f"backend: llama.cpp needs llama-cpp-python: {INSTALL}") from e


def is_gguf(name: str | os.PathLike) -> bool:
    """Whether ``name`` names a GGUF file (ends in ``.gguf``, any case)."""
    return str(name).lower().endswith(".gguf")


# a GGUF file in a Hub repo: ORG/NAME/FILE.gguf or ORG/NAME@REV/FILE.gguf (FILE may sit in a folder of the repo)
HUB_GGUF = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[^/]+))?/(?P<file>.+\.gguf)$", re.IGNORECASE)


def hub_gguf(name: str | os.PathLike) -> tuple[str, str | None, str] | None:
    """``(repo id, revision or None, file)`` when ``name`` is a Hub GGUF reference (``HUB_GGUF``) and no local path of
    that name exists; None otherwise."""
    text = str(name)
    match = HUB_GGUF.match(text)
    if match is None or text.startswith((".", "/", "~")) or Path(text).expanduser().exists():
        return None
    return match["repo"], match["rev"], match["file"]


def find_gguf(name: str | os.PathLike) -> Path | None:
    """The GGUF file ``name`` stands for, without reading it: a name ending in ``.gguf`` (existing or not: the engine
    says which; a Hub reference ``ORG/NAME[@REV]/FILE.gguf`` is fetched with ``hf_hub_download``, from the cache
    when offline: ``gguf_path``), or a directory without ``config.json`` holding exactly one ``.gguf`` file (a ``kick
    compress --method gguf`` variant); None for anything else (a checkpoint directory, an alias, a Hub id)."""
    hub = hub_gguf(name)
    if hub is not None:
        repo, rev, file = hub
        return gguf_path(repo, file, rev)
    if is_gguf(name):
        return Path(name).expanduser()
    path = Path(str(name)).expanduser()
    if path.is_dir() and not (path / "config.json").exists():
        files = sorted(p for p in path.glob("*.gguf") if not p.name.startswith("."))
        if len(files) == 1:
            return files[0]
    return None


def gguf_path(name: str, gguf_file: str | None = None, revision: str | None = None) -> Path:
    """The local GGUF file for ``name``: a path ending in ``.gguf`` (must exist), or a Hub id with ``gguf_file`` (the
    file in that repo, fetched with ``huggingface_hub.hf_hub_download``, which reads only the cache when
    ``HF_HUB_OFFLINE=1``). ValueError naming ``model`` / ``gguf_file`` otherwise."""
    if gguf_file is None:
        path = find_gguf(name) or Path(name).expanduser()
        if not is_gguf(path):
            raise ValueError(f"model: {name!r} is not a .gguf file; give FILE.gguf, or a Hub id with --gguf-file")
        if not path.is_file():
            raise ValueError(f"model: no such GGUF file: {name!r}")
        return path
    if not is_gguf(gguf_file):
        raise ValueError(f"gguf_file: must name a .gguf file in the repo, got {gguf_file!r}")
    local = Path(name).expanduser()
    if local.is_dir():
        path = local / gguf_file
        if not path.is_file():
            raise ValueError(f"gguf_file: {gguf_file!r} is not in the directory {name!r}")
        return path
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(hf_hub_download(name, gguf_file, revision=revision))
    except HFValidationError:
        raise ValueError(f"model: {name!r} is neither a directory nor a Hub id ORG/NAME") from None
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, missing file: one line naming what was asked
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"gguf_file: cannot fetch {gguf_file!r} from {name!r} ({first})") from e


_LOG_CALLBACK = None  # the ctypes callback must outlive every call into llama.cpp
_LOG: list[str] = []  # the text llama.cpp logged while capturing (quantizer fallbacks, load errors)
_CAPTURE = [False]


def _quiet_llama() -> None:
    """Route llama.cpp's log through a callback: dropped, or kept in ``_LOG`` while ``_CAPTURE[0]`` (the quantizer
    reads its fallbacks there). llama.cpp otherwise prints every tensor it loads to stderr."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return
    import llama_cpp

    def log(level: int, text: bytes, user_data) -> None:
        if _CAPTURE[0] and text:
            _LOG.append(text.decode("utf-8", errors="replace"))
        elif os.environ.get("KICK_LLAMA_LOG") and text:
            print(text.decode("utf-8", errors="replace"), end="", file=__import__("sys").stderr)

    _LOG_CALLBACK = llama_cpp.llama_log_callback(log)
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()


def model_params(n_gpu_layers: int = 0, vocab_only: bool = False):
    """llama.cpp's default ``llama_model_params`` with ``use_extra_bufts = False`` (no weight repacking into extra
    buffer types: the AMX crash, module docstring), ``n_gpu_layers`` and ``vocab_only``."""
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = False
    params.n_gpu_layers = n_gpu_layers
    params.vocab_only = vocab_only
    return params


def load_model_file(path: Path, n_gpu_layers: int = 0, vocab_only: bool = False):
    """``llama_model_load_from_file`` with ``model_params`` (``use_extra_bufts = False``); returns the model pointer.
    ValueError naming ``model`` when llama.cpp cannot load the file (the reason from its log)."""
    import llama_cpp

    _quiet_llama()
    params = model_params(n_gpu_layers, vocab_only)
    _LOG.clear()
    _CAPTURE[0] = True
    try:
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    finally:
        _CAPTURE[0] = False
    if not model:
        errors = [line.strip() for line in "".join(_LOG).splitlines() if "error" in line.lower()]
        raise ValueError(f"model: llama.cpp cannot load {path.name} ({errors[-1] if errors else 'no reason logged'})")
    return model


def tokenize_text(vocab, text: str, add_special: bool) -> list[int]:
    """Token ids of ``text`` in the llama.cpp vocabulary ``vocab``, special tokens in the text parsed, BOS / EOS
    added as the GGUF says when ``add_special``."""
    import llama_cpp

    data = text.encode("utf-8")
    size = len(data) + 8
    buf = (llama_cpp.llama_token * size)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, size, add_special, True)
    if n < 0:
        size = -n
        buf = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, size, add_special, True)
    return list(buf[:n])


class GGUFTokenizer:
    """The vocabulary of a GGUF file read alone (llama.cpp ``vocab_only``: no weights), with the members of a
    transformers tokenizer that ``kick_hub.external.tokenizer_difference`` compares: ``get_vocab()`` (token text ->
    id), ``bos_token_id`` / ``eos_token_id`` / ``pad_token_id`` (None where the GGUF has none) and ``encode(text)``
    (BOS / EOS added as the GGUF says, as ``LlamaCppEngine.token_ids`` encodes a prompt). ValueError naming
    ``model`` when llama.cpp cannot read the file; ImportError without llama-cpp-python."""

    def __init__(self, path: str | os.PathLike) -> None:
        check_available()
        import llama_cpp

        self._lib = llama_cpp
        self.model = load_model_file(Path(path), vocab_only=True)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)

        def valid(token: int) -> int | None:
            return token if 0 <= token < self.n_vocab else None

        self.bos_token_id = valid(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos_token_id = valid(llama_cpp.llama_vocab_eos(self.vocab))
        self.pad_token_id = valid(llama_cpp.llama_vocab_pad(self.vocab))

    def get_vocab(self) -> dict[str, int]:
        """Token text -> id over the whole vocabulary (the first id of a text stored twice)."""
        out: dict[str, int] = {}
        for i in range(self.n_vocab):
            out.setdefault(self._lib.llama_vocab_get_text(self.vocab, i).decode("utf-8", errors="replace"), i)
        return out

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with BOS / EOS added as the GGUF says."""
        return tokenize_text(self.vocab, text, True)

    def __del__(self) -> None:
        if getattr(self, "model", None):
            try:
                self._lib.llama_model_free(self.model)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass
            self.model = None


def _meta(model, key: str) -> str | None:
    import llama_cpp

    size = 1 << 16
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, size)
        if n < 0:
            return None
        if n < size:
            return buf.value.decode("utf-8", errors="replace")
        size = n + 1


def metadata(model) -> dict[str, str]:
    """Every GGUF metadata key -> its value as llama.cpp prints it (arrays summarised), of a loaded model."""
    import llama_cpp

    out = {}
    for i in range(llama_cpp.llama_model_meta_count(model)):
        key = ctypes.create_string_buffer(512)
        llama_cpp.llama_model_meta_key_by_index(model, i, key, 512)
        size = 1 << 16
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_model_meta_val_str_by_index(model, i, buf, size)
        if n >= size:
            buf = ctypes.create_string_buffer(n + 1)
            llama_cpp.llama_model_meta_val_str_by_index(model, i, buf, n + 1)
        out[key.value.decode()] = buf.value.decode("utf-8", errors="replace")
    return out


class LlamaCppEngine:
    """One GGUF model in llama.cpp, CPU (or GPU layers where the build offloads): the llama.cpp implementation of
    ``kick_hub.backends.Backend`` (module docstring for its rules)."""

    def __init__(self, path: str | os.PathLike, batch_size: int = 32, max_length: int | None = None,
                 threads: int | None = None, n_gpu_layers: int = 0, asked=None) -> None:
        check_available()
        import llama_cpp

        if batch_size <= 0:
            raise ValueError(f"batch_size: must be positive, got {batch_size}")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length: must be at least 2, got {max_length}")
        self.path = Path(path)
        self.batch_size = batch_size
        self.threads = llama_threads(threads)
        self.n_gpu_layers = n_gpu_layers
        self.asked = asked
        self._lib = llama_cpp
        self.model = load_model_file(self.path, n_gpu_layers)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        trained = llama_cpp.llama_model_n_ctx_train(self.model)
        self.max_length = min(max_length or min(trained, DEFAULT_MAX_LENGTH), trained)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.max_length
        params.n_batch = self.max_length  # one input (prompt or perplexity window) per decode call
        params.n_ubatch = min(self.max_length, N_UBATCH)
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = self.threads
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise ValueError(f"max_length: llama.cpp cannot make a {self.max_length}-token context for "
                             f"{self.path.name} (out of memory?); give a smaller --max-length")
        self.max_length = min(self.max_length, llama_cpp.llama_n_ctx(self.ctx))
        self._batch = llama_cpp.llama_batch_init(self.max_length, 0, 1)
        self.bos_id = llama_cpp.llama_vocab_bos(self.vocab)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.stop_token_ids = self._eog_ids()
        self.chat_template = _meta(self.model, "tokenizer.chat_template")
        self.architecture = _meta(self.model, "general.architecture")
        self.checked = LogitCheck()

    @classmethod
    def from_name(cls, name: str, placement=None, gguf_file: str | None = None, **kwargs) -> "LlamaCppEngine":
        """An engine over the GGUF ``name`` (a ``.gguf`` path) or ``gguf_file`` in the Hub repo / directory ``name``
        (``gguf_path``). ``placement`` (``kick_hub.device.Placement``): device ``auto`` / ``cpu`` (``cuda`` only with
        a GPU build of llama-cpp-python: every layer offloaded), dtype ``auto`` (the GGUF fixes its weight types), no
        device map; ValueError naming the option otherwise, before the file is read. ``kwargs``: ``batch_size``,
        ``max_length``, ``threads``."""
        check_available()
        n_gpu_layers = _gpu_layers(placement)
        return cls(gguf_path(name, gguf_file), n_gpu_layers=n_gpu_layers, asked=placement, **kwargs)

    def close(self) -> None:
        """Free the context, batch and model (also done when the engine is garbage-collected)."""
        lib = self._lib
        if getattr(self, "ctx", None):
            lib.llama_batch_free(self._batch)
            lib.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            lib.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ------------------------------------------------------------ provenance
    def _eog_ids(self) -> list[int]:
        """The vocabulary's end-of-generation ids: eos, eot, then every other id llama.cpp marks EOG, ascending."""
        lib = self._lib
        first = [lib.llama_vocab_eos(self.vocab), lib.llama_vocab_eot(self.vocab)]
        marked = [i for i in range(self.n_vocab) if lib.llama_vocab_is_eog(self.vocab, i)]
        return list(dict.fromkeys(i for i in first + marked if i >= 0 and lib.llama_vocab_is_eog(self.vocab, i)))

    def generation_settings(self) -> dict:
        """How this engine decodes, for a results file's config: the stop (EOG) token ids and greedy."""
        return {"stop_token_ids": list(self.stop_token_ids), "pad_token_id": None, "do_sample": False}

    def placement(self) -> dict:
        """Where the model runs, for a results file's config: the device, ``dtype`` as the GGUF's file type (e.g.
        ``Q4_K - Medium``), no device map, what was asked, the backend, threads and GPU layers."""
        from kick_hub.device import Placement

        desc = ctypes.create_string_buffer(256)
        self._lib.llama_model_desc(self.model, desc, 256)
        asked = self.asked or Placement()
        return {"device": "cuda" if self.n_gpu_layers else "cpu", "dtype": _ftype_name(self.model),
                "device_map": None, "asked": asked.to_dict(), "backend": "llama.cpp",
                "model_desc": desc.value.decode(errors="replace"), "threads": self.threads,
                "n_gpu_layers": self.n_gpu_layers}

    # ------------------------------------------------------------ tokens and context
    def has_chat_template(self) -> bool:
        """Whether the GGUF carries ``tokenizer.chat_template``."""
        return bool(self.chat_template)

    def _special_tokens(self) -> dict[str, str]:
        lib = self._lib
        out = {}
        for key, tid in (("bos_token", lib.llama_vocab_bos(self.vocab)), ("eos_token", lib.llama_vocab_eos(self.vocab)),
                         ("pad_token", lib.llama_vocab_pad(self.vocab))):
            if 0 <= tid < self.n_vocab:
                out[key] = lib.llama_vocab_get_text(self.vocab, tid).decode("utf-8", errors="replace")
        return out

    def render(self, prompt: str, chat: bool) -> str:
        """The prompt in the GGUF's chat template (one user turn, generation prompt added) when ``chat`` and it has
        one, rendered by transformers' jinja2 renderer with the special tokens as variables; else unchanged."""
        if not (chat and self.has_chat_template()):
            return prompt
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template([[{"role": "user", "content": prompt}]], chat_template=self.chat_template,
                                            add_generation_prompt=True, **self._special_tokens())
        return rendered[0]

    def _tokenize(self, text: str, add_special: bool) -> list[int]:
        return tokenize_text(self.vocab, text, add_special)

    def token_ids(self, text: str) -> list[int]:
        """Token ids of an already rendered text, special tokens in it parsed, with BOS where the GGUF adds one
        unless the text already starts with BOS (chat templates that write it themselves)."""
        bos = self._special_tokens().get("bos_token")
        return self._tokenize(text, add_special=not (bos and text.startswith(bos)))

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` alone, no BOS / EOS added (a continuation, an option, a reply)."""
        return self._tokenize(text, add_special=False)

    def _piece(self, token: int) -> bytes:
        lib = self._lib
        buf = ctypes.create_string_buffer(64)
        n = lib.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lib.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
        return buf.raw[:n]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` with special / control tokens left out (transformers' ``skip_special_tokens=True``)."""
        if not ids:
            return ""
        lib = self._lib
        arr = (lib.llama_token * len(ids))(*ids)
        size = 4 * len(ids) + 16
        buf = ctypes.create_string_buffer(size)
        n = lib.llama_detokenize(self.vocab, arr, len(ids), buf, size, True, False)
        if n < 0:
            size = -n
            buf = ctypes.create_string_buffer(size)
            n = lib.llama_detokenize(self.vocab, arr, len(ids), buf, size, True, False)
        return buf.raw[:n].decode("utf-8", errors="replace")

    def token_prefixes(self, text: str) -> list[str]:
        """``text`` cut after 0, 1, ..., n of its tokens (no special tokens): by the byte length of each token's
        piece where the pieces spell the text (byte-level BPE; a leading space a SentencePiece vocabulary adds is
        allowed for), a token ending inside a character keeping it (as transformers' character offsets), so each
        kept text is a prefix of the original string; decoding the first ``k`` ids otherwise."""
        ids = self.tokenize(text)
        pieces = [self._piece(i) for i in ids]
        data = text.encode("utf-8")
        whole = b"".join(pieces)
        skip = 0 if whole == data else 1 if whole == b" " + data else None
        if skip is None:
            return [""] + [self.decode(ids[:k]) for k in range(1, len(ids) + 1)]
        from bisect import bisect_left
        from itertools import accumulate

        starts = list(accumulate((len(c.encode("utf-8")) for c in text[:-1]), initial=0))  # each char's first byte
        out, end = [""], -skip
        for piece in pieces:
            end += len(piece)
            # a token ending inside a multi-byte character keeps that character, as transformers' offsets do
            out.append(text[:bisect_left(starts, max(end, 0))] if end > 0 else "")
        return out

    def count_tokens(self, prompt: str, chat: bool = False) -> int:
        """Tokens the model reads for ``prompt`` (after the chat template when ``chat``), BOS included."""
        return len(self.token_ids(self.render(prompt, chat)))

    def room(self, reserve: int) -> int:
        """Prompt tokens that fit when ``reserve`` tokens must fit after the prompt in the context."""
        if not 0 <= reserve < self.max_length:
            raise ValueError(f"max_new_tokens: must be between 0 and {self.max_length - 1} so that a prompt still fits "
                             f"the model's {self.max_length}-token context, got {reserve}")
        return self.max_length - reserve

    def encode(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Token ids of each text; a text longer than ``max_length`` tokens raises ``ValueError`` (never cut)."""
        out = []
        for i, t in enumerate(texts):
            ids = self.token_ids(t)
            check_fits(i, ids, max_length, self.max_length)
            out.append(ids)
        return out

    # ------------------------------------------------------------ the model
    def _decode(self, ids: Sequence[int], start: int, all_logits: bool, clear: bool = True) -> np.ndarray:
        """Run ``ids`` at positions ``start ...`` (the KV cache cleared first when ``clear``) and return the float32
        logits ``[rows, V]``: every position when ``all_logits``, else the last one. RuntimeError when llama.cpp
        refuses the batch."""
        lib = self._lib
        if clear:
            lib.llama_memory_clear(lib.llama_get_memory(self.ctx), True)
        n = len(ids)
        batch = self._batch
        batch.n_tokens = n
        for k, tok in enumerate(ids):
            batch.token[k] = tok
            batch.pos[k] = start + k
            batch.n_seq_id[k] = 1
            batch.seq_id[k][0] = 0
            batch.logits[k] = all_logits or k == n - 1
        rc = lib.llama_decode(self.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama.cpp: llama_decode returned {rc} for {n} tokens at position {start}")
        rows = n if all_logits else 1
        ptr = lib.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(rows, self.n_vocab)).copy()

    @staticmethod
    def _log_softmax(logits: np.ndarray) -> np.ndarray:
        """Natural-log softmax over the last axis, in float64 then float32 (rows with NaN / inf stay non-finite)."""
        x = logits.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            m = x.max(-1, keepdims=True)
            out = x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))
        return out.astype(np.float32)

    # ------------------------------------------------------------ generation
    def _greedy(self, ids: list[int], max_new_tokens: int, stop: Sequence[str]) -> Iterator[tuple[list[int], bool]]:
        """Yield ``(generated ids so far, non-finite seen)`` after each greedy step, up to the first stop id (not
        included), ``max_new_tokens``, or a stop string in the decoded text."""
        out: list[int] = []
        bad = False
        if max_new_tokens == 0:
            return
        logits = self._decode(ids, 0, False)[0]
        while True:
            bad = bad or not bool(np.isfinite(logits).all())
            token = int(np.argmax(logits))
            if token in self.stop_token_ids:
                yield out, bad
                return
            out.append(token)
            yield out, bad
            if len(out) >= max_new_tokens or (stop and cut_at_stop(self.decode(out), stop) != self.decode(out)):
                return
            logits = self._decode([token], len(ids) + len(out) - 1, False, clear=False)[0]

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, stop: Sequence[str] = (),
                 chat: bool = False, progress: str | None = None) -> list[str]:
        """Greedy continuations (prompt excluded), in input order, each ended at the GGUF's EOG ids and cut at its
        first stop string. ``ValueError`` for a prompt that does not fit with ``max_new_tokens`` after it. Prompts
        whose logits were non-finite at a step before their stop are counted in ``checked``."""
        from tqdm.auto import tqdm

        encoded = self.encode([self.render(p, chat) for p in prompts], self.room(max_new_tokens))
        outputs, bad = [], []
        for ids in tqdm(encoded, desc=progress or "generate", unit="prompt", disable=progress is None):
            last, flag = [], False
            for last, flag in self._greedy(ids, max_new_tokens, stop):
                pass
            outputs.append(cut_at_stop(self.decode(last), stop))
            bad.append(flag)
        self.checked.add(bad)
        return outputs

    def stream(self, prompt: str, max_new_tokens: int = 32, stop: Sequence[str] = (),
               chat: bool = False) -> Iterator[str]:
        """``generate([prompt], ...)[0]`` yielded as it grows (the last value equals it); ``NonFiniteLogits`` after
        the stream when the logits were non-finite before the stop."""
        ids = self.encode([self.render(prompt, chat)], self.room(max_new_tokens))[0]
        flag, shown = False, None
        for out, flag in self._greedy(ids, max_new_tokens, stop):
            text = cut_at_stop(self.decode(out), stop)
            if text != shown:
                shown = text
                yield text
        if shown is None:
            yield ""
        self.checked.add([flag])
        if flag:
            raise NonFiniteLogits(f"model: non-finite (NaN / inf) logits while generating ({self.path.name}); the "
                                  f"text is not the model's answer")

    # ------------------------------------------------------------ log-likelihoods
    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str], chat: bool = False,
                        progress: str | None = None) -> list[list[float]]:
        """``[len(prompts)][len(choices)]`` log P(choice | rendered prompt): one decode per prompt when every choice
        is one token, else each option scored on its own (``continuation_logprob``). NaN, counted in ``checked``,
        for a prompt with non-finite logits."""
        from tqdm.auto import tqdm

        texts = [self.render(p, chat) for p in prompts]
        choice_ids = [self.tokenize(c) for c in choices]
        if not all(len(c) == 1 for c in choice_ids):
            scored = [[self._continuation(t, c) for c in choices] for t in texts]
            self.checked.add([any(b for _, b in row) for row in scored])
            return [[v for v, _ in row] for row in scored]
        columns = [c[0] for c in choice_ids]
        out, bad = [], []
        for ids in tqdm(self.encode(texts, self.room(1)), desc=progress or "score", unit="prompt",
                        disable=progress is None):
            logits = self._decode(ids, 0, False)[0]
            flag = not bool(np.isfinite(logits).all())
            bad.append(flag)
            out.append([float("nan")] * len(choices) if flag else
                       [float(v) for v in self._log_softmax(logits)[columns]])
        self.checked.add(bad)
        return out

    def continuation_logprob(self, context: str, continuation: str) -> float:
        """Sum of log P(continuation tokens | context), tokenized as lm-evaluation-harness does (whole string, then
        split at the context's length); ``ValueError`` when it does not fit; NaN (counted) when non-finite."""
        value, bad = self._continuation(context, continuation)
        self.checked.add([bad])
        return value

    def _continuation(self, context: str, continuation: str) -> tuple[float, bool]:
        ctx = self.token_ids(context)
        whole = self.encode([context + continuation], self.max_length)[0]
        n_ctx = len(ctx) if whole[: len(ctx)] == ctx else len(ctx) - 1
        logits = self._decode(whole, 0, True)[n_ctx - 1:-1]
        if not bool(np.isfinite(logits).all()):
            return float("nan"), True
        logprobs = self._log_softmax(logits)
        targets = whole[n_ctx:]
        return float(logprobs[np.arange(len(targets)), targets].astype(np.float64).sum()), False

    def next_token_logprobs(self, texts: Sequence[str], progress: str | None = None) -> list:
        """One float32 CPU tensor ``[T_i, V]`` per text: row ``t`` is log P(next token | the text's first ``t + 1``
        tokens) over the GGUF's vocabulary (``T_i = len(token_ids(text))``). ``ValueError`` for a text longer than
        ``max_length`` tokens or with no tokens, before any decode."""
        import torch
        from tqdm.auto import tqdm

        encoded = self.encode(texts, self.max_length)
        empty = next((i for i, ids in enumerate(encoded) if not ids), None)
        if empty is not None:
            raise ValueError(f"text: #{empty} has no tokens (an empty text and a vocabulary that adds no BOS); there "
                             f"is no position to predict from")
        out, bad = [], []
        for ids in tqdm(encoded, desc=progress or "logprobs", unit="text", disable=progress is None):
            logits = self._decode(ids, 0, True)
            bad.append(not bool(np.isfinite(logits).all()))
            out.append(torch.from_numpy(self._log_softmax(logits)))
        self.checked.add(bad)
        return out

    def perplexity(self, texts: Sequence[str], progress: str | None = None,
                   stride: int | None = None) -> dict[str, float | int | list]:
        """Token-level perplexity over ``texts``, the transformers backend's rules (``kick_hub.scoring.perplexity``:
        every token after the first scored once, long texts in windows of ``max_length`` tokens ``stride`` apart,
        default ``max_length // 2``): ``perplexity``, ``nll``, ``tokens``, ``per_example``, ``per_example_windows``,
        ``non_finite``."""
        import math

        from tqdm.auto import tqdm

        from kick_hub.scoring.perplexity import safe_exp, windows

        stride = self.max_length // 2 if stride is None else stride
        encoded = [self.token_ids(t) for t in texts]
        nll_sum, counts, bads, n_windows = [], [], [], []
        for ids in tqdm(encoded, desc=progress or "perplexity", unit="text", disable=progress is None):
            total, count, bad = 0.0, 0, False
            spans = windows(len(ids), self.max_length, stride)
            for begin, end, first in spans:
                window = ids[begin:end]
                if len(window) < 2 or first >= len(window):
                    continue
                logits = self._decode(window, 0, True)[first - 1:-1]
                bad = bad or not bool(np.isfinite(logits).all())
                logprobs = self._log_softmax(logits)
                targets = window[first:]
                total -= float(logprobs[np.arange(len(targets)), targets].astype(np.float64).sum())
                count += len(targets)
            nll_sum.append(total)
            counts.append(count)
            bads.append(bad)
            n_windows.append(len(spans))
        per_text = [math.nan if b else safe_exp(n / max(c, 1)) for n, c, b in zip(nll_sum, counts, bads)]
        mean = math.nan if any(bads) else sum(nll_sum) / max(sum(counts), 1)
        self.checked.add(bads)
        return {"perplexity": safe_exp(mean), "nll": mean, "tokens": sum(counts), "per_example": per_text,
                "per_example_windows": n_windows, "non_finite": sum(bads)}


def llama_threads(threads: int | None = None) -> int:
    """Threads llama.cpp runs on: ``threads`` (``kick_hub.device.resolve_threads`` checks it), else torch's thread
    count, which every ``kick`` command sets from ``--threads`` / ``OMP_NUM_THREADS`` / the cgroup quota
    (``kick_hub.device.set_threads``) before it builds an engine or quantizes."""
    if threads is not None:
        from kick_hub.device import resolve_threads

        return resolve_threads(threads)[0]
    import torch

    return torch.get_num_threads()


def _gpu_layers(placement) -> int:
    """GPU layers for ``placement``: 0 for ``auto`` / ``cpu``; every layer (-1) for ``cuda`` when this build of
    llama-cpp-python offloads. ValueError naming ``device`` / ``dtype`` / ``device_map`` for what llama.cpp cannot
    honour."""
    if placement is None:
        return 0
    if placement.dtype not in ("auto", None):
        raise ValueError(f"dtype: a GGUF fixes its own weight types; the llama.cpp backend takes --dtype auto only, "
                         f"got {placement.dtype!r} (quantize the GGUF to another type instead: docs/gguf.md)")
    if placement.device_map is not None or placement.max_memory is not None:
        raise ValueError("device_map: not used by the llama.cpp backend (drop --device-map / --max-memory)")
    if placement.device in ("auto", "cpu"):
        return 0
    import llama_cpp

    if str(placement.device).startswith("cuda") and llama_cpp.llama_supports_gpu_offload():
        return -1
    raise ValueError(f"device: this llama-cpp-python build runs on the CPU only; use --device cpu or auto, got "
                     f"{placement.device!r} (a CUDA build: CMAKE_ARGS=-DGGML_CUDA=on, docs/gguf.md)")


def _ftype_name(model) -> str:
    """The GGUF's file type as llama.cpp names it (``F32``, ``Q4_K - Medium`` ...)."""
    import llama_cpp

    try:
        return llama_cpp.llama_ftype_name(llama_cpp.llama_model_ftype(model)).decode()
    except (AttributeError, TypeError):
        return _meta(model, "general.file_type") or "unknown"
