"""Hugging Face tokenizers (a model's tokenizer.json) for sampling and training.

`HFTokenizer` reads tokenizer.json with the `tokenizers` library and the model's
own special-token ids from the files beside it (tokenizer_config.json,
config.json, generation_config.json), as an import writes them to
IMPORT/tokenizer/. `HFVocabulary` is the same tokenizer as a seqio Vocabulary,
so the data layer trains imported models on their own ids: no pad=0 / eos=1
convention is assumed (in Llama 3 or Qwen, ids 0 and 1 are ordinary tokens).

Padding. The data layer marks padding by position (segment id 0, loss weight
0), never by token value. A model's padding id is its own pad token, else
`tokenizer.pad_id`. A pad id that is also a token the model is trained on (its
eos or bos, or an ordinary token; Qwen2.5's base models pad with their eos) is
refused unless `tokenizer.mask_pad=True` says that is intended: then every
padded position is masked out of the loss and a reader of the batches must
never find padding by its id.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Sequence

from etils import epath

SIDE_FILES = ("tokenizer_config.json", "config.json", "generation_config.json",
              "special_tokens_map.json")


def tokenizer_file(path: str) -> str:
  """`path` is tokenizer.json itself or a directory holding it."""
  p = epath.Path(path)
  return str(p / "tokenizer.json") if p.is_dir() else str(p)


def _read_json(path: epath.Path) -> dict:
  if not path.exists():
    return {}
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}); restore it from the model's release."
                     ) from None


def _token_name(v):
  return v.get("content") if isinstance(v, dict) else v


class HFTokenizer:
  """The sampler's Tokenizer protocol over a tokenizer.json (see the module docstring).

  eos_ids: every id that ends generation (generation_config.json lists several
  for chat models); eos_id: the one appended to training documents (the
  tokenizer's own eos_token first). bos_id / own_pad_id are None when the
  model has none. pad_id (for the sampler's masked slots) falls back to eos.
  """

  def __init__(self, path: str):
    from tokenizers import Tokenizer as _Tok  # pylint: disable=g-import-not-at-top
    self.file = tokenizer_file(path)
    f = epath.Path(self.file)
    if not f.exists():
      raise FileNotFoundError(f"{self.file} does not exist; point tokenizer.path at a directory "
                              "holding tokenizer.json (an import writes IMPORT/tokenizer/), or at "
                              "the file itself.")
    self._tok = _Tok.from_str(f.read_text())
    d = f.parent
    self._side = {n: _read_json(d / n) for n in SIDE_FILES}
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
    self.eos_ids = self._generation_eos()
    self.eos_id = self._special("eos")
    if self.eos_id is None and self.eos_ids:
      self.eos_id = self.eos_ids[0]
    if self.eos_id is not None and self.eos_id not in self.eos_ids:
      self.eos_ids = (self.eos_id,) + self.eos_ids
    self.bos_id = self._special("bos")
    self.own_pad_id = self._special("pad")
    self.pad_id = next((i for i in (self.own_pad_id, self.eos_id) if i is not None), 0)

  def _generation_eos(self) -> tuple[int, ...]:
    for name in ("generation_config.json", "config.json"):
      e = self._side[name].get("eos_token_id")
      if e is not None:
        return tuple(int(i) for i in e) if isinstance(e, list) else (int(e),)
    return ()

  def _special(self, kind: str) -> int | None:
    """The model's `kind` (bos/eos/pad) id: the token named in tokenizer_config.json or
    special_tokens_map.json, else the id in config.json / generation_config.json."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
      tok = _token_name(self._side[name].get(f"{kind}_token"))
      if tok:
        i = self._tok.token_to_id(tok)
        if i is None:
          raise ValueError(f"{os.path.dirname(self.file)}/{name}: {kind}_token {tok!r} is not "
                           f"a token of {self.file}; fix the file (it must name one of the "
                           "tokenizer's added tokens).")
        return i
    for name in ("config.json", "generation_config.json"):
      i = self._side[name].get(f"{kind}_token_id")
      if isinstance(i, list):
        i = i[0] if i else None
      if i is not None:
        return int(i)
    return None

  def is_special(self, i: int) -> bool:
    """True for added special tokens (chat markers, reserved ids), which text never yields."""
    added = self._tok.get_added_tokens_decoder().get(int(i))
    return added is not None and added.special

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def encode_for_model(self, text: str, max_len: int) -> list[int]:
    """As the model's own pipeline tokenizes (its post-processor adds e.g. Llama's bos or
    Qwen3-Embedding's closing <|endoftext|>), the text cut so that all fits max_len."""
    enc = self._tok.encode(text, add_special_tokens=False)
    enc.truncate(max(max_len - self._tok.num_special_tokens_to_add(False), 0))
    return self._tok.post_process(enc).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids: Sequence[int]) -> str:
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

  def token_to_id(self, token: str) -> int | None:
    return self._tok.token_to_id(token)

  def training_ids(self, pad_id: int | None = None, mask_pad: bool = False) -> dict:
    """{bos, eos, pad} for the data layer, checked (see the module docstring)."""
    where = os.path.dirname(self.file) or "."
    if self.eos_id is None:
      raise ValueError(
          f"{self.file} has no eos token: none of {where}/tokenizer_config.json (eos_token), "
          f"config.json or generation_config.json (eos_token_id) names one, and training needs "
          f"it to end documents. Add eos_token to {where}/tokenizer_config.json (the model "
          f"release's files carry it).")
    pad = self.own_pad_id if self.own_pad_id is not None else pad_id
    if pad is None or pad < 0:
      raise ValueError(
          f"{self.file}: the model has no pad token (no pad_token in {where}/"
          f"tokenizer_config.json); set tokenizer.pad_id to the id to pad with (e.g. an unused "
          f"reserved special token), and tokenizer.mask_pad=True if it is a real token.")
    if not 0 <= pad < self.vocab_size:
      raise ValueError(f"tokenizer.pad_id={pad} is outside the {self.vocab_size} ids of "
                       f"{self.file}; choose an id of the tokenizer.")
    if not mask_pad:
      collides = ("its eos" if pad == self.eos_id else "its bos" if pad == self.bos_id
                  else None if self.is_special(pad) else "an ordinary token")
      if collides:
        raise ValueError(
            f"{self.file}: pad id {pad} ({self._tok.id_to_token(pad)!r}) is {collides}, so "
            f"padding cannot be told from text by its id. Set tokenizer.mask_pad=True (padding "
            f"is then masked out of the loss by position), or set tokenizer.pad_id to an unused "
            f"special token.")
    return {"bos": self.bos_id, "eos": self.eos_id, "pad": int(pad)}


@functools.cache
def _vocabulary_class():
  import numpy as np  # pylint: disable=g-import-not-at-top
  from sbp_jax.data.sources import seqio, tf  # pylint: disable=g-import-not-at-top  (loads TF)

  class _HFVocabulary(seqio.Vocabulary):
    """seqio Vocabulary over an HFTokenizer, with its checked bos/eos/pad ids.

    encode_tf runs the `tokenizers` library through tf.numpy_function, declared
    stateless (tokenizing is a pure function of the text), so tf.data can still
    checkpoint the iterator (the data layer's fast resume)."""

    def __init__(self, tok: HFTokenizer, pad_id: int | None = None, mask_pad: bool = False):
      super().__init__(extra_ids=0)
      self.tokenizer = tok
      self.mask_pad = bool(mask_pad)
      ids = tok.training_ids(pad_id, mask_pad)
      self._bos, self._eos, self._pad = ids["bos"], ids["eos"], ids["pad"]

    @property
    def bos_id(self):
      return self._bos

    @property
    def eos_id(self):
      return self._eos

    @property
    def pad_id(self):
      return self._pad

    @property
    def unk_id(self):
      return None

    @property
    def _base_vocab_size(self):
      return self.tokenizer.vocab_size

    @property
    def file(self) -> str:
      return self.tokenizer.file

    def _encode(self, s):
      return self.tokenizer.encode(s)

    def _decode(self, ids):
      return self.tokenizer.decode(ids)

    def _encode_tf(self, s):
      def enc(b):
        return np.asarray(self.tokenizer.encode(b.decode("utf-8")), np.int32)
      ids = tf.numpy_function(enc, [s], tf.int32, stateful=False)
      ids.set_shape([None])
      return ids

    def _decode_tf(self, ids):
      def dec(x):
        return self.tokenizer.decode(x.tolist()).encode("utf-8")
      return tf.numpy_function(dec, [ids], tf.string, stateful=False)

    def __eq__(self, other):
      return (isinstance(other, _HFVocabulary) and other.file == self.file
              and (other._bos, other._eos, other._pad) == (self._bos, self._eos, self._pad))

    def __hash__(self):
      return hash((self.file, self._bos, self._eos, self._pad))

  return _HFVocabulary


def HFVocabulary(tok: HFTokenizer, pad_id: int | None = None, mask_pad: bool = False):  # pylint: disable=invalid-name
  """A seqio Vocabulary over `tok` (imports TensorFlow; the sampler never needs it)."""
  return _vocabulary_class()(tok, pad_id, mask_pad)
