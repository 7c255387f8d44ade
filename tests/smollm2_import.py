"""The imported SmolLM2 that slow end-to-end tests run on: imported once into a temporary
directory from the GGUF that launch/setup.sh installs, and a config pointed at it."""

import os


def import_smollm2(tmp_path_factory, import_section) -> str:
  """A fresh import (config.import_gguf's source and dtype) in a temporary directory."""
  from sbp_jax.convert import gguf_import  # pylint: disable=g-import-not-at-top
  gguf_import.resolve_source(import_section.source)  # names the missing package, if it is
  out = str(tmp_path_factory.mktemp("smollm2_import"))
  import_section.workdir = out
  gguf_import.ensure_imported(import_section)
  return out


def point_at(c, out: str, fsdp: bool = True):
  """c reading the import in `out`; with fsdp, sharded over the session's 8 emulated
  devices: replicated (data-parallel) copies of SmolLM2's weights and Adam state would
  need about 8 x 2 GB of host memory."""
  c.import_gguf.workdir = out
  c.generate.model_json = os.path.join(out, "model.json")
  c.generate.checkpoint = os.path.join(out, "checkpoints")
  c.tokenizer.path = os.path.join(out, "tokenizer")
  if fsdp:
    c.mesh.ici = (1, -1, 1)
  return c
