"""The LLM-KICK sweep: plan cells (variants), compress + evaluate each, store results in SQLite, report."""
