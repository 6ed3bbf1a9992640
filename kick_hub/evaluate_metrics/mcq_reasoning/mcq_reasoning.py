"""LLM-KICK mcq-reasoning: MMLU-style multiple choice, accuracy overall, per subject and per category."""

import datasets
import evaluate

from .kick_mcq import score_mcq

_CITATION = """\
@inproceedings{jaiswal2024compressing,
  title={Compressing LLMs: The Truth is Rarely Pure and Never Simple},
  author={Jaiswal, Ajay and Gan, Zhe and Du, Xianzhi and Zhang, Bowen and Wang, Zhangyang and Yang, Yinfei},
  booktitle={International Conference on Learning Representations},
  year={2024}
}
"""

_DESCRIPTION = """\
Multiple-choice reasoning as in LLM-KICK (MMLU, 5-shot). References are option letters A-D; predictions are
letters or raw generations, read as the first non-blank line's option letter (lm-evaluation-harness MMLU generative
rule: " B.", "(b)", "Answer: B", "B) text"; "Because" or "A dog" give none). Accuracy is the share of matches; a
prediction that gives no letter (an empty one included) counts wrong and is reported in invalid. With subjects
(MMLU file stems such as high_school_biology) the result adds per-subject and per-category tables (STEM,
humanities, social sciences, other; hendrycks/test categories).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): predicted option letters or generated answers.
    references (list of str): gold option letters (A, B, C or D).
    subjects (list of str, optional): subject of each question.
Returns:
    accuracy (float in [0, 1]), invalid (int), and with subjects: per_subject, per_category
    ({name: {"accuracy": float, "n": int}}).
Examples:
    >>> m = evaluate.load("llmkick/mcq-reasoning")
    >>> m.compute(predictions=["A", "B"], references=["A", "C"], subjects=["anatomy", "virology"])["accuracy"]
    0.5
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class McqReasoning(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric", description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            reference_urls=["https://github.com/VITA-Group/llm-kick", "https://github.com/hendrycks/test"],
        )

    def _compute(self, predictions, references, subjects=None):
        scores = score_mcq(list(predictions), list(references), subjects)
        scores.pop("per_example")
        return scores
