"""SentencePiece BPE tokenizers for sbp_jax, exposed as seqio vocabularies.

Every model we train reserves the special tokens of `special_tokens.REQUIRED`
as user-defined pieces (always one id, even in the middle of text), uses
pad=0 / eos=1 / unk=2 with no bos (seqio's conventions), and falls back to
UTF-8 bytes for characters outside the learned vocabulary, so no input is
ever mapped to <unk>.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from typing import Iterable, Iterator

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from sbp_jax import fileio
from sbp_jax.data import special_tokens

FIX = "retrain it with scripts/train_tokenizer.py, which reserves every required special token"


def _chunks(texts: Iterable[str], max_bytes: int) -> Iterator[str]:
  """Yields training sentences of at most `max_bytes` UTF-8 bytes.

  SentencePiece silently skips longer inputs; we cut long documents at line
  boundaries instead (a single over-long line is cut at a character boundary).
  """
  for text in texts:
    if not text:
      continue
    if len(text.encode("utf-8")) <= max_bytes:
      yield text
      continue
    buf, size = [], 0
    for line in text.splitlines(keepends=True):
      n = len(line.encode("utf-8"))
      if size + n > max_bytes and buf:
        yield "".join(buf)
        buf, size = [], 0
      while n > max_bytes:  # one huge line: cut it by characters
        cut = line.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
        yield cut
        line = line[len(cut):]
        n = len(line.encode("utf-8"))
      buf.append(line)
      size += n
    if buf:
      yield "".join(buf)


def _has_fileno(stream) -> bool:
  try:
    stream.fileno()
    return True
  except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
    return False


def train_sentencepiece(texts: Iterable[str], model_prefix: str, vocab_size: int, *,
                        character_coverage: float = 0.9995,
                        input_sentence_size: int = 2_000_000,
                        max_sentence_bytes: int = 16_384,
                        num_threads: int = 2, seed: int = 0,
                        special_symbols: tuple[str, ...] = special_tokens.REQUIRED,
                        **extra) -> str:
  """Trains a BPE model on `texts`; writes `<model_prefix>.model` (and .vocab).

  Normalisation is the identity and whitespace is kept as is (no dummy prefix,
  no collapsing of spaces), so `decode(encode(x)) == x` for any string,
  including indented code. Digits are split so numbers tokenize uniformly.
  At most `input_sentence_size` sentences (a seeded sample) are used, which
  bounds memory on large corpora. `extra` overrides any trainer option.
  Returns the path of the .model file.
  """
  spm.set_random_generator_seed(seed)
  options = dict(
      model_type="bpe",
      vocab_size=vocab_size,
      byte_fallback=True,
      user_defined_symbols=list(special_symbols),
      pad_id=special_tokens.PAD_ID, eos_id=special_tokens.EOS_ID,
      unk_id=special_tokens.UNK_ID, bos_id=-1,
      pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
      character_coverage=character_coverage,
      normalization_rule_name="identity",
      remove_extra_whitespaces=False,
      add_dummy_prefix=False,
      allow_whitespace_only_pieces=True,
      split_digits=True,
      input_sentence_size=input_sentence_size,
      shuffle_input_sentence=True,
      max_sentence_length=max_sentence_bytes,
      num_threads=num_threads,
  )
  options.update(extra)
  failure = []

  def sentences():
    # SentencePiece swallows exceptions raised by the iterator (it just sees
    # the input end); keep the error and re-raise it after training.
    try:
      yield from _chunks(texts, max_sentence_bytes)
    except Exception as e:  # pylint: disable=broad-except
      failure.append(e)

  # SentencePiece writes local files only: train into a temporary directory, then
  # publish through the file layer (so model_prefix may be remote).
  with tempfile.TemporaryDirectory() as tmp_dir:
    tmp_prefix = os.path.join(tmp_dir, "spm")
    try:
      with open(os.devnull, "w") as quiet:
        # Silencing the trainer redirects sys.stderr's file descriptor, which a captured
        # or notebook stderr may not have; then its log goes to the process's stderr.
        spm.SentencePieceTrainer.Train(sentence_iterator=sentences(), model_prefix=tmp_prefix,
                                       logstream=quiet if _has_fileno(sys.stderr) else None,
                                       **options)
    except RuntimeError as e:  # e.g. too little text for vocab_size
      if failure:
        raise failure[0] from e
      raise RuntimeError(f"SentencePiece training for {model_prefix} failed: {e}") from e
    if failure:
      raise failure[0]
    # The proto records the (temporary) prefix; store the final base name so
    # the same inputs always give the same bytes.
    proto = sp_pb2.ModelProto.FromString(fileio.read_bytes(tmp_prefix + ".model"))
    proto.trainer_spec.model_prefix = os.path.basename(model_prefix)
    fileio.write_bytes(model_prefix + ".vocab", fileio.read_bytes(tmp_prefix + ".vocab"))
    fileio.write_bytes(model_prefix + ".model", proto.SerializeToString(deterministic=True))
  return model_prefix + ".model"


def train_small_corpus_sentencepiece(texts: Iterable[str], model_prefix: str,
                                     vocab_size: int) -> str:
  """train_sentencepiece for a small generated corpus (the concept testbed, the s1 demo's
  arithmetic): one thread, so the same texts always give the same model; every character
  kept; and no hard vocab limit, since a tiny alphabet may support fewer merges."""
  return train_sentencepiece(texts, model_prefix, vocab_size, num_threads=1,
                             character_coverage=1.0, hard_vocab_limit=False)


def check_special_tokens(sp: spm.SentencePieceProcessor, path: str,
                         required: tuple[str, ...] = special_tokens.REQUIRED) -> None:
  """Raises ValueError unless each required token is one piece and the
  pad/eos ids follow our convention."""
  for tok in required:
    pid = sp.piece_to_id(tok)
    if sp.id_to_piece(pid) != tok or sp.encode(tok) != [pid]:
      raise ValueError(f"SentencePiece model {path} has no single piece for the required special "
                       f"token {tok!r} (see sbp_jax/data/special_tokens.py); {FIX}.")
  if sp.pad_id() != special_tokens.PAD_ID or sp.eos_id() != special_tokens.EOS_ID:
    raise ValueError(f"SentencePiece model {path} has pad_id={sp.pad_id()} eos_id={sp.eos_id()}; "
                     f"sbp_jax needs pad_id={special_tokens.PAD_ID} eos_id={special_tokens.EOS_ID}; "
                     f"{FIX}.")


def _missing(path: str) -> FileNotFoundError:
  return FileNotFoundError(f"SentencePiece model {path} does not exist; set data.vocab to a .model "
                           "file (e.g. data/demo_corpus/spm_bpe_4096.model) or train one with "
                           "scripts/train_tokenizer.py.")


def load_vocabulary(path: str, extra_ids: int = 0) -> "seqio.SentencePieceVocabulary":
  """A seqio vocabulary for the model at `path` (local or gs://), after
  checking it reserves every special token sbp_jax relies on."""
  # seqio pulls in TensorFlow; imported here so that samplers need not pay for it.
  import seqio  # pylint: disable=g-import-not-at-top
  if not fileio.exists(path):
    raise _missing(path)
  vocab = seqio.SentencePieceVocabulary(path, extra_ids=extra_ids)
  check_special_tokens(vocab.tokenizer, path)
  return vocab


class SentencePieceTokenizer:
  """The sampler's Tokenizer protocol over one of our SentencePiece models."""

  def __init__(self, path: str):
    if not fileio.exists(path):
      raise _missing(path)
    self.path = path
    self._sp = spm.SentencePieceProcessor(model_proto=fileio.read_bytes(path))
    check_special_tokens(self._sp, path)
    self.eos_ids = (self._sp.eos_id(),)
    self.pad_id = self._sp.pad_id()
    self.vocab_size = self._sp.get_piece_size()

  @functools.cached_property
  def vocabulary(self):
    """The same model as a seqio vocabulary (for data pipelines)."""
    return load_vocabulary(self.path)

  def encode(self, text: str) -> list[int]:
    return list(self._sp.encode(text))

  def decode(self, ids) -> str:
    n = self.vocab_size
    return self._sp.decode([int(i) for i in ids if 0 <= int(i) < n])

  def token_to_id(self, token: str) -> int | None:
    pid = self._sp.piece_to_id(token)
    if pid == self._sp.unk_id() and token != self._sp.id_to_piece(pid):
      return None
    return pid
