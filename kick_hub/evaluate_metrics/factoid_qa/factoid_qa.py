"""LLM-KICK factoid-qa: closed-book factoid QA (FreebaseQA) scored against alias lists."""

import datasets
import evaluate

from .kick_qa import check_protocol
from .kick_qa import score_factoid

_CITATION = """\
@inproceedings{jaiswal2024compressing,
  title={Compressing LLMs: The Truth is Rarely Pure and Never Simple},
  author={Jaiswal, Ajay and Gan, Zhe and Du, Xianzhi and Zhang, Bowen and Wang, Zhangyang and Yang, Yinfei},
  booktitle={International Conference on Learning Representations},
  year={2024}
}
"""

_DESCRIPTION = """\
Closed-book factoid QA as in LLM-KICK (FreebaseQA). Default protocol: TriviaQA-normalised exact match of the
model's generated continuation against every alias (plus contains: a whole alias occurs inside the
continuation). protocol="llm-kick" reproduces the original code: a hit when any answer, lowercased with spaces
removed, is a substring of the decoded text (pass prompt + continuation as the prediction). Under both protocols an
empty or blank prediction scores 0 and a blank alias never matches; when removing articles would leave nothing
("The"), the answer is compared with its articles kept.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated continuations (prompt excluded; prompt included for protocol="llm-kick").
    references (list of list of str): accepted answers (alias lists) per question.
    protocol (str): "default" or "llm-kick".
Returns:
    exact_match (float in [0, 1]); contains (float in [0, 1], default protocol only).
Examples:
    >>> m = evaluate.load("llmkick/factoid-qa")
    >>> m.compute(predictions=["Paris."], references=[["Paris", "Paris, France"]])
    {'exact_match': 1.0, 'contains': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FactoidQa(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric", description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}),
            reference_urls=["https://github.com/VITA-Group/llm-kick", "https://github.com/kelvin-jiang/FreebaseQA"],
        )

    def _compute(self, predictions, references, protocol="default"):
        check_protocol(protocol)
        scores = score_factoid(list(predictions), [list(r) for r in references], protocol)
        scores.pop("per_example")
        return scores
