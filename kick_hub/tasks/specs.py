"""Every LLM-KICK task, declared once: where its data comes from, what the model reads, how it generates, what is
reported (and which sample fields give each metric's standard error), how it is judged, exported to lm-eval and
used in the report's findings, and how the card and the Space show it.

One name per task everywhere: its id (``factoid-qa``). Data loading (``kick_hub.tasks.records``), evaluation, the sweep
report, the model card, the results dataset and the Space all read these declarations; the task modules
(``kick_hub.tasks.<task>``) hold only what cannot be data: how prompts are fitted into the context, and scoring.

Prompt templates are ``str.format`` strings, LLM-KICK's wording by default; the world's training corpus reads them
from here too, so the embedded model is trained on exactly what it is evaluated on.

What adding a task touches besides its declaration here: the list in ``kick_hub.tasks``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kick_hub import data


@dataclass(frozen=True)
class HubSource:
    """The real dataset on the Hub, read when the source is ``hub`` (or ``hub:<dataset id>``, same layout)."""

    dataset: str
    config: str | None
    split: str
    records: Callable  # (rows, dataset name, split, few-shot rows) -> records, each row checked
    fewshot_split: str | None = None  # a second split holding solved few-shot examples (MMLU's dev)


@dataclass(frozen=True)
class Sources:
    """Where a task's records come from: local files in the dataset's release format, the embedded world, the Hub."""

    load: Callable  # path -> records: the loader named after the dataset it reads
    folders: tuple[str, ...]  # sub-folders looked for under a data root; the first is the world's
    heldout: bool = False  # the world also has a ``<folder>-heldout`` set (the same facts, unseen phrasings)
    hub: HubSource | None = None
    card_dataset: tuple[str, str | None] | None = None  # (Hub id, config) named in a model card without ``hub``

    @property
    def reference_dataset(self) -> tuple[str, str | None]:
        """(Hub dataset id, config) of the real dataset, as a model card's model-index names it."""
        return (self.hub.dataset, self.hub.config) if self.hub else self.card_dataset


@dataclass(frozen=True)
class Finding:
    """A task's part in the sweep report's findings (``kick_hub.bench.analysis.findings``) that compare tasks.

    ``role`` ``closed-book``: the closed-book recall the in-context tasks are compared with (exactly one task);
    ``in-context``: a finding ``claim`` checking that the task keeps more of dense than the closed-book task at 50 %
    sparsity. The evidence names each task ``what``."""

    role: str  # "closed-book" or "in-context"
    what: str  # the task as the evidence names it
    claim: str = ""  # the finding's claim (in-context only)


@dataclass(frozen=True)
class TaskSpec:
    """One task: data sources, prompt templates, generation settings, reported metrics, card and Space details."""

    id: str                   # the task's one name; Hub evaluate module ``llmkick/<id>``
    description: str
    sources: Sources
    prompts: Mapping[str, str]  # named ``str.format`` templates (``prompt`` is what the model reads)
    metric: str               # headline metric: the report's and the card's; higher is better unless lower_is_better
    metrics: tuple[str, ...]  # the metrics a results table shows (``evaluation.table``, the world's info)
    knowledge: bool           # recall from weights (True) or in-context / fluency (False)
    max_new_tokens: int = 0
    stop: tuple[str, ...] = ()
    chat: bool = False        # wrap the prompt in the model's chat template when it has one
    lower_is_better: bool = False
    protocols: tuple[str, ...] = ("default", "llm-kick")
    num_fewshot: int = 0      # solved examples before the question
    # the judge prompts (``kick_hub/scoring/judge_prompts``) that fit the task, its default first; (): not judged.
    # A prompt fits when its placeholders are what the task passes and its wording asks about what the task produced
    judge_prompts: tuple[str, ...] = ()
    hub_task: str = "text-generation"  # task type in a model card's model-index
    example_reference: str | None = None  # record field the Space shows as the reference; None: not in the Space
    # metric -> the sample field holding each example's value (``score`` is the headline metric's), for standard
    # errors and paired tests (``kick_hub.scoring.stats.series``); a metric missing here has no standard error
    stat_fields: Mapping[str, str] = field(default_factory=dict)
    # metric -> (field a, field b): a per-example difference a - b (``stats.series``)
    stat_differences: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # protocol -> the metrics the exported lm-eval task reports per document (``kick_hub.harness``); perplexity is
    # exported as lm-eval's own loglikelihood_rolling task instead
    lm_eval_metrics: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    finding: Finding | None = None  # its part in the report's cross-task findings; None: none

    @property
    def judge_prompt(self) -> str | None:
        """The default judge prompt (the first of ``judge_prompts``); None: the task is not judged."""
        return self.judge_prompts[0] if self.judge_prompts else None


SPECS: dict[str, TaskSpec] = {s.id: s for s in (
    TaskSpec(
        id="factoid-qa",
        description="Closed-book factoid QA (FreebaseQA): normalised exact match against alias lists.",
        sources=Sources(data.load_freebaseqa, ("freebaseqa",), heldout=True,
                        hub=HubSource("freebase_qa", None, "train", data.freebaseqa_hub_records)),
        # as in llm-kick's factoid_qa script
        prompts={"prompt": "Please give answer to this question: {question}\nThe answer is "},
        metric="exact_match", metrics=("exact_match", "contains"), knowledge=True,
        max_new_tokens=16, stop=("\n",), hub_task="question-answering", example_reference="answers",
        stat_fields={"exact_match": "score", "contains": "contains"},
        lm_eval_metrics={"default": ("exact_match", "contains"), "llm-kick": ("exact_match",)},
        finding=Finding("closed-book", "closed-book factoid"),
    ),
    TaskSpec(
        id="mcq-reasoning",
        description="Multiple-choice reasoning (MMLU 5-shot): accuracy overall, per subject and category.",
        sources=Sources(data.load_mmlu, ("mmlu",), heldout=True,
                        hub=HubSource("cais/mmlu", "all", "test", data.mmlu_hub_records, fewshot_split="dev")),
        # Hendrycks et al. / llm-kick's mmlu script: header once, then the few-shot items, then the question
        prompts={"header": "The following are multiple choice questions (with answers) about {subject}.\n\n",
                 "item": "{question}\n{options}Answer:",
                 "option": "{letter}. {text}\n"},
        metric="accuracy", metrics=("accuracy",), knowledge=True,
        max_new_tokens=1, num_fewshot=5, hub_task="multiple-choice", example_reference="answer",
        stat_fields={"accuracy": "score", "accuracy_loglik": "score_loglik", "accuracy_generate": "score_generate"},
        lm_eval_metrics={"default": ("accuracy",), "llm-kick": ("accuracy",)},
    ),
    TaskSpec(
        id="icra-qa",
        description="In-context retrieval QA (TriviaQA rc): EM and F1, open book vs closed book.",
        sources=Sources(data.load_triviaqa, ("triviaqa",),
                        hub=HubSource("mandarjoshi/trivia_qa", "rc", "validation", data.triviaqa_hub_records)),
        prompts={"prompt": "{context}\n\nBased on these texts, answer these questions:\n\nQ: {question}\nA:",
                 "closed_book": "Answer these questions:\n\nQ: {question}\nA:"},
        metric="exact_match", metrics=("exact_match", "f1", "closed_book_exact_match"), knowledge=False,
        max_new_tokens=24, stop=("\n",), hub_task="question-answering", example_reference="answers",
        stat_fields={"exact_match": "score", "f1": "f1", "closed_book_exact_match": "closed_book_score",
                     "closed_book_f1": "closed_book_f1"},
        stat_differences={"open_minus_closed_exact_match": ("score", "closed_book_score")},
        lm_eval_metrics={"default": ("exact_match", "f1"), "llm-kick": ("exact_match", "f1")},
        finding=Finding("in-context", "in-context QA",
                        "In-context retrieval is more robust to pruning than closed-book recall"),
    ),
    TaskSpec(
        id="icsum",
        description="In-context summarization (CNN/DM): ROUGE per length bucket, optional LLM judge.",
        sources=Sources(data.load_cnndm_stories, ("cnn_dailymail_stories",),
                        hub=HubSource("abisee/cnn_dailymail", "3.0.0", "test", data.cnndm_hub_records)),
        prompts={"prompt": "{story}\n\nSummarize the given story in less than 150 words while preserving high "
                           "coherence, consistency, fluency, and relevance."},
        metric="rougeL", metrics=("rouge1", "rougeL"), knowledge=False,
        max_new_tokens=192, chat=True, hub_task="summarization", example_reference="reference",
        # icsum passes the story as {question} and the summary as {answer}, no reference: only summary-v1 (a summary
        # of a story, four criteria) fits; pairwise-v1 needs a {reference}, and single-v1 asks about the answer to a
        # question (the judge would see a story with no instruction)
        judge_prompts=("summary-v1",),
        stat_fields={"rougeL": "score", "rouge1": "rouge1"},
        lm_eval_metrics={p: ("rouge1", "rouge2", "rougeL", "rougeLsum") for p in ("default", "llm-kick")},
        finding=Finding("in-context", "summarization ROUGE-L",
                        "Pruned models stay decent at in-context summarization"),
    ),
    TaskSpec(
        id="instruction-following",
        description="Instruction following (Vicuna-80): ROUGE-L vs reference, distinct-n, optional judge.",
        sources=Sources(data.load_vicuna80, ("vicuna", "vicuna80"), card_dataset=("lmsys/vicuna-80", None)),
        # Vicuna-80 / MT-Bench single turn: the question is the whole user message
        prompts={"prompt": "{question}"},
        metric="rougeL", metrics=("rougeL", "distinct_2"), knowledge=False,
        max_new_tokens=256, chat=True, example_reference="reference",
        # the instruction as {question}, the answer and the reference answer: pairwise-v1 (against the reference, both
        # orders) and single-v1 (the answer alone, MT-Bench's ``[[rating]]``) fit; summary-v1 (a "summary" of a
        # "story") does not
        judge_prompts=("pairwise-v1", "single-v1"),
        stat_fields={"rougeL": "score"},
        lm_eval_metrics={"default": ("rougeL",), "llm-kick": ("rougeL",)},
    ),
    TaskSpec(
        id="perplexity",
        description="Token-level perplexity on a text set (lower is better).",
        sources=Sources(data.load_text, ("perplexity", "wikitext", "cnn_dailymail_stories"),
                        hub=HubSource("Salesforce/wikitext", "wikitext-2-raw-v1", "test", data.wikitext_hub_records)),
        prompts={},
        metric="perplexity", metrics=("perplexity",), knowledge=False, lower_is_better=True, protocols=("default",),
    ),
)}

TASK_NAMES = tuple(SPECS)
# every protocol some task has; a task without the one asked for (perplexity: no llm-kick variant) runs its default
PROTOCOLS = tuple(dict.fromkeys(p for s in SPECS.values() for p in s.protocols))


def spec(task: str) -> TaskSpec:
    """The declaration of task ``task`` (ValueError naming ``task`` and the valid ids otherwise)."""
    if task not in SPECS:
        raise ValueError(f"task: must be one of {list(SPECS)}, got {task!r}")
    return SPECS[task]
