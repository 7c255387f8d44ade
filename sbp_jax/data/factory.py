"""Builds train / eval iterators from the `data` section of a config."""

from __future__ import annotations


import jax

from sbp_jax import fileio
from sbp_jax.data.in_memory import TokenWindowIterator, byte_tokens


def _read_text(path: str) -> str:
  if not fileio.exists(path):
    raise FileNotFoundError(f"data.path={path!r} does not exist; point it at a UTF-8 text file.")
  raw = fileio.read_bytes(path)
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: byte {e.start} is not valid UTF-8; re-encode the file as UTF-8."
                     ) from None


def make_iterator(data_cfg, split: str, seq_len: int, global_batch: int, seed: int):
  """split: 'train' or 'eval'. Returns a resumable iterator of host-local batches."""
  kind = data_cfg.kind
  if kind == "text_bytes":
    text = data_cfg.text if data_cfg.get("text") else _read_text(data_cfg.path)
    tokens = byte_tokens(text)
    n_eval = int(len(tokens) * data_cfg.get("eval_fraction", 0.1))
    tokens = tokens[n_eval:] if split == "train" else tokens[:n_eval]
    return TokenWindowIterator(tokens, seq_len, global_batch,
                               seed=seed if split == "train" else seed + 1,
                               process_index=jax.process_index(),
                               process_count=jax.process_count())
  if kind == "seqio":
    # Imported here so jobs on other data kinds never load TensorFlow.
    from sbp_jax.data.pipeline import make_seqio_iterator
    return make_seqio_iterator(data_cfg, split, seq_len, global_batch, seed,
                               process_index=jax.process_index(),
                               process_count=jax.process_count())
  if kind == "replay":
    from sbp_jax.data.replay import make_replay_iterator  # pylint: disable=g-import-not-at-top
    return make_replay_iterator(data_cfg, split, seq_len, global_batch, seed, make_iterator)
  raise ValueError(f"data.kind={kind!r} is not known; choose 'text_bytes', 'seqio' or 'replay'.")
