"""What judging cost: ``JudgeUsage`` (replies, requests, retries, cache hits, tokens, unparsable replies, order
disagreements, wall time), its sums, its one-line summary, and the estimate printed before a sweep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kick_hub.scoring.judge.scorer import Judge


def _preference(verdict: dict) -> int:
    """+1 when the answer scored above the reference, -1 below, 0 for a tie."""
    return (verdict["answer"] > verdict["reference"]) - (verdict["answer"] < verdict["reference"])

USAGE_FIELDS = ("replies", "requests", "retries", "cache_hits", "prompt_tokens", "completion_tokens",
                "unparsable_replies", "compared", "disagreements", "wall_s")


@dataclass
class JudgeUsage:
    """What judging cost and how it went: ``replies`` judge replies used (one per example and order),
    ``requests`` requests sent (HTTP requests, retries included, which is what the endpoint counts; prompts
    generated for a local judge), ``retries`` of them repeats, ``cache_hits`` replies not requested (from the
    verdict cache, or an identical request of the same call), ``prompt_tokens`` / ``completion_tokens`` as the
    backend reported them for the requests sent, ``unparsable_replies``, ``compared`` examples whose two orders
    both parsed and ``disagreements`` among them (the judge preferred another side, or a tie, after the swap), and
    ``wall_s`` seconds spent judging."""

    replies: int = 0
    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unparsable_replies: int = 0
    compared: int = 0
    disagreements: int = 0
    wall_s: float = 0.0

    def add(self, other: "JudgeUsage") -> None:
        """Add ``other``'s counts to these."""
        for f in USAGE_FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def minus(self, other: "JudgeUsage") -> "JudgeUsage":
        """These counts less ``other``'s (what was spent since ``other`` was copied)."""
        return JudgeUsage(**{f: getattr(self, f) - getattr(other, f) for f in USAGE_FIELDS})

    def copy(self) -> "JudgeUsage":
        """An independent copy of these counts."""
        return JudgeUsage(**{f: getattr(self, f) for f in USAGE_FIELDS})

    def to_dict(self) -> dict:
        """The counts as a JSON-ready dict (``wall_s`` rounded to ms)."""
        out = {f: getattr(self, f) for f in USAGE_FIELDS}
        out["wall_s"] = round(self.wall_s, 3)
        return out


def total_usage(judges: dict[str, Judge] | None) -> JudgeUsage:
    """The summed ``usage`` of ``judges`` (task -> Judge; None: nothing spent)."""
    out = JudgeUsage()
    for j in (judges or {}).values():
        out.add(j.usage)
    return out


def format_usage(usage: JudgeUsage) -> str:
    """One line for a person: requests sent (and retries), cache hits, tokens, unparsable replies, disagreements
    across orders and wall time."""
    line = (f"{usage.requests} requests ({usage.retries} retries), {usage.cache_hits} of {usage.replies} replies "
            f"from the cache, {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens, "
            f"{usage.unparsable_replies} unparsable")
    if usage.compared:
        line += f", orders disagreed on {usage.disagreements} of {usage.compared} examples"
    return line + f", {usage.wall_s:.1f} s"


def estimate(judges: dict[str, Judge], examples: dict[str, int]) -> dict[str, int]:
    """task -> the most judge requests judging ``examples[task]`` examples will send: one per example and order
    (before retries; identical requests and replies already in the cache are not sent)."""
    return {t: n * len(judges[t].order_names) for t, n in examples.items() if t in judges}


def format_estimate(judges: dict[str, Judge], examples: dict[str, int], cells: dict[str, int]) -> str:
    """The line a sweep prints before it starts: at most how many judge requests it will send (per task: cells x
    examples x orders) and how many replies of this judge the cache already holds."""
    need = estimate(judges, {t: n * cells.get(t, 0) for t, n in examples.items()})
    parts = [f"{t}: {cells.get(t, 0)} cells x {examples[t]} examples x {len(judges[t].order_names)} "
             f"order{'s' if len(judges[t].order_names) > 1 else ''}" for t in need]
    any_judge = next(iter(judges.values()), None)
    if any_judge is None:
        return "judge: no judged task"
    held = sum(j.cached() for j in {j.prompt["name"]: j for j in judges.values()}.values())
    cache = (f"; the cache holds {held} replies of this judge, reused where a request matches exactly"
             if any_judge.cache is not None and any_judge.use_cache else "; the cache is not read (--judge-no-cache)"
             if any_judge.cache is not None else "")
    return (f"judge {any_judge.backend.name}: at most {sum(need.values())} requests "
            f"({'; '.join(parts) or 'nothing left to judge'}){cache}")


def usage_from_samples(samples: list[dict]) -> dict | None:
    """What judging cost, added up from a task's sample records (``JudgeResult.sample`` fields): ``replies``,
    ``requests``, ``cache_hits``, ``prompt_tokens``, ``completion_tokens``, ``request_s`` (seconds spent on the
    requests, summed: concurrent requests overlap, so this exceeds the wall time), ``unparsable_replies``,
    ``compared`` (examples with both orders parsed) and ``disagreements``. None when no record was judged."""
    judged = [s for s in samples if "judge_usage" in s]
    if not judged:
        return None
    out = {"replies": 0, "requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
           "request_s": 0.0, "unparsable_replies": 0, "compared": 0, "disagreements": 0}
    for s in judged:
        u = s["judge_usage"]
        for k in ("requests", "cache_hits", "prompt_tokens", "completion_tokens"):
            out[k] += u.get(k, 0)
        out["request_s"] += u.get("seconds", 0.0)
        verdicts = list(s["judge_orders"].values()) if "judge_orders" in s else [s.get("judge")]
        out["replies"] += len(verdicts)
        out["unparsable_replies"] += sum(v is None for v in verdicts)
        if len(verdicts) == 2 and None not in verdicts:
            out["compared"] += 1
            out["disagreements"] += _preference(verdicts[0]) != _preference(verdicts[1])
    out["request_s"] = round(out["request_s"], 3)
    return out
