"""Hugging Face Space entry point: the kick-hub comparison app (``kick_hub.space``), configured by the Space variables
KICK_RUN_DIR, KICK_ALLOW, KICK_DATA, KICK_RESULTS_REPO, KICK_DEVICE and KICK_DTYPE (``space.from_env``).
``kick publish-space ORG/NAME`` puts this folder on the Hub with the ``kick_hub`` package beside it and a
``requirements.txt`` of its dependencies. Locally: ``kick space --run-dir runs/world``."""

import importlib.util

if importlib.util.find_spec("spaces"):  # a Hub Space: spaces is imported before anything can touch CUDA (ZeroGPU)
    import spaces  # noqa: F401

from kick_hub import space  # noqa: E402

demo = space.build(**space.from_env())
demo.queue(default_concurrency_limit=space.CONCURRENCY, max_size=space.QUEUE_SIZE)

if __name__ == "__main__":
    demo.launch(css=space.CSS)
