"""How the Space's tables show: an infinite score as ``∞``, cells that wrap (``CSS``) and columns sized to fit a
1024 px window (``fit_widths``, ``BROWSE_WIDTHS``)."""

from __future__ import annotations

import math


def display_frame(frame):
    """A table for gradio, which sends a non-finite float as an empty cell: ``inf`` cells become the text ``∞`` /
    ``-∞`` (NaN stays empty: a missing value)."""
    from kick_hub.io import format_number

    def cell(v):
        return format_number(v) if isinstance(v, float) and math.isinf(v) else v

    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, float) and math.isinf(v)).any():
            frame[column] = frame[column].astype(object).map(cell)
    return frame


def fit_widths(frame) -> list[str]:
    """Column widths (shares of the table's width, so the table fits its box at any window width) for a DataFrame,
    each column's share following its longest header word or cell text (between 5 and 16 characters, plus the
    cell's padding); a longer text wraps in its cell (``CSS``)."""
    def longest(column) -> int:
        words = str(column).split() or [""]
        cells = [len(str(v)) for v in frame[column] if v is not None and v == v]
        return min(max(5, *map(len, words), *cells), 16) + 3  # + 3: the cell's padding and menu button

    weights = [longest(c) for c in frame.columns]
    return [f"{100 * w / sum(weights):.2f}%" for w in weights]


# the browser's columns (question, reference, dense, variant, dense score, variant score, id) as shares of the
# table's width: the texts get the room, wrapped in their cells (``CSS``), so nothing is cut at 1024 px
BROWSE_WIDTHS = ["26%", "13%", "16%", "16%", "10%", "10%", "9%"]
# every table's cells wrap (long ids too) and keep line breaks (an MCQ question's options, one a line); gradio's
# own cell rule is more specific than a class selector, hence !important
CSS = """
.kick-table span.text:not(.header) { white-space: pre-wrap !important; overflow-wrap: anywhere !important; }
.kick-table span.header { word-break: normal !important; overflow-wrap: anywhere !important; }
"""
