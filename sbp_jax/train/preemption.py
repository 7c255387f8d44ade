"""SIGTERM (TPU maintenance events, `kill`) -> checkpoint at the next step and exit."""

from __future__ import annotations

import contextlib
import signal

import jax
import numpy as np


class StopFlag:
  def __init__(self):
    self.requested = False

  def should_stop(self) -> bool:
    """True on every host once any host has been signalled."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.array(self.requested))
    return bool(np.any(flags))


@contextlib.contextmanager
def stop_on_sigterm():
  flag = StopFlag()

  def handler(signum, frame):
    del signum, frame
    flag.requested = True

  previous = signal.signal(signal.SIGTERM, handler)
  try:
    yield flag
  finally:
    signal.signal(signal.SIGTERM, previous)
