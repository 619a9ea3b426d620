"""Progress lines: one plain line at a steady interval wherever long work runs (a Dagster log, a
file, a terminal), never a bar or a carriage return."""

from __future__ import annotations


def time_left(seconds: float) -> str:
    """`1 h 02 min`, `4 min 05 s` or `12 s`."""
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
