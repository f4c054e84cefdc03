"""Stopping a long computation between two of its slices, when the caller says so.

A caller that may abandon the work (a request past its deadline, or whose client went away) passes
`should_stop`: a callable asked before every slice (a block of points by a chunk of samples, an autoregressive
position), True when the work should stop. The loops here then raise WorkStopped; the caller, which knows why,
turns that into its own answer.
"""

from collections.abc import Callable

ShouldStop = Callable[[], bool]


class WorkStopped(Exception):
    """should_stop() said True between two slices: the work was left unfinished."""


def stop_if_asked(should_stop: ShouldStop | None) -> None:
    if should_stop is not None and should_stop():
        raise WorkStopped
