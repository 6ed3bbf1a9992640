"""LLM-KICK icra-qa: in-context retrieval-augmented QA (TriviaQA rc) with TriviaQA EM and F1."""

import datasets
import evaluate

from .kick_qa import check_protocol
from .kick_qa import score_icra

_CITATION = """\
@inproceedings{jaiswal2024compressing,
  title={Compressing LLMs: The Truth is Rarely Pure and Never Simple},
  author={Jaiswal, Ajay and Gan, Zhe and Du, Xianzhi and Zhang, Bowen and Wang, Zhangyang and Yang, Yinfei},
  booktitle={International Conference on Learning Representations},
  year={2024}
}
"""

_DESCRIPTION = """\
In-context retrieval-augmented QA as in LLM-KICK (TriviaQA rc with evidence). Exact match and token F1 after
TriviaQA normalisation (lowercase, punctuation and articles removed), maximised over the alias list. Score open-book
and closed-book predictions with two calls: the gap is what the passage contributed. protocol="llm-kick"
replaces EM by the original lenient rule (either normalised string contained in the other). Under both protocols an
empty or blank prediction scores 0 (EM and F1) and a blank alias never matches; when removing articles would leave
nothing ("The"), the answer is compared with its articles kept.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the model's answers.
    references (list of list of str): accepted answers (alias lists) per question.
    protocol (str): "default" or "llm-kick".
Returns:
    exact_match (float in [0, 1]), f1 (float in [0, 1]).
Examples:
    >>> m = evaluate.load("llmkick/icra-qa")
    >>> m.compute(predictions=["the Beatles"], references=[["The Beatles", "Beatles"]])
    {'exact_match': 1.0, 'f1': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class IcraQa(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric", description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
            reference_urls=["https://github.com/VITA-Group/llm-kick", "https://nlp.cs.washington.edu/triviaqa/"],
        )

    def _compute(self, predictions, references, protocol="default"):
        check_protocol(protocol)
        scores = score_icra(list(predictions), [list(r) for r in references], protocol)
        scores.pop("per_example")
        return scores
