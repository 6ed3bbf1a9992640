"""Hugging Face Space entry point: the kick-hub comparison app (kick_hub.space), configured by Space variables
KICK_RUN_DIR, KICK_ALLOW, KICK_DATA and KICK_RESULTS_REPO. Locally: `kick space --run-dir runs/world`."""

from kick_hub import space

settings = space.from_env()
demo = space.build(**settings)
demo.queue(default_concurrency_limit=space.CONCURRENCY, max_size=space.QUEUE_SIZE)

if __name__ == "__main__":
    demo.launch()
