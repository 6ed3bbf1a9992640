"""The Space's limits and fixed settings, which its modules share: the most a comparison may ask (input
characters, new tokens, models side by side), the engine cache's and the queue's sizes, the examples offered per
task and which tasks can be compared, what counts as a right answer, and how long a comparison may hold a ZeroGPU
device."""

from __future__ import annotations

from kick_hub import tasks

MAX_INPUT_CHARS = 6000
MAX_NEW_TOKENS = 256
MAX_PANES = 4
CACHE_SIZE = 4
CONCURRENCY, QUEUE_SIZE = 2, 16
EXAMPLES_PER_TASK = 50
# the tasks whose examples can be compared: those whose spec names a reference to show (not perplexity)
COMPARE_TASKS = tuple(t for t, s in tasks.SPECS.items() if s.example_reference)
RIGHT = 0.5  # a per-example score >= 0.5 counts as right (EM / accuracy are 0 or 1; ROUGE-L is continuous)
GPU_SECONDS = 120  # the most one comparison's generation may hold a ZeroGPU device (``on_gpu``)
