"""The minimal tokenizer interface the sampler and budget forcing need.

Any object with encode / decode / token_to_id (and optionally `eos_ids`)
works: our SentencePiece models (sbp_jax.data.tokenizer), the `tokenizers`-library adapter below
(Hugging Face tokenizer.json files of imported checkpoints), or the byte
tokenizer used by byte-level demo models.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from sbp_jax.data import special_tokens
from sbp_jax.data.hf_tokenizer import HFTokenizer  # pylint: disable=unused-import  (re-exported)


@runtime_checkable
class Tokenizer(Protocol):

  def encode(self, text: str) -> list[int]:
    ...

  def decode(self, ids: Sequence[int]) -> str:
    ...

  def token_to_id(self, token: str) -> int | None:
    ...


def eos_ids_of(tok) -> tuple[int, ...]:
  """End-of-sequence ids: `tok.eos_ids` if present, else `tok.eos_id`, else
  the project convention EOS_ID."""
  ids = getattr(tok, "eos_ids", None)
  if ids is None:
    one = getattr(tok, "eos_id", None)
    one = one() if callable(one) else one
    ids = (special_tokens.EOS_ID,) if one is None else (int(one),)
  return tuple(int(i) for i in ids)


def pad_id_of(tok) -> int:
  pad = getattr(tok, "pad_id", None)
  pad = pad() if callable(pad) else pad
  return special_tokens.PAD_ID if pad is None or pad < 0 else int(pad)


class ByteTokenizer:
  """UTF-8 bytes as ids 0..255 (the `text_bytes` data kind), then the
  reserved special tokens and an end-of-sequence token from id 256 on."""

  SPECIALS = ("<|eos|>", "<|pad|>") + special_tokens.REQUIRED

  def __init__(self):
    self._special = {s: 256 + i for i, s in enumerate(self.SPECIALS)}
    self._by_id = {i: s for s, i in self._special.items()}
    self.eos_ids = (self._special["<|eos|>"],)
    self.pad_id = self._special["<|pad|>"]
    self.vocab_size = 256 + len(self.SPECIALS)

  def encode(self, text: str) -> list[int]:
    ids: list[int] = []
    i = 0
    while i < len(text):
      for s, sid in self._special.items():
        if text.startswith(s, i):
          ids.append(sid)
          i += len(s)
          break
      else:
        j = i
        while j < len(text) and text[j] != "<":
          j += 1
        j = max(j, i + 1)
        ids.extend(text[i:j].encode("utf-8"))
        i = j
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    out, buf = [], bytearray()
    for i in ids:
      i = int(i)
      if i < 256:
        buf.append(i)
        continue
      out.append(buf.decode("utf-8", errors="replace"))
      buf = bytearray()
      out.append(self._by_id.get(i, ""))
    out.append(buf.decode("utf-8", errors="replace"))
    return "".join(out)

  def token_to_id(self, token: str) -> int | None:
    if token in self._special:
      return self._special[token]
    b = token.encode("utf-8")
    return b[0] if len(b) == 1 else None


def check_fits(tok, vocab_size: int) -> None:
  """A tokenizer whose ids reach past the model's embedding cannot drive it."""
  n = getattr(tok, "vocab_size", None)
  if n is not None and n > vocab_size:
    raise ValueError(f"the tokenizer has {n} ids but the model's vocab_size is {vocab_size}; use "
                     "the tokenizer the model was trained with (config.tokenizer).")


def make_tokenizer(tok_cfg):
  """From a config section {kind: 'bytes' | 'hf' | 'sentencepiece' | '' (from the path), path}."""
  kind = tok_cfg.get("kind", "bytes")
  if kind == "bytes":
    return ByteTokenizer()
  if kind in ("hf", "sentencepiece", ""):
    from sbp_jax.data import vocab  # pylint: disable=g-import-not-at-top
    return vocab.make_tokenizer(tok_cfg)
  raise ValueError(f"tokenizer.kind={kind!r} is not known; choose 'bytes', 'hf' "
                   "(a directory with tokenizer.json, e.g. written by the safetensors import) or "
                   "'sentencepiece' (a .model file, e.g. data/demo_corpus/spm_bpe_4096.model).")
