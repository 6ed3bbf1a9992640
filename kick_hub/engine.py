"""Run a causal LM over prompts: batched greedy generation, option log-likelihoods, perplexity.

One ``Engine`` wraps a loaded ``(model, tokenizer)``. Prompts are sorted by length into batches (left padding) and
results come back in the caller's order; decoding is greedy, so runs are deterministic.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from kick_hub.models import ALIASES as MODEL_ALIASES
from kick_hub.models import WORLD_MODEL_DIR
from kick_hub.models import resolve as resolve_model

__all__ = ["Engine", "load_model", "resolve_model", "MODEL_ALIASES", "WORLD_MODEL_DIR"]


def load_model(name: str, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) for a Hub id, local dir or alias, with clear errors for non-causal or tokenizer-less
    models. ``trust_remote_code`` is never set."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = resolve_model(name)
    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as e:
        raise ValueError(f"model: cannot load {name!r} (not a local model directory, a known alias "
                         f"{sorted(MODEL_ALIASES)}, or a Hub id reachable now): {e}") from e
    if (getattr(config, "quantization_config", None) or {}).get("quant_method") == "sparse-bitmask":
        from kick_hub.compress import sparse_storage  # noqa: F401 - registers the format with transformers
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(f"model: {name!r} is a {config.model_type!r} model, not a causal LM "
                         f"(AutoModelForCausalLM cannot load it)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"model: {name!r} has no usable tokenizer ({e})") from e
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.eval()
    return model, tokenizer


class Engine:
    """Batched inference over one causal LM (CPU or whatever device the model sits on)."""

    def __init__(self, model, tokenizer, batch_size: int = 32, max_length: int | None = None) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size: must be positive, got {batch_size}")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        limit = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = min(max_length or limit, limit)
        self.device = next(model.parameters()).device

    @classmethod
    def from_name(cls, name: str, **kwargs) -> "Engine":
        return cls(*load_model(name), **kwargs)

    # ------------------------------------------------------------ prompts
    def render(self, prompt: str, chat: bool) -> str:
        """Wrap a user prompt in the model's chat template when the task asks for it and the model has one."""
        if chat and getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        return prompt

    def encode(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Token ids; keeps the *end* of a prompt that is too long (the question sits at the end)."""
        bos = self.tokenizer.bos_token
        out = []
        for t in texts:
            ids = self.tokenizer(t, add_special_tokens=not (bos and t.startswith(bos)))["input_ids"]
            out.append(ids[-max_length:])
        return out

    def _batches(self, encoded: list[list[int]]):
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = max(len(encoded[i]) for i in idx)
            pad = self.tokenizer.pad_token_id
            ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in idx], device=self.device)
            mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in idx],
                                device=self.device)
            yield idx, ids, mask

    # --------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, stop: Sequence[str] = (),
                 chat: bool = False, progress: str | None = None) -> list[str]:
        """Greedy continuations (prompt excluded), each cut at its first stop string, in input order."""
        from tqdm.auto import tqdm

        texts = [self.render(p, chat) for p in prompts]
        encoded = self.encode(texts, max(1, self.max_length - max_new_tokens))
        outputs: list[str] = [""] * len(texts)
        batches = list(self._batches(encoded))
        for idx, ids, mask in tqdm(batches, desc=progress or "generate", unit="batch", disable=progress is None):
            gen = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
                stop_strings=list(stop) or None, tokenizer=self.tokenizer if stop else None,
            )
            for row, i in enumerate(idx):
                text = self.tokenizer.decode(gen[row, ids.shape[1]:], skip_special_tokens=True)
                outputs[i] = cut_at_stop(text, stop)
        return outputs

    def stream(self, prompt: str, max_new_tokens: int = 32, stop: Sequence[str] = (), chat: bool = False):
        """The same greedy continuation as ``generate`` for one prompt, yielded as the text grows token by token
        (``TextIteratorStreamer`` on a worker thread); the last value equals ``generate([prompt], ...)[0]``."""
        from threading import Thread

        from transformers import TextIteratorStreamer

        ids = self.encode([self.render(prompt, chat)], max(1, self.max_length - max_new_tokens))[0]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(input_ids=torch.tensor([ids], device=self.device), max_new_tokens=max_new_tokens,
                      do_sample=False, pad_token_id=self.tokenizer.pad_token_id,
                      eos_token_id=self.tokenizer.eos_token_id, stop_strings=list(stop) or None,
                      tokenizer=self.tokenizer if stop else None, streamer=streamer)
        worker = Thread(target=torch.inference_mode()(self.model.generate), kwargs=kwargs, daemon=True)
        worker.start()
        text = ""
        for piece in streamer:
            text += piece
            yield cut_at_stop(text, stop)
        worker.join()

    # ----------------------------------------------------- log-likelihood
    @torch.inference_mode()
    def _last_logprobs(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # only the last position's logits: a 49 k vocabulary over 2 k-token MMLU prompts would otherwise take GBs
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                            logits_to_keep=1).logits[:, -1, :]
        return torch.log_softmax(logits.float(), dim=-1)

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str], chat: bool = False,
                        progress: str | None = None) -> list[list[float]]:
        """log P(choice | prompt) for each prompt and each choice. When every choice is one token after the prompt
        (option letters) this is one forward pass per prompt; otherwise each option is scored by its own pass."""
        from tqdm.auto import tqdm

        texts = [self.render(p, chat) for p in prompts]
        choice_ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
        if not all(len(c) == 1 for c in choice_ids):
            return [[self.continuation_logprob(t, c) for c in choices] for t in texts]
        token_ids = torch.tensor([c[0] for c in choice_ids], device=self.device)
        encoded = self.encode(texts, self.max_length - 1)
        out: list[list[float]] = [[] for _ in texts]
        for idx, ids, mask in tqdm(list(self._batches(encoded)), desc=progress or "score", unit="batch",
                                   disable=progress is None):
            logprobs = self._last_logprobs(ids, mask)[:, token_ids]
            for row, i in enumerate(idx):
                out[i] = logprobs[row].tolist()
        return out

    @torch.inference_mode()
    def continuation_logprob(self, context: str, continuation: str) -> float:
        """Sum of log P(continuation tokens | context), tokenized as lm-evaluation-harness does (whole string, then
        split at the context's length)."""
        ctx = self.encode([context], self.max_length)[0]
        whole = self.encode([context + continuation], self.max_length)[0]
        n_ctx = len(ctx) if whole[: len(ctx)] == ctx else len(ctx) - 1
        ids = torch.tensor([whole], device=self.device)
        logprobs = torch.log_softmax(self.model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        return float(logprobs[n_ctx - 1:].gather(-1, targets[n_ctx - 1:, None]).sum())

    # ---------------------------------------------------------- perplexity
    @torch.inference_mode()
    def perplexity(self, texts: Sequence[str], progress: str | None = None) -> dict[str, float]:
        """Token-level perplexity: exp(total NLL / predicted tokens), each text scored on its own (first token
        conditioned on BOS where the tokenizer adds one); texts longer than the context are cut."""
        from tqdm.auto import tqdm

        encoded = self.encode(texts, self.max_length)
        nll, count = 0.0, 0
        per_text = [0.0] * len(texts)
        for idx, ids, mask in tqdm(list(self._batches(encoded)), desc=progress or "perplexity", unit="batch",
                                   disable=progress is None):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, :-1].float()
            token_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            valid = mask[:, 1:] * mask[:, :-1]
            token_nll = token_nll * valid
            for row, i in enumerate(idx):
                n = int(valid[row].sum())
                per_text[i] = math.exp(float(token_nll[row].sum()) / max(n, 1))
            nll += float(token_nll.sum())
            count += int(valid.sum())
        return {"perplexity": math.exp(nll / max(count, 1)), "nll": nll / max(count, 1), "tokens": count,
                "per_example": per_text}


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text up to (excluding) the earliest stop string."""
    cut = min((text.find(s) for s in stop if s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text


def default_threads() -> None:
    """Use every core this process may run on (torch defaults can pick fewer inside containers)."""
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
