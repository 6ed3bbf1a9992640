"""Multiple-choice scoring (mcq-reasoning): accuracy overall, per subject and per MMLU category."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict

LETTERS = ("A", "B", "C", "D")

# hendrycks/test categories.py: subject -> subcategory -> category; world relations form their own category.
_SUBCATEGORY_TO_CATEGORY = {
    "physics": "STEM", "chemistry": "STEM", "biology": "STEM", "computer science": "STEM", "math": "STEM",
    "engineering": "STEM", "history": "humanities", "philosophy": "humanities", "law": "humanities",
    "politics": "social sciences", "culture": "social sciences", "economics": "social sciences",
    "geography": "social sciences", "psychology": "social sciences", "other": "other", "business": "other",
    "health": "other", "world": "world knowledge",
}
SUBJECT_SUBCATEGORY = {
    "abstract_algebra": "math", "anatomy": "health", "astronomy": "physics", "business_ethics": "business",
    "clinical_knowledge": "health", "college_biology": "biology", "college_chemistry": "chemistry",
    "college_computer_science": "computer science", "college_mathematics": "math", "college_medicine": "health",
    "college_physics": "physics", "computer_security": "computer science", "conceptual_physics": "physics",
    "econometrics": "economics", "electrical_engineering": "engineering", "elementary_mathematics": "math",
    "formal_logic": "philosophy", "global_facts": "other", "high_school_biology": "biology",
    "high_school_chemistry": "chemistry", "high_school_computer_science": "computer science",
    "high_school_european_history": "history", "high_school_geography": "geography",
    "high_school_government_and_politics": "politics", "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math", "high_school_microeconomics": "economics", "high_school_physics": "physics",
    "high_school_psychology": "psychology", "high_school_statistics": "math", "high_school_us_history": "history",
    "high_school_world_history": "history", "human_aging": "health", "human_sexuality": "culture",
    "international_law": "law", "jurisprudence": "law", "logical_fallacies": "philosophy",
    "machine_learning": "computer science", "management": "business", "marketing": "business",
    "medical_genetics": "health", "miscellaneous": "other", "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy", "nutrition": "health", "philosophy": "philosophy", "prehistory": "history",
    "professional_accounting": "other", "professional_law": "law", "professional_medicine": "health",
    "professional_psychology": "psychology", "public_relations": "politics", "security_studies": "politics",
    "sociology": "culture", "us_foreign_policy": "politics", "virology": "health", "world_religions": "philosophy",
    # the embedded world's subjects (its relations)
    "birthplace": "world", "birth_year": "world", "profession": "world", "employer": "world",
    "country": "world", "headquarters": "world",
}


def category(subject: str) -> str:
    """MMLU category of a subject given as a file stem or with spaces; unknown subjects are ``other``."""
    sub = SUBJECT_SUBCATEGORY.get(subject.strip().lower().replace(" ", "_"), "other")
    return _SUBCATEGORY_TO_CATEGORY[sub]


# lm-evaluation-harness, MMLU generative (lm_eval/tasks/mmlu/generative/_default_template_yaml): a bare letter,
# decorated ("A.", "(A)", "a)") or after an "Answer:" / "answer is" / "option" lead-in, with nothing but non-word
# characters after it on the line.
_ANSWER_LINE = re.compile(r"(?i)(?:^\W*|answer\s*(?:is)?\s*[:\-]?\s*|option\s*[:\-]?\s*)\(?([A-D])\)?\W*$")
# An option label in the prompt's own form opening the line, followed by text: "B) foo", "B. Paris", "(C) because".
_OPTION_LABEL = re.compile(r"^\W*([A-D])[).:\]]\s")


def extract_letter(generated: str) -> str:
    """The option letter a generated answer gives, or "" when it gives none.

    Rule (the first option letter the model emits, modelled on lm-evaluation-harness's MMLU generative filter):
    take the first non-blank line (NFKC-folded, stripped); it gives a letter when it is a bare or decorated letter
    (" B.", "(b)", "**B**"), an "Answer: B" / "the answer is (B)" / "option B" line, or an upper-case option label
    followed by text ("B) foo", "B. Paris"). Later lines are never read, so a model that goes on to write the next
    question is scored on its answer. A letter that is part of a word ("Because") or an article ("A dog") is no
    answer. LLM-KICK generates one token, whose letter this reads the same way."""
    line = next((x.strip() for x in unicodedata.normalize("NFKC", generated).splitlines() if x.strip()), "")
    match = _ANSWER_LINE.search(line) or _OPTION_LABEL.match(line)
    return match.group(1).upper() if match else ""


def score_mcq(predictions: list[str], references: list[str], subjects: list[str] | None = None) -> dict:
    """``accuracy`` in [0, 1], ``per_subject`` and ``per_category`` tables ({name: {accuracy, n}}), ``invalid``
    (predictions that give no option letter, counted wrong). Each prediction is read with ``extract_letter``, so
    letters and raw generations ("B", " b.", "Answer: B") both work; an empty prediction is invalid."""
    if not isinstance(predictions, (list, tuple)) or not all(isinstance(p, str) for p in predictions):
        raise ValueError("predictions: must be a list of option letters (strings)")
    if not isinstance(references, (list, tuple)) or not all(r in LETTERS for r in references):
        raise ValueError(f"references: must be a list of option letters, allowed values {list(LETTERS)}")
    if len(predictions) != len(references):
        raise ValueError(f"predictions/references: lengths differ ({len(predictions)} vs {len(references)})")
    if not predictions:
        raise ValueError("predictions: must not be empty")
    if subjects is not None and (len(subjects) != len(references) or not all(isinstance(s, str) for s in subjects)):
        raise ValueError("subjects: must be a list of strings as long as references")
    preds = [extract_letter(p) for p in predictions]
    hits = [float(p == r) for p, r in zip(preds, references)]
    out = {"accuracy": sum(hits) / len(hits), "invalid": sum(p not in LETTERS for p in preds), "per_example": hits}
    if subjects is not None:
        for key, name_of in (("per_subject", lambda s: s), ("per_category", category)):
            groups: dict[str, list[float]] = defaultdict(list)
            for s, h in zip(subjects, hits):
                groups[name_of(s)].append(h)
            out[key] = {g: {"accuracy": sum(v) / len(v), "n": len(v)} for g, v in sorted(groups.items())}
    return out
