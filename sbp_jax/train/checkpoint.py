"""Orbax checkpointing of the train state together with the data position."""

from __future__ import annotations

import os

import orbax.checkpoint as ocp


class Checkpointer:
  """Keeps the newest `keep` checkpoints, saved asynchronously; restores onto
  whatever sharding the abstract target carries (so the mesh may change). The
  caller decides when to save (every `every` steps, at the end, on SIGTERM)."""

  def __init__(self, directory: str, every: int, keep: int, async_save: bool = True):
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(
            save_interval_steps=max(1, every), max_to_keep=keep,
            enable_async_checkpointing=async_save, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_state: dict, force: bool = False) -> bool:
    if step in self.manager.all_steps():  # e.g. a SIGTERM save right after a periodic one
      return False
    return self.manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      data=ocp.args.JsonSave(data_state)), force=force)

  def restore(self, step: int, abstract_state):
    out = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      data=ocp.args.JsonRestore()))
    return out.state, out.data

  def restore_params(self, step: int, abstract_params):
    """Only the parameters (e.g. to start fine-tuning from a pretrained run)."""
    out = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item={"params": abstract_params},
            restore_args=ocp.checkpoint_utils.construct_restore_args(
                {"params": abstract_params}),
            partial_restore=True)))
    return out.state["params"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
