"""Prompt templates: the one place every prompt string lives (LLM-KICK's wording is the default).

Templates are ``str.format`` strings. The tasks, the world's training corpus and the Space all read them from here.
"""

from __future__ import annotations

PROMPTS: dict[str, str] = {
    # FreebaseQA, as in llm-kick's factoid_qa script.
    "factoid": "Please give answer to this question: {question}\nThe answer is ",
    # MMLU (Hendrycks et al.; llm-kick's mmlu script): header once, then few-shot items, then the question.
    "mcq_header": "The following are multiple choice questions (with answers) about {subject}.\n\n",
    "mcq_item": "{question}\n{options}Answer:",
    "mcq_option": "{letter}. {text}\n",
    # TriviaQA rc, open book (context first) and closed book.
    "icra_open": "{context}\n\nBased on these texts, answer these questions:\n\nQ: {question}\nA:",
    "icra_closed": "Answer these questions:\n\nQ: {question}\nA:",
    # CNN/DailyMail in-context summarization.
    "summarize": "{story}\n\nSummarize the given story in less than 150 words while preserving high coherence, "
                 "consistency, fluency, and relevance.",
    # Vicuna-80 / MT-Bench single turn: the question is the whole user message.
    "instruction": "{question}",
}

MCQ_LETTERS = "ABCD"


def mcq_prompt(question: str, options: list[str], answer: str | None = None) -> str:
    """One MMLU item; with ``answer`` it is a solved few-shot example ending in a blank line."""
    opts = "".join(PROMPTS["mcq_option"].format(letter=l, text=o) for l, o in zip(MCQ_LETTERS, options))
    body = PROMPTS["mcq_item"].format(question=question, options=opts)
    return body if answer is None else f"{body} {answer}\n\n"
