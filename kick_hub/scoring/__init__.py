"""Scoring: the one source of truth for normalisation and every metric (modules, engine and Space call it)."""
