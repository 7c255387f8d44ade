"""seqio Tasks for the three record formats, and the feature converter that
turns (packed) task examples into the trainer's batch dict.

Every task, whatever its format, outputs the same two features so tasks of
different formats can share a Mixture:
  targets    int32 tokens of one training sequence, ending in EOS
  loss_mask  int32 1 where the token is trained on, 0 where it is context

Formats (record fields in parentheses):
  text (text)                   pretraining: tokens + EOS, loss on all of them.
                                A document longer than the sequence length is
                                cut into sequence-length pieces, each its own
                                packed segment (nothing is thrown away).
  pairs (d1, d2)                synthesizer-tuning: d1 DOC_SEP d2 EOS in one
                                sequence, loss on d2 and EOS only. If it does not
                                fit `max_len`, d1 is cut (its beginning kept);
                                d2 is cut only if it alone does not fit.
  prompt_response (prompt, response)
                                SFT: prompt response EOS, loss on response and
                                EOS. A long prompt keeps its end (the part next
                                to the response).
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

from sbp_jax.data import special_tokens
from sbp_jax.data import vocab as vocab_lib
from sbp_jax.data.sources import FIELDS, make_source, tf_and_seqio

tf, seqio = tf_and_seqio()

FORMATS = tuple(FIELDS)


def _vocab(output_features):
  return output_features["targets"].vocabulary


def _doc_sep_ids(vocab) -> list[int]:
  """d1/d2 separator ids; the same as synthesis prompts end with (vocab.doc_sep_ids)."""
  if vocab_lib.is_hf(vocab):
    return vocab_lib.doc_sep_ids(vocab.tokenizer)
  return [_special_id(vocab, special_tokens.DOC_SEP)]


def _special_id(vocab, piece: str) -> int:
  sp = vocab.tokenizer
  i = sp.piece_to_id(piece)
  if i == sp.unk_id() or sp.id_to_piece(i) != piece:
    raise ValueError(f"{vocab.sentencepiece_model_file}: the tokenizer has no single piece "
                     f"{piece!r}; train it with sbp_jax.data.special_tokens.REQUIRED as "
                     f"user-defined symbols.")
  return i


def text_preprocessor(dataset, sequence_length, output_features):
  """{"text"} -> {"targets": tokens + EOS (in pieces of at most L), "loss_mask": 1s}."""
  vocab = _vocab(output_features)
  length = sequence_length["targets"]

  def tokenize(ex):
    return tf.concat([vocab.encode_tf(ex["text"]), [vocab.eos_id]], 0)

  def pieces(ids):
    n = tf.size(ids)
    starts = tf.range(0, n, length)
    rows = tf.RaggedTensor.from_row_lengths(ids, tf.minimum(length, n - starts))
    return tf.data.Dataset.from_tensor_slices(rows).map(
        lambda t: {"targets": t, "loss_mask": tf.ones_like(t)})

  dataset = dataset.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.filter(lambda ids: tf.size(ids) > 1)  # empty documents carry no signal
  return dataset.flat_map(pieces)


def _join(context, target, sep: Sequence[int], eos: int, max_len: int, keep_context_end: bool):
  """context sep target EOS, with loss mask 0 on context+sep and 1 on target+EOS."""
  sep = tf.constant(list(sep), tf.int32)
  room = max_len - tf.size(sep) - 1
  target = target[:room]
  room = room - tf.size(target)
  context = context[tf.maximum(tf.size(context) - room, 0):] if keep_context_end else context[:room]
  targets = tf.concat([context, sep, target, [eos]], 0)
  mask = tf.concat([tf.zeros(tf.size(context) + tf.size(sep), tf.int32),
                    tf.ones(tf.size(target) + 1, tf.int32)], 0)
  return {"targets": targets, "loss_mask": mask}


def pairs_preprocessor(dataset, sequence_length, output_features, max_len: int | None = None):
  """{"d1", "d2"} -> d1 DOC_SEP d2 EOS, loss on d2 and EOS."""
  vocab = _vocab(output_features)
  sep = _doc_sep_ids(vocab)
  limit = min(max_len or sequence_length["targets"], sequence_length["targets"])

  def fn(ex):
    return _join(vocab.encode_tf(ex["d1"]), vocab.encode_tf(ex["d2"]), sep, vocab.eos_id,
                 limit, keep_context_end=False)
  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def prompt_response_preprocessor(dataset, sequence_length, output_features,
                                 max_len: int | None = None):
  """{"prompt", "response"} -> prompt response EOS, loss on response and EOS."""
  vocab = _vocab(output_features)
  limit = min(max_len or sequence_length["targets"], sequence_length["targets"])

  def fn(ex):
    return _join(vocab.encode_tf(ex["prompt"]), vocab.encode_tf(ex["response"]), [],
                 vocab.eos_id, limit, keep_context_end=True)
  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


PREPROCESSORS = {"text": text_preprocessor, "pairs": pairs_preprocessor,
                 "prompt_response": prompt_response_preprocessor}


def output_features(vocab) -> dict:
  return {"targets": seqio.Feature(vocab, add_eos=True, dtype=tf.int32),
          "loss_mask": seqio.Feature(seqio.PassThroughVocabulary(2), add_eos=False,
                                     dtype=tf.int32)}


def register_task(name: str, fmt: str, split_to_files: Mapping, vocab, *,
                  max_len: int | None = None, shuffle_buffer_size: int = 10_000):
  """Registers (replacing any task of that name) and returns a seqio.Task."""
  if fmt not in PREPROCESSORS:
    raise ValueError(f"Task {name!r}: format={fmt!r} is not known; choose one of {FORMATS}.")
  source = make_source(dict(split_to_files), FIELDS[fmt])
  prep = PREPROCESSORS[fmt]
  if fmt != "text":
    prep = functools.partial(prep, max_len=max_len)
    functools.update_wrapper(prep, PREPROCESSORS[fmt])
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(name, source=source, output_features=output_features(vocab),
                                preprocessors=[prep], shuffle_buffer_size=shuffle_buffer_size)


def sequence_lengths(seq_len: int) -> dict[str, int]:
  return {"targets": seq_len, "loss_mask": seq_len}


_spec = seqio.FeatureConverter.FeatureSpec


class LMBatchConverter(seqio.FeatureConverter):
  """A seqio FeatureConverter yielding the trainer's batch keys (see
  sbp_jax.train.step): inputs, targets, weights, segment_ids, positions.

  Packing is seqio's trim_and_pack: whole examples are placed into rows,
  segment ids number them (0 = padding) and positions restart at 0 for each,
  so attention never crosses an example. Inputs are the targets shifted right
  within each segment, with the vocabulary's bos (else its pad id) as the start
  token. seqio's packer and padder treat the value 0 as padding, but 0 is an
  ordinary token of Hugging Face vocabularies, so targets and the loss mask are
  carried as id + 1 and shifted back; padded positions then hold the pad id,
  with segment id 0 and weight 0 (padding is found by position, never by id)."""

  TASK_FEATURES = {"targets": _spec(dtype=tf.int32), "loss_mask": _spec(dtype=tf.int32)}
  MODEL_FEATURES = {"inputs": _spec(dtype=tf.int32), "targets": _spec(dtype=tf.int32),
                    "weights": _spec(dtype=tf.float32), "segment_ids": _spec(dtype=tf.int32),
                    "positions": _spec(dtype=tf.int32)}
  PACKING_FEATURE_DTYPES = {"segment_ids": tf.int32, "positions": tf.int32}

  def __init__(self, pack: bool = True, vocab=None):
    from sbp_jax.data.vocab import start_id  # pylint: disable=g-import-not-at-top
    pad = 0 if vocab is None else int(vocab.pad_id)
    super().__init__(pack=pack, bos_id=0 if vocab is None else start_id(vocab))
    self.pad_id = pad

  def _convert_example(self, ex):
    shifted = ex["targets"]
    if self.pack:
      seg, pos = ex["targets_segment_ids"], ex["targets_positions"]
    else:
      seg = tf.cast(tf.not_equal(shifted, 0), tf.int32)
      pos = tf.range(tf.size(shifted), dtype=tf.int32) * seg
    real = tf.not_equal(seg, 0)
    targets = tf.where(real, shifted - 1, self.pad_id)
    inputs = seqio.utils.make_autoregressive_inputs(
        targets, sequence_id=seg if self.pack else None, bos_id=self.bos_id)
    inputs = tf.where(real, inputs, self.pad_id)
    weights = tf.cast(tf.maximum(ex["loss_mask"] - 1, 0) * tf.minimum(seg, 1), tf.float32)
    return {"inputs": inputs, "targets": targets, "weights": weights, "segment_ids": seg,
            "positions": pos}

  def _convert_features(self, ds, task_feature_lengths):
    ds = ds.map(lambda ex: {"targets": ex["targets"] + 1, "loss_mask": ex["loss_mask"] + 1},
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = self._pack_or_pad(ds, task_feature_lengths)
    return ds.map(self._convert_example, num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths):
    return {k: task_feature_lengths["targets"] for k in self.MODEL_FEATURES}
