"""The kick-hub Space: dense and compressed outputs side by side, the sweep's results, a leaderboard.

A client of the library: prompts and scores come from the task modules, generation from ``Backend.stream`` (greedy,
the same settings for every model, the prompt as typed or in the chat template as chosen: ``PROMPT_FORMATS``, a
task's own format by default), the sweep table (with its significance marks) from ``bench.report`` and its figures
from ``bench.plots``, the leaderboard from ``hub.results``; the variants offered first are those where the loss shows
(``featured_variants``). Tables wrap their cells and size their columns to fit a 1024 px window (``CSS``,
``fit_widths``, ``BROWSE_WIDTHS``); the per-example browser shows the question, not the whole prompt
(``question_text``).
``space/app.py`` (the Hub Space, put on the Hub by ``kick publish-space``: ``hub/space_repo.py``) and ``kick space``
both call ``build``.

Where models run: every model loads with one ``device.Placement`` (``kick space --device/--dtype``, the Space's
KICK_DEVICE / KICK_DTYPE; ``auto`` is the GPU on GPU hardware), and a comparison's generation runs under
``spaces.GPU`` where the ``spaces`` package is present (``on_gpu``; ZeroGPU hardware), its models loaded before.
Of a run dir's variants only the kept ones (their directory with its manifest, ``is_kept``) can be compared; the
Results tab and its browser show every scored variant.

Limits: prompts longer than ``MAX_INPUT_CHARS``, or whose tokens plus the new tokens exceed a chosen model's context,
are refused with a message and never cut (every model reads exactly the prompt shown; an example whose few-shot or
passage prompt is too long can be edited down by hand, docs/context.md); at most
``MAX_NEW_TOKENS`` new tokens and ``MAX_PANES`` models per comparison; a bounded queue; models load once and stay
cached (``CACHE_SIZE``); only the run dir's models and an allowlist of Hub repo ids can be chosen (no free paths);
``trust_remote_code`` is never set (``models.load_model``). The handlers check every input themselves and answer in
kick's words (``max_new_tokens: must be between 1 and 256 ...``), since the API can be called without the UI's slider,
dropdowns and number box (the endpoints take their inputs unprocessed, and a refused input is a ``gr.Error``
without a server traceback: it is the user's input, not a fault). Tables show an infinite score (a broken model's
perplexity) as ``∞``.

The package, one concern a module: ``limits`` (the limits above and the shared settings), ``models`` (the
allowlist and engine cache, ``Models``; ``on_gpu``), ``checks`` (the inputs' checks), ``examples`` (example
sources, prompts and references), ``compare`` (prompt formats, the Compare endpoint, ``compare_stream``), ``kl``
(the per-token KL strip), ``tables`` (how tables show: ``display_frame``, ``fit_widths``, ``CSS``), ``results``
(the Results tab's tables and figures), ``browse`` (its per-example browser), ``leaderboard`` and ``app`` (the
Gradio ``build``, ``launch``, ``from_env``). Every name is re-exported here (``from kick_hub import space``;
``space.build``).
"""

from __future__ import annotations

from kick_hub.space.app import NO_RUN_DIR, build, from_env, launch
from kick_hub.space.browse import PASSAGE_HEAD, browse, question_text
from kick_hub.space.checks import check_choice, check_flag, check_prompt, check_run_dir, check_whole
from kick_hub.space.compare import (AS_TYPED, CHAT, PROMPT_FORMATS, applied_format, check_compare, compare_outputs,
                                    compare_stream, task_format)
from kick_hub.space.examples import (SOURCE_NAMES, example_prompt, example_record, load_examples, reference_text,
                                     source_label)
from kick_hub.space.kl import KL_FULL, KL_RGB, kl_strip_html, kl_strips, output_kl, token_pieces
from kick_hub.space.leaderboard import LEADERBOARD_HEADERS, METRIC_WORDS, leaderboard_frame, task_header
from kick_hub.space.limits import (CACHE_SIZE, COMPARE_TASKS, CONCURRENCY, EXAMPLES_PER_TASK, GPU_SECONDS,
                                   MAX_INPUT_CHARS, MAX_NEW_TOKENS, MAX_PANES, QUEUE_SIZE, RIGHT)
from kick_hub.space.models import Models, featured_variants, is_kept, on_gpu
from kick_hub.space.results import BEYOND_ACCURACY, SCORES, close_figure, results_frame, results_sections, sweep_figures
from kick_hub.space.tables import BROWSE_WIDTHS, CSS, display_frame, fit_widths

__all__ = ["NO_RUN_DIR", "build", "launch", "from_env", "PASSAGE_HEAD", "question_text", "browse", "check_whole",
           "check_choice", "check_flag", "check_prompt", "check_run_dir", "AS_TYPED", "CHAT", "PROMPT_FORMATS",
           "task_format", "applied_format", "compare_stream", "check_compare", "compare_outputs", "SOURCE_NAMES",
           "source_label", "load_examples", "example_record", "example_prompt", "reference_text", "KL_FULL",
           "KL_RGB", "token_pieces", "output_kl", "kl_strip_html", "kl_strips", "LEADERBOARD_HEADERS",
           "METRIC_WORDS", "task_header", "leaderboard_frame", "MAX_INPUT_CHARS", "MAX_NEW_TOKENS", "MAX_PANES",
           "CACHE_SIZE", "CONCURRENCY", "QUEUE_SIZE", "EXAMPLES_PER_TASK", "COMPARE_TASKS", "RIGHT", "GPU_SECONDS",
           "is_kept", "Models", "on_gpu", "featured_variants", "results_sections", "SCORES", "BEYOND_ACCURACY",
           "results_frame", "sweep_figures", "close_figure", "display_frame", "fit_widths", "BROWSE_WIDTHS", "CSS"]
