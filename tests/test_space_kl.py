"""The Space's per-token KL strip (kick_hub/space/kl.py): ``token_pieces`` gives each token's text; ``output_kl`` is 0
at every token for a model against itself and equals ``scoring.fidelity.token_kl`` of the two engines'
``next_token_logprobs`` (and the KL formula by hand) for a magnitude-50 % world variant; ``kl_strip_html`` escapes
every text and colours by ``min(KL / KL_FULL, 1)``; ``kl_strips`` checks its inputs in kick's words before any model
loads; the ``/kl_strip`` endpoint answers through the real gradio_client on 127.0.0.1 (``app`` / ``client`` of
tests/conftest.py, over its ``small_run`` sweep of dense + magnitude-70)."""

import html
import math
import re
from collections import OrderedDict
from html.parser import HTMLParser

import pytest
import torch

gr = pytest.importorskip("gradio")

from kick_hub import space  # noqa: E402
from kick_hub.engine import Engine  # noqa: E402
from kick_hub.io import format_number  # noqa: E402
from kick_hub.scoring.fidelity import token_kl  # noqa: E402

PROMPT = "The capital of Zelmor is"


@pytest.fixture(scope="module")
def variant_engine(tmp_path_factory):
    """The world model pruned 50 % by magnitude, through kick's compress API."""
    from kick_hub.compress import CompressSpec, make_variant

    path = make_variant("world", CompressSpec("magnitude", sparsity=0.5), tmp_path_factory.mktemp("kl") / "m50",
                        progress=False)
    return Engine.from_name(str(path))


@pytest.fixture(scope="module")
def dense_output(world_engine):
    out = world_engine.generate([PROMPT], 16)[0]
    assert out.strip()
    return out


class Spans(HTMLParser):
    """The strip's ``kl-token`` spans as (style, title, text)."""

    def __init__(self):
        super().__init__()
        self.spans, self._open = [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and a.get("class") == "kl-token":
            self._open = [a["style"], a["title"], ""]

    def handle_data(self, data):
        if self._open is not None:
            self._open[2] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._open is not None:
            self.spans.append(tuple(self._open))
            self._open = None


def spans(page: str) -> list[tuple[str, str, str]]:
    p = Spans()
    p.feed(page)
    return p.spans


# ---------------------------------------------------------------- pieces and KL values
def test_token_pieces_spell_the_text_with_bos_empty(world_engine):
    text = PROMPT + " a native of Kelmaford."
    ids = world_engine.token_ids(text)
    pieces = space.token_pieces(world_engine, text, ids)
    assert len(pieces) == len(ids) and ids[0] == world_engine.tokenizer.bos_token_id and pieces[0] == ""
    assert "".join(pieces) == text
    enc = world_engine.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert enc["input_ids"] == ids[1:]
    assert pieces[1:] == [text[a:b] for a, b in enc["offset_mapping"]]  # each token's own characters


@pytest.mark.parametrize("chat", [False, True])
def test_dense_against_itself_is_zero_at_every_token(world_engine, chat):
    output = world_engine.generate([PROMPT], 16, chat=chat)[0]
    pieces, kl = space.output_kl(world_engine, world_engine, PROMPT, output, chat)
    rendered = world_engine.render(PROMPT, chat)
    n_out = len(world_engine.token_ids(rendered + output)) - len(world_engine.token_ids(rendered))
    assert len(pieces) == len(kl) == n_out > 0
    assert all(abs(k) < 1e-6 for k in kl)
    assert "".join(pieces) == output


def test_pruned_variant_kl_is_token_kl_of_the_two_engines(world_engine, variant_engine, dense_output):
    pieces, kl = space.output_kl(world_engine, variant_engine, PROMPT, dense_output, False)
    text = PROMPT + dense_output
    ids = world_engine.token_ids(text)
    start = len(world_engine.token_ids(PROMPT))
    assert world_engine.token_ids(PROMPT) == ids[:start]  # no token merged across the boundary here
    p = world_engine.next_token_logprobs([text])[0]
    q = variant_engine.next_token_logprobs([text])[0]
    rows = slice(start - 1, len(ids) - 1)  # the positions that predict the output's tokens
    expected = token_kl(p[rows], q[rows])
    by_hand = (p[rows].double().exp() * (p[rows].double() - q[rows].double())).sum(-1)
    assert len(kl) == len(pieces) == len(ids) - start and "".join(pieces) == dense_output
    assert torch.allclose(torch.tensor(kl), expected, atol=1e-7, rtol=0)
    assert torch.allclose(torch.tensor(kl, dtype=torch.float64), by_hand, atol=1e-5, rtol=1e-5)
    assert min(kl) > -1e-6 and max(kl) > 0.05  # pruning half the weights moves some predictions
    assert not torch.allclose(p, q)


def test_a_token_merged_across_the_boundary_is_the_outputs(world_engine):
    """A prompt ending in a space: its space joins the output's first token, which counts as output."""
    pieces, kl = space.output_kl(world_engine, world_engine, PROMPT + " ", "a native", False)
    assert pieces == [" a", " native"] and kl == [0.0, 0.0]


def test_empty_output_and_oversized_text(world_engine, variant_engine):
    assert space.output_kl(world_engine, variant_engine, PROMPT, "", False) == ([], [])
    with pytest.raises(ValueError, match=r"output: the prompt and output are \d+ tokens, over the 512-token context"):
        space.output_kl(world_engine, variant_engine, PROMPT, " word" * 600, False)


# ---------------------------------------------------------------- the strip's HTML
def test_strip_escapes_html_and_colours_by_kl():
    pieces, kl = ["a", "<b>", " c & d", "'q\""], [0.0, 0.5, 2.0, 0.25]
    page = space.kl_strip_html("dense<i>", "m<50>", pieces, kl)
    assert "<b>dense" not in page and "dense&lt;i&gt;" in page and "m&lt;50&gt;" in page
    got = spans(page)
    assert [text for _, _, text in got] == pieces  # the parser unescapes: the tokens, shown as text
    assert page.count("class='kl-token'") == 4 and "&lt;b&gt;</span>" in page and "<b></span>" not in page
    assert " c &amp; d</span>" in page
    for (style, title, _), piece, k in zip(got, pieces, kl):
        alpha = min(k / space.KL_FULL, 1.0)
        assert style == "background:rgba({}, {}, {}, {:.3f})".format(*space.KL_RGB, alpha)
        assert title == f"{piece!r}: KL {format_number(k, '.4g')} nats"
    assert [float(re.search(r"([\d.]+)\)$", s).group(1)) for s, _, _ in got] == [0.0, 0.5, 1.0, 0.25]
    mean = sum(kl) / len(kl)
    assert f"mean {format_number(mean, '.4g')} nats over 4 tokens" in page
    assert 'title="&#x27;&lt;b&gt;&#x27;: KL 0.5 nats"' in page  # the tooltip escaped too


def test_strip_greys_a_non_finite_kl_and_says_when_there_is_nothing():
    page = space.kl_strip_html("dense", "broken", ["x", "y"], [0.1, math.inf])
    (s1, _, _), (s2, t2, _) = spans(page)
    assert s1.endswith("0.100)") and s2 == "background:#9ca3af" and t2 == "'y': KL ∞ nats"
    assert "mean NaN nats over 2 tokens" in page
    empty = space.kl_strip_html("dense", "m50", [], [])
    assert empty == ("<div class='kl-strip'><b>KL(dense ‖ m50) per token of dense's output</b>: no output tokens to "
                     "compare.</div>")
    assert "kl-token" not in empty


# ---------------------------------------------------------------- kl_strips: the endpoint's function
@pytest.fixture(scope="module")
def models(small_run):
    return space.Models(small_run)


def test_kl_strips_is_one_strip_per_variant(models):
    dense, _ = models.engine("dense")
    variant, _ = models.engine("magnitude-70")
    output = dense.generate([PROMPT], 12)[0]
    page = space.kl_strips(models, "dense", ["magnitude-70"], PROMPT, output, "factoid-qa", space.AS_TYPED)
    pieces, kl = space.output_kl(dense, variant, PROMPT, output, False)
    assert page == space.kl_strip_html("dense", "magnitude-70", pieces, kl)
    assert "".join(text for _, _, text in spans(page)) == output and max(kl) > 0
    assert space.kl_strips(models, "dense", [], PROMPT, output, "factoid-qa") == ""  # no variant, no strip
    assert space.kl_strips(models, "dense", ["dense"], PROMPT, output, "factoid-qa") == ""  # the base is no variant
    nothing = space.kl_strips(models, "dense", ["magnitude-70"], PROMPT, "", "factoid-qa")
    assert "no output tokens to compare" in nothing and "kl-token" not in nothing


@pytest.mark.parametrize("over, message", [
    ({"output": 123}, "output: must be the base model's output text, got 123"),
    ({"output": None}, "output: must be the base model's output text, got None"),
    ({"variants": ["nope"]}, "variants: must be one of ['dense', 'magnitude-70'], got 'nope'"),
    ({"variants": "magnitude-70"}, "variants: must be a list of model names"),
    ({"base": "world"}, "base: must be one of ['dense', 'magnitude-70'], got 'world'"),
    ({"task": "perplexity"}, "task: must be one of ['factoid-qa'"),
    ({"prompt": ""}, "prompt: type a prompt or pick an example"),
    ({"prompt_format": "html"}, "prompt_format: must be one of"),
])
def test_kl_strips_refuses_bad_inputs_before_loading(small_run, over, message):
    models = space.Models(small_run)
    args = {"base": "dense", "variants": ["magnitude-70"], "prompt": PROMPT, "output": " a", "task": "factoid-qa",
            "prompt_format": space.AS_TYPED, **over}
    with pytest.raises(ValueError) as err:
        space.kl_strips(models, **args)
    assert message in str(err.value)
    assert models._cache == OrderedDict()  # refused before any model loaded


# ---------------------------------------------------------------- through the app
def test_kl_strip_endpoint_answers_through_gradio_client(client, models):
    dense, _ = models.engine("dense")
    output = dense.generate([PROMPT], 12)[0]
    page = client.predict("dense", ["magnitude-70"], PROMPT, output, "factoid-qa", space.AS_TYPED,
                          api_name="/kl_strip")
    got = spans(page)
    assert len(got) == len(dense.token_ids(PROMPT + output)) - len(dense.token_ids(PROMPT)) > 0
    assert "".join(text for _, _, text in got) == output
    assert page == space.kl_strips(models, "dense", ["magnitude-70"], PROMPT, output, "factoid-qa", space.AS_TYPED)
    with pytest.raises(Exception, match=re.escape("variants: must be one of ['dense', 'magnitude-70'], got 'nope'")):
        client.predict("dense", ["nope"], PROMPT, output, "factoid-qa", space.AS_TYPED, api_name="/kl_strip")
    assert html.unescape(page).count("KL(dense ‖ magnitude-70)") == 1
