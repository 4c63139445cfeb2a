"""Elapsed time and remaining-time estimates for a sequence of similar runs (trials, ablation runs)."""

from __future__ import annotations

import time
from collections.abc import Sequence


def format_duration(seconds: float) -> str:
    """`2h05m`, `4m12s` or `9s`: short enough for a progress line."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class RunClock:
    """Counts time since it was made, plus time spent before (an earlier, interrupted session).

    Args:
        earlier_seconds: time already spent on this job in previous sessions.
    """

    def __init__(self, earlier_seconds: float = 0.0):
        self.earlier_seconds = earlier_seconds
        self._start = time.monotonic()

    def elapsed(self) -> float:
        return self.earlier_seconds + time.monotonic() - self._start

    def status(self, durations: Sequence[float], remaining_runs: int) -> str:
        """`elapsed 13m40s, about 37m00s left`: the estimate is the mean of `durations` per remaining run."""
        text = f"elapsed {format_duration(self.elapsed())}"
        if remaining_runs <= 0:
            return text
        if not durations:
            return f"{text}, {remaining_runs} to go"
        estimate = sum(durations) / len(durations) * remaining_runs
        return f"{text}, about {format_duration(estimate)} left ({remaining_runs} to go)"
