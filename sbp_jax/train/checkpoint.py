"""Orbax checkpointing of the train state together with the data position.

With an iterator that has them (sbp_jax.data.pipeline, data.checkpoint_iterator),
each checkpoint also holds the tf.data iterator of every host, as the orbax item
`data_iterator`: <directory>/<step>/data_iterator/host-<i>-of-<n>.{index,data-*}.
Being an item of the step, it shares the step's atomicity (orbax writes into a
temporary step directory renamed when every host is done, or, on gs://, marks
the step committed then) and its garbage collection (max_to_keep deletes the
whole step directory). Each host writes and reads only its own file. The JSON
position stays in the `data` item; resuming uses the iterator checkpoint when it
can and otherwise skips (see the pipeline's module docstring).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from sbp_jax import fileio
from sbp_jax.errors import InputError

log = logging.getLogger("sbp_jax")

ITERATOR_ITEM = "data_iterator"


def _host_file() -> str:
  return f"host-{jax.process_index()}-of-{jax.process_count()}"


class IteratorHandler(ocp.CheckpointHandler):
  """Saves a data iterator's own checkpoint (save_iterator, to a per-host path
  prefix); synchronous, so the iterator is captured before the trainer pulls
  the next batch. Restoring returns this host's prefix: the iterator reads it
  after set_state (see Checkpointer.restore)."""

  def save(self, directory, args: "IteratorSave"):
    directory.mkdir(parents=True, exist_ok=True)
    args.iterator.save_iterator(os.fspath(directory / _host_file()))

  def restore(self, directory, args: "IteratorRestore") -> str:
    return os.fspath(directory / _host_file())


@ocp.args.register_with_handler(IteratorHandler, for_save=True)
@dataclasses.dataclass
class IteratorSave(ocp.args.CheckpointArgs):
  iterator: Any


@ocp.args.register_with_handler(IteratorHandler, for_restore=True)
@dataclasses.dataclass
class IteratorRestore(ocp.args.CheckpointArgs):
  pass


def check_checkpoint(key: str, path: str) -> None:
  """An input checkpoints directory that exists and holds a step; checked before a
  Checkpointer opens it (which would create a mistyped path)."""
  p = epath.Path(path)
  if not p.is_dir() or not any(x.name.isdigit() for x in p.iterdir()):
    raise InputError(f"{key}={path!r} holds no checkpoint; point it at a run's checkpoints/ "
                     "directory or an import job's output checkpoints/.")


def _checkpoints_iterator(iterator) -> bool:
  return bool(getattr(iterator, "checkpoint_iterator", False))


class Checkpointer:
  """Keeps the newest `keep` checkpoints, saved asynchronously; restores onto
  whatever sharding the abstract target carries (so the mesh may change). The
  caller decides when to save (every `every` steps, at the end, on SIGTERM)."""

  def __init__(self, directory: str, every: int, keep: int, async_save: bool = True):
    # Known up front, so restoring other items of a step holding an iterator
    # checkpoint (restore_params, eval jobs) does not warn about it.
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for args_type in (IteratorSave, IteratorRestore):
      registry.add(ITERATOR_ITEM, args_type, IteratorHandler())
    self._steps = ocp.step.standard_name_format()  # orbax's default: <directory>/<step>
    self.manager = ocp.CheckpointManager(
        fileio.resolve(directory),
        options=ocp.CheckpointManagerOptions(
            save_interval_steps=max(1, every), max_to_keep=keep,
            enable_async_checkpointing=async_save, create=True,
            step_name_format=self._steps),
        handler_registry=registry)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_state: dict, force: bool = False,
           iterator=None) -> bool:
    """`iterator`: also checkpoint its tf.data state, if it supports that."""
    if step in self.manager.all_steps():  # e.g. a SIGTERM save right after a periodic one
      return False
    items = dict(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state))
    if _checkpoints_iterator(iterator):
      items[ITERATOR_ITEM] = IteratorSave(iterator)
    return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, step: int, abstract_state, iterator=None):
    """(state, data_state). With `iterator`, also puts it at the saved
    position: set_state, then its iterator checkpoint when there is one."""
    items = dict(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore())
    use_ckpt = _checkpoints_iterator(iterator)
    if use_ckpt and (self.step_directory(step) / ITERATOR_ITEM).exists():
      items[ITERATOR_ITEM] = IteratorRestore()
    out = self.manager.restore(step, args=ocp.args.Composite(**items))
    if iterator is not None:
      iterator.set_state(out.data)
      if use_ckpt:  # None: an older checkpoint, or one saved with it off; skip then
        iterator.restore_iterator(out.get(ITERATOR_ITEM))
    return out.state, out.data

  def restore_latest(self, abstract_state, iterator=None):
    """(step, state, data_state) from the newest step that reads back, or None when
    there is none. A step whose shapes differ from `abstract_state` is an error
    listing them; a damaged step (truncated or unreadable files) is moved aside
    to damaged-<step> with a warning and the previous one is tried."""
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        return (step, *self.restore(step, abstract_state, iterator))
      except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore raise many types
        mismatched = self.shape_mismatches(step, abstract_state)
        if mismatched:
          raise InputError(
              f"checkpoint step {step} in {self.manager.directory} does not match the "
              f"config's model: {'; '.join(mismatched)}. Use the model config it was "
              "trained with, or a new --workdir for this model.") from None
        aside = self.step_directory(step).parent / f"damaged-{step}"
        log.warning("checkpoint step %d in %s is damaged (%s: %s); moved it to %s and "
                    "falling back to the previous step.", step, self.manager.directory,
                    type(e).__name__, str(e).strip().splitlines()[0][:200] if str(e) else "",
                    aside)
        self.step_directory(step).rename(aside)
        self.manager.reload()
    return None

  def shape_mismatches(self, step: int, abstract_state) -> list[str]:
    """'name: checkpoint (shape) vs config (shape)' for each differing parameter;
    [] when the shapes agree or the step's metadata cannot be read."""
    try:
      saved = self.manager.item_metadata(step)["state"]
    except Exception:  # pylint: disable=broad-except  # a damaged step: no metadata
      return []
    want = getattr(abstract_state, "params", None)
    if want is None and isinstance(abstract_state, dict):
      want = abstract_state.get("params")
    have = saved.get("params") if hasattr(saved, "get") else None
    if want is None or have is None:
      return []
    flat = lambda t: {jax.tree_util.keystr(k): tuple(getattr(v, "shape", np.shape(v)))
                      for k, v in jax.tree_util.tree_flatten_with_path(t)[0]}
    a, b = flat(have), flat(want)
    out = [f"{k}: checkpoint {a.get(k, 'absent')} vs config {b.get(k, 'absent')}"
           for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return out[:12] + ([f"and {len(out) - 12} more"] if len(out) > 12 else [])

  def step_directory(self, step: int):
    """The (epath) directory of a finished step."""
    return self._steps.find_step(self.manager.directory, step).path

  def restore_params(self, step: int, abstract_params):
    """Only the parameters (e.g. to start fine-tuning from a pretrained run)."""
    try:
      out = self.manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
              item={"params": abstract_params},
              restore_args=ocp.checkpoint_utils.construct_restore_args(
                  {"params": abstract_params}),
              partial_restore=True)))
    except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore raise many types
      mismatched = self.shape_mismatches(step, {"params": abstract_params})
      what = (f"does not match the config's model: {'; '.join(mismatched)}. Set the model "
              "config (or generate.model_json) to the one it was made with" if mismatched else
              f"could not be read ({type(e).__name__}: "
              f"{(str(e).strip().splitlines() or [''])[0][:200]}); it is damaged. Point at "
              "another checkpoint or re-create it")
      raise InputError(f"checkpoint step {step} in {self.manager.directory} {what}.") from None
    return out.state["params"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
