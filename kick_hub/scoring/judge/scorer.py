"""``Judge``: scores answers with a backend and a versioned prompt, a pairwise prompt in both orders, every reply kept
in the verdict cache; ``make_judges`` builds one per judged task."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from kick_hub.scoring.judge.cache import VerdictCache, cache_key
from kick_hub.scoring.judge.endpoints import Backend, Completion, JudgeError, make_backend
from kick_hub.scoring.judge.parse import parse_reply
from kick_hub.scoring.judge.prompts import check_task_prompt, load_prompt
from kick_hub.scoring.judge.usage import JudgeUsage, _preference

# pairwise prompts are asked in both orders: the reference as Assistant 1 and the answer as Assistant 2, then swapped
ORDERS = ("reference-first", "answer-first")


@dataclass
class JudgeResult:
    """What ``Judge.score`` returns, in input order: per-criterion means (1-10 scale) over the examples with a
    verdict; each example's verdict (``per_example``: criterion -> score, the mean over the orders asked; None when
    a reply of any order is unparsable); ``unparsable`` examples without a verdict; ``replies`` (each example's raw
    replies, one per order) and ``orders`` (each order's verdict, mapped back to the record's sides: ``reference``
    is always the reference's score); ``order_names`` (``ORDERS`` for a pairwise prompt, else ``("single",)``);
    ``usage`` (``JudgeUsage``) and each example's share of it (``example_usage``)."""

    means: dict[str, float]
    per_example: list[dict | None]
    unparsable: int
    replies: list[list[str]]
    orders: list[list[dict | None]] = field(default_factory=list)
    order_names: tuple[str, ...] = ("single",)
    usage: JudgeUsage = field(default_factory=JudgeUsage)
    example_usage: list[dict] = field(default_factory=list)

    @property
    def disagreement(self) -> float | None:
        """Share of the examples compared in both orders where the judge's preference changed with the order
        (None: none compared)."""
        return self.usage.disagreements / self.usage.compared if self.usage.compared else None

    def scores(self) -> dict[str, float | int]:
        """The task-level numbers: ``judge_<criterion>`` means, ``judge_relative`` (answer / reference, LLM-KICK's
        pairwise score) for a pairwise prompt, ``judge_unparsable`` (examples without a verdict) and
        ``judge_order_disagreement`` (``disagreement``) when examples were compared in both orders."""
        out: dict = {f"judge_{k}": v for k, v in self.means.items()}
        if "answer" in self.means and "reference" in self.means and self.means["reference"]:
            out["judge_relative"] = self.means["answer"] / self.means["reference"]
        out["judge_unparsable"] = self.unparsable
        if self.disagreement is not None:
            out["judge_order_disagreement"] = self.disagreement
        return out

    def sample(self, i: int) -> dict:
        """Example ``i``'s fields for its sample record: ``judge`` (its verdict or None), ``judge_replies`` (raw
        replies, one per order), ``judge_orders`` (order -> verdict, for a prompt asked in both orders) and
        ``judge_usage`` (requests, cache_hits, prompt_tokens, completion_tokens, seconds spent on its requests)."""
        out = {"judge": self.per_example[i], "judge_replies": self.replies[i]}
        if len(self.order_names) > 1:
            out["judge_orders"] = dict(zip(self.order_names, self.orders[i]))
        out["judge_usage"] = self.example_usage[i]
        return out


class Judge:
    """Scores answers with a backend and a versioned prompt: a pairwise prompt in both orders (``both_orders``;
    MT-Bench, Zheng et al. 2023, sec. 3.3, swaps positions for the same reason), every reply kept in the verdict
    cache (``cache``: a ``VerdictCache`` or a path; None: no cache) and reused unless ``use_cache`` is False (fresh
    replies are still written, replacing the stored ones); more than ``max_unparsable`` (a share in [0, 1]) of
    unparsable replies fails the call (JudgeError). ``usage`` adds up every call's ``JudgeUsage``."""

    def __init__(self, backend: Backend, prompt: str, cache: VerdictCache | str | Path | None = None,
                 use_cache: bool = True, max_unparsable: float = 0.5, both_orders: bool = True) -> None:
        if not 0 <= max_unparsable <= 1:
            raise ValueError(f"judge-max-unparsable: must be a share in [0, 1], got {max_unparsable!r}")
        self.backend, self.prompt = backend, load_prompt(prompt)
        self.cache = VerdictCache(cache) if isinstance(cache, (str, Path)) else cache
        self.use_cache, self.max_unparsable = use_cache, max_unparsable
        self.pairwise = "{reference}" in self.prompt["template"]
        self.order_names = (ORDERS if both_orders else ORDERS[:1]) if self.pairwise else ("single",)
        self.usage = JudgeUsage()

    @property
    def cache_id(self) -> str:
        """The backend's ``cache_id`` (its ``name`` when it has none)."""
        return getattr(self.backend, "cache_id", None) or self.backend.name

    def parse(self, reply: str) -> dict | None:
        """Criterion -> score from one reply, or None when it is unparsable."""
        return parse_reply(reply, self.prompt["parse"])

    def render(self, question: str, answer: str, reference: str | None, order: str = "single") -> str:
        """The user message for one example in one order (``answer-first`` swaps reference and answer)."""
        if order == "answer-first":
            answer, reference = reference, answer
        return self.prompt["template"].format(question=question, answer=answer, reference=reference or "")

    def failure(self, done: Completion) -> str | None:
        """Why ``done`` carries no trustworthy reply because its backend failed: its own ``failure``; else
        ``"no content"`` for an empty reply; else, for a backend with ``max_new_tokens`` (the local one, which
        reports no finish reason), a reply of that many tokens or more was cut at the limit. None: a normal reply."""
        if done.failure:
            return done.failure
        if not done.text.strip():
            return "no content"
        limit = getattr(self.backend, "max_new_tokens", None)
        if isinstance(limit, int) and done.completion_tokens is not None and done.completion_tokens >= limit:
            return f"cut at the token limit ({done.completion_tokens} of max_new_tokens {limit})"
        return None

    def fresh_verdict(self, done: Completion) -> tuple[dict | None, str | None]:
        """``(verdict, failure)`` of a reply just received: the parsed verdict (None: unparsable) and ``failure``.
        A failed reply keeps a verdict only when its text parses to the same verdict without its last line (that
        line may be cut mid-score: ``relevance: 1`` of ``relevance: 10``), so re-parsing the stored reply later gives
        the same verdict; a failed reply without a verdict is not cached."""
        failure = self.failure(done)
        parsed = self.parse(done.text)
        if failure is not None and parsed is not None:
            head = done.text.rstrip("\n").rpartition("\n")[0]
            if self.parse(head) != parsed:
                parsed = None
        return parsed, failure

    @staticmethod
    def _oriented(parsed: dict | None, order: str) -> dict | None:
        """A verdict mapped back to the record's sides (``answer-first`` swaps them)."""
        if parsed is not None and order == "answer-first":
            parsed = {"reference": parsed["answer"], "answer": parsed["reference"]}
        return parsed

    def _complete(self, messages: list[tuple[str, str]], on_done, progress: str | None) -> None:
        many = getattr(self.backend, "complete_many", None)
        if many is not None:
            many(messages, on_done, progress)
            return
        for i, (system, user) in enumerate(messages):  # a backend with ``complete`` only
            began = time.perf_counter()
            text = self.backend.complete(system, user)
            on_done(i, Completion(text, None, None, 1, time.perf_counter() - began))

    def score(self, questions: list[str], answers: list[str], references: list[str] | None = None,
              progress: str | None = None) -> JudgeResult:
        """Judge each answer (the prompt's template filled with question, answer and, for a pairwise prompt,
        reference; once per order) and parse every reply (``parse_reply``). Replies come from the cache when it
        holds them, else from the backend (``complete_many``: concurrent or batched; identical requests are sent
        once). A fresh reply is cached as it arrives unless the backend failed on it and it has no verdict
        (``fresh_verdict``): such a reply counts as unparsable here and is asked again by the next call.
        ``progress``: a tqdm bar label (None: no bar). ``means`` is empty when no example has a verdict.

        Raises ValueError when the lists differ in length or a pairwise prompt gets no ``references``;
        JudgeError when the backend fails (replies received before the failure are cached) or when more than
        ``max_unparsable`` of the replies are unparsable."""
        if len(questions) != len(answers) or (references is not None and len(references) != len(answers)):
            raise ValueError("questions/answers/references: lengths differ")
        if self.pairwise and references is None:
            raise ValueError(f"references: judge prompt {self.prompt['name']!r} is pairwise and needs references")
        began = time.perf_counter()
        system, name = self.prompt["system"], self.prompt["name"]
        calls = [(i, order, self.render(questions[i], answers[i], references[i] if references else None, order))
                 for i in range(len(answers)) for order in self.order_names]
        keys = [cache_key(self.cache_id, name, system, user) for _, _, user in calls]
        stored = self.cache.get_many(keys) if self.cache is not None and self.use_cache else {}
        # an empty stored reply is a failure an older version cached: asked again
        stored = {k: row for k, row in stored.items() if row["reply"].strip()}
        todo = [k for k in dict.fromkeys(keys) if k not in stored]
        users = {k: user for k, (_, _, user) in zip(keys, calls)}
        fresh: dict[str, Completion] = {}
        fresh_parsed: dict[str, dict | None] = {}
        failures: dict[str, str] = {}  # key -> why the endpoint gave no verdict (not cached)

        def on_done(j: int, done: Completion) -> None:
            key = todo[j]
            fresh[key] = done
            fresh_parsed[key], failure = self.fresh_verdict(done)
            if failure is not None and fresh_parsed[key] is None:
                failures[key] = failure  # the endpoint failed, not the judge: the next run asks again
            elif self.cache is not None:
                self.cache.put(key, self.cache_id, name, done.text, fresh_parsed[key], done.prompt_tokens,
                               done.completion_tokens)

        self._complete([(system, users[k]) for k in todo], on_done, progress)

        usage = JudgeUsage(replies=len(calls))
        n = len(answers)
        replies: list[list[str]] = [[] for _ in range(n)]
        orders: list[list[dict | None]] = [[] for _ in range(n)]
        example_usage = [{"requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                          "seconds": 0.0} for _ in range(n)]
        charged: set[str] = set()
        for (i, order, _), key in zip(calls, keys):
            ex = example_usage[i]
            if key in fresh and key not in charged:  # the request was sent for this call
                charged.add(key)
                done = fresh[key]
                text = done.text
                counts = {"requests": done.attempts, "prompt_tokens": done.prompt_tokens or 0,
                          "completion_tokens": done.completion_tokens or 0}
                for k, v in counts.items():
                    ex[k] += v
                    setattr(usage, k, getattr(usage, k) + v)
                usage.retries += done.attempts - 1
                ex["seconds"] = round(ex["seconds"] + done.seconds, 3)
            else:
                text = fresh[key].text if key in fresh else stored[key]["reply"]
                ex["cache_hits"] += 1
                usage.cache_hits += 1
            verdict = self._oriented(fresh_parsed[key] if key in fresh else self.parse(text), order)
            usage.unparsable_replies += verdict is None
            replies[i].append(text)
            orders[i].append(verdict)

        per_example: list[dict | None] = []
        for verdicts in orders:
            if any(v is None for v in verdicts):
                per_example.append(None)
                continue
            per_example.append({k: sum(v[k] for v in verdicts) / len(verdicts) for k in verdicts[0]})
            if len(verdicts) == 2:
                usage.compared += 1
                usage.disagreements += _preference(verdicts[0]) != _preference(verdicts[1])
        usage.wall_s = time.perf_counter() - began
        self.usage.add(usage)
        if usage.replies and usage.unparsable_replies / usage.replies > self.max_unparsable:
            first = next(t for rs, vs in zip(replies, orders) for t, v in zip(rs, vs) if v is None)
            failed = [failures[k] for k in keys if k in failures]
            why = (f"; {len(failed)} of them carried no verdict because the endpoint failed (the first: "
                   f"{failed[0]}), are not cached and are asked again on the next run" if failed else "")
            raise JudgeError(
                f"judge {self.backend.name} (prompt {name}): {usage.unparsable_replies} of {usage.replies} replies "
                f"({usage.unparsable_replies / usage.replies:.0%}) could not be parsed, more than the "
                f"{self.max_unparsable:.0%} allowed (--judge-max-unparsable {self.max_unparsable:g}){why}; the "
                f"first: {' '.join(first.split())[:200]!r}")
        parsed = [p for p in per_example if p is not None]
        keys_ = parsed[0].keys() if parsed else []
        means = {k: sum(p[k] for p in parsed) / len(parsed) for k in keys_}
        return JudgeResult(means, per_example, len(per_example) - len(parsed), replies, orders, self.order_names,
                           usage, example_usage)

    def cached(self) -> int:
        """Replies of this judge and prompt the cache holds (0 without a cache)."""
        return self.cache.count(self.cache_id, self.prompt["name"]) if self.cache is not None else 0


def make_judges(spec: str | None, task_names: list[str], base_url: str | None = None,
                api_key_env: str = "OPENAI_API_KEY", prompt: str | None = None, *, concurrency: int = 8,
                rpm: float | None = None, max_retries: int = 4, cache: str | Path | None = None,
                use_cache: bool = True, max_unparsable: float = 0.5) -> dict[str, Judge] | None:
    """Task name -> ``Judge`` for each of ``task_names`` that has a judge prompt (``tasks.SPECS[n].judge_prompt``:
    icsum, instruction-following), all sharing one backend from ``spec`` (``make_backend``, with ``concurrency``,
    ``rpm`` and ``max_retries``) and one verdict cache at ``cache`` (None: no cache). ``prompt`` overrides every
    task's default prompt name; it must fit every judged task of ``task_names`` (``task_prompts``). Returns None when
    ``spec`` is empty (no judge asked for); an empty dict, building no backend, when no task in ``task_names`` is
    judged. Raises ValueError for a bad ``spec`` or option, a missing ``base_url`` or API key variable for
    ``openai:``, or an unknown prompt name or one that does not fit a task (both checked before the backend is
    built), ImportError when the openai client is not installed, and KeyError for a task name not in
    ``tasks.SPECS``."""
    if not spec:
        return None
    from kick_hub import tasks

    names = {n: prompt or tasks.SPECS[n].judge_prompt for n in task_names if tasks.SPECS[n].judge_prompt}
    for p in set(names.values()):
        load_prompt(p)
    for n, p in names.items():
        check_task_prompt(n, p)
    if not names:  # nothing to judge: no backend is built, so no option of it is needed
        return {}
    if not 0 <= max_unparsable <= 1:
        raise ValueError(f"judge-max-unparsable: must be a share in [0, 1], got {max_unparsable!r}")
    backend = make_backend(spec, base_url, api_key_env, concurrency, rpm, max_retries)
    shared = VerdictCache(cache) if cache is not None else None
    return {n: Judge(backend, p, shared, use_cache, max_unparsable) for n, p in names.items()}
