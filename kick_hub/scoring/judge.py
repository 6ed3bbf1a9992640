"""LLM-as-judge: one interface, two backends, versioned prompts, honest parsing.

- ``ChatCompletionsBackend``: any OpenAI-compatible ``/v1/chat/completions`` endpoint, through the official ``openai``
  client (extra ``judge``; huggingface_hub's InferenceClient refuses every URL, even a local one, under
  HF_HUB_OFFLINE). The key is read from an environment variable and never logged or stored.
- ``TransformersBackend``: a local chat model run by the project's engine.

Judge prompts are JSON files in ``judge_prompts/`` (``<name>-v<k>.json``): a template, a regex with one named group
per criterion, and the criteria. A reply the regex cannot parse (or a score outside 1-10) is counted in
``unparsable`` and left out of every mean: it is never turned into a number.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PROMPT_DIR = Path(__file__).parent / "judge_prompts"
BACKENDS = ("openai", "transformers")


def load_prompt(name: str) -> dict:
    """A judge prompt by name (``pairwise-v1``, ``single-v1``, ``summary-v1``)."""
    path = PROMPT_DIR / f"{name}.json"
    if not path.exists():
        allowed = sorted(p.stem for p in PROMPT_DIR.glob("*.json"))
        raise ValueError(f"judge prompt: must be one of {allowed}, got {name!r}")
    return json.loads(path.read_text())


class Backend(Protocol):
    name: str

    def complete(self, system: str, user: str) -> str: ...


class ChatCompletionsBackend:
    """OpenAI-compatible chat completions (OpenAI, vLLM, TGI, ``transformers serve``, ...)."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", max_tokens: int = 512,
                 timeout: float = 120.0) -> None:
        try:
            import openai
        except ImportError as e:
            raise ImportError("the openai judge backend needs the openai client: pip install 'kick-hub[judge]'") from e
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge base_url: must start with http:// or https://, got {base_url!r}")
        self.name = f"openai:{model}"
        self.model, self.max_tokens = model, max_tokens
        # The key stays inside the client; it is not kept on this object, so it cannot end up in a repr or a log.
        self._client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY",
                                     timeout=timeout, max_retries=2)

    def __repr__(self) -> str:
        return f"ChatCompletionsBackend(model={self.model!r})"

    def complete(self, system: str, user: str) -> str:
        reply = self._client.chat.completions.create(
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            model=self.model, max_tokens=self.max_tokens, temperature=0.0,
        )
        return reply.choices[0].message.content or ""


class TransformersBackend:
    """A local chat model as judge (greedy)."""

    def __init__(self, model: str, max_new_tokens: int = 256) -> None:
        from kick_hub.engine import Engine

        self.name = f"transformers:{model}"
        self.engine = Engine.from_name(model, batch_size=1)
        self.max_new_tokens = max_new_tokens

    def complete(self, system: str, user: str) -> str:
        return self.engine.generate([f"{system}\n\n{user}"], self.max_new_tokens, chat=True)[0]


def make_backend(spec: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY") -> Backend:
    """``openai:<model>`` (needs ``base_url``) or ``transformers:<model id or dir>``."""
    kind, _, model = spec.partition(":")
    if kind not in BACKENDS or not model:
        raise ValueError(f"judge: must be '<backend>:<model>' with backend one of {list(BACKENDS)}, got {spec!r}")
    if kind == "openai":
        if not base_url:
            raise ValueError("judge base_url: required for the openai backend (e.g. https://api.openai.com/v1)")
        return ChatCompletionsBackend(base_url, model, api_key_env)
    return TransformersBackend(model)


@dataclass
class JudgeResult:
    means: dict[str, float]          # criterion -> mean over parsable replies
    per_example: list[dict | None]   # criterion -> score, or None when unparsable
    unparsable: int
    replies: list[str]


class Judge:
    """Scores answers with a backend and a versioned prompt."""

    def __init__(self, backend: Backend, prompt: str) -> None:
        self.backend, self.prompt = backend, load_prompt(prompt)
        self.pattern = re.compile(self.prompt["parse"], re.IGNORECASE)

    def parse(self, reply: str) -> dict | None:
        match = self.pattern.search(reply)
        if not match:
            return None
        scores = {k: float(v) for k, v in match.groupdict().items()}
        return scores if all(1.0 <= v <= 10.0 for v in scores.values()) else None

    def score(self, questions: list[str], answers: list[str], references: list[str] | None = None,
              progress: str | None = None) -> JudgeResult:
        from tqdm.auto import tqdm

        if len(questions) != len(answers) or (references is not None and len(references) != len(answers)):
            raise ValueError("questions/answers/references: lengths differ")
        if "{reference}" in self.prompt["template"] and references is None:
            raise ValueError(f"references: judge prompt {self.prompt['name']!r} is pairwise and needs references")
        per_example, replies = [], []
        for i in tqdm(range(len(answers)), desc=progress or "judge", disable=progress is None):
            user = self.prompt["template"].format(question=questions[i], answer=answers[i],
                                                  reference=references[i] if references else "")
            reply = self.backend.complete(self.prompt["system"], user)
            replies.append(reply)
            per_example.append(self.parse(reply))
        parsed = [p for p in per_example if p is not None]
        keys = parsed[0].keys() if parsed else []
        means = {k: sum(p[k] for p in parsed) / len(parsed) for k in keys}
        return JudgeResult(means, per_example, len(per_example) - len(parsed), replies)
