"""The job's one tokenizer, and the one way to count, encode and feed data with it.

A job names its tokenizer once, in the `tokenizer` section:
  tokenizer = dict(kind="sentencepiece" | "hf", path=...,   # kind "" = from the path
                   pad_id=-1,        # hf: id to pad with when the model has no pad token
                   mask_pad=False)   # hf: allow a pad id that is a real token (see hf_tokenizer)
A job started from an imported checkpoint (train.init_from=IMPORT/checkpoints, or an
`import_gguf` section) needs no tokenizer setting: IMPORT/tokenizer is used. The
seqio data sections, the pairing near-duplicate rule and every token count read
that same tokenizer (`job_tokenizer`); `data.vocab` (a path) is still read where a
data section is used on its own, and must agree with `tokenizer.path` when both are set.
"""

from __future__ import annotations

import ml_collections
from etils import epath

SPM_SUFFIX = ".model"


def infer_kind(path: str) -> str:
  """'sentencepiece' for a .model file, 'hf' for tokenizer.json or a directory holding it."""
  return "sentencepiece" if str(path).endswith(SPM_SUFFIX) else "hf"


def section(path: str, kind: str = "", **extra) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(kind=kind or infer_kind(path), path=str(path), **extra))


def import_dir(checkpoint: str) -> str | None:
  """IMPORT for IMPORT/checkpoints (or IMPORT) when it is an import's output
  (model.json and tokenizer/tokenizer.json beside the checkpoints)."""
  if not checkpoint:
    return None
  p = epath.Path(checkpoint)
  d = p.parent if p.name == "checkpoints" else p
  return str(d) if (d / "model.json").exists() and (d / "tokenizer" / "tokenizer.json").exists() \
      else None


def _imported_tokenizer(config) -> tuple[str, str] | None:
  """(setting, IMPORT/tokenizer) of the import the job starts from, if any."""
  init_from = (config.get("train") or {}).get("init_from", "")
  d = import_dir(init_from)
  if d:
    return "train.init_from", f"{d}/tokenizer"
  gguf = config.get("import_gguf")
  if gguf and gguf.get("workdir"):
    return "import_gguf.workdir", f"{gguf.workdir}/tokenizer"
  return None


def _same(a: str, b: str) -> bool:
  norm = lambda p: str(epath.Path(p.removesuffix("/tokenizer.json"))).rstrip("/")
  return norm(a) == norm(b)


def _data_vocab(data) -> str:
  if not data:
    return ""
  if data.get("kind") == "replay":
    return _data_vocab(data.get("main"))
  return data.get("vocab", "") or ""


def job_tokenizer(config) -> ml_collections.ConfigDict:
  """The tokenizer section the job runs with (see the module docstring)."""
  tok = dict(config.get("tokenizer") or {})
  extra = {k: tok[k] for k in ("pad_id", "mask_pad") if k in tok}
  named = []
  if tok.get("path") and tok.get("kind") != "bytes":
    named.append(("tokenizer.path", tok["path"], tok.get("kind", "")))
  if _data_vocab(config.get("data")):
    named.append(("data.vocab", _data_vocab(config.data), ""))
  imported = _imported_tokenizer(config)
  if imported:
    named.append((imported[0] + " (its import's tokenizer)", imported[1], "hf"))
  if not named:
    raise ValueError("The job has no tokenizer: set tokenizer.path (a SentencePiece .model file "
                     "or a directory with tokenizer.json), or start from an import with "
                     "train.init_from=IMPORT/checkpoints.")
  for key, path, _ in named[1:]:
    if not _same(path, named[0][1]):
      raise ValueError(f"{named[0][0]}={named[0][1]!r} and {key}={path!r} name different "
                       f"tokenizers; keep one: unset {key}, or make it the same tokenizer.")
  _, path, kind = named[0]
  return section(path, kind, **extra)


def make_tokenizer(tok_cfg):
  """encode / decode / token_to_id over a tokenizer section of kind sentencepiece or hf."""
  if not tok_cfg.get("path"):
    raise ValueError("tokenizer.path is empty; set it to a SentencePiece .model file or a "
                     "directory with tokenizer.json (an import's IMPORT/tokenizer).")
  kind = tok_cfg.get("kind") or infer_kind(tok_cfg.path)
  if kind == "sentencepiece":
    from sbp_jax.data.tokenizer import SentencePieceTokenizer  # pylint: disable=g-import-not-at-top
    return SentencePieceTokenizer(tok_cfg.path)
  if kind == "hf":
    from sbp_jax.data.hf_tokenizer import HFTokenizer  # pylint: disable=g-import-not-at-top
    return HFTokenizer(tok_cfg.path)
  raise ValueError(f"tokenizer.kind={kind!r} cannot feed training data; choose 'sentencepiece' "
                   "(a .model file) or 'hf' (a directory with tokenizer.json).")


def make_vocabulary(tok_cfg):
  """The seqio Vocabulary the data layer tokenizes with."""
  kind = tok_cfg.get("kind") or infer_kind(tok_cfg.path)
  if kind == "hf":
    from sbp_jax.data.hf_tokenizer import HFVocabulary  # pylint: disable=g-import-not-at-top
    pad = tok_cfg.get("pad_id", -1)
    return HFVocabulary(make_tokenizer(tok_cfg), None if pad is None or pad < 0 else int(pad),
                        bool(tok_cfg.get("mask_pad", False)))
  if kind == "sentencepiece":
    from sbp_jax.data.tokenizer import load_vocabulary  # pylint: disable=g-import-not-at-top
    return load_vocabulary(tok_cfg.path)
  return make_tokenizer(tok_cfg)  # raises


def data_tokenizer(data_cfg) -> ml_collections.ConfigDict:
  """A seqio data section's tokenizer: `tokenizer` (set by with_job_tokenizer) or `vocab`."""
  if data_cfg.get("tokenizer"):
    return data_cfg.tokenizer
  if data_cfg.get("vocab"):
    return section(data_cfg.vocab)
  raise ValueError("data.vocab is empty and no tokenizer was given; set tokenizer.path (or "
                   "data.vocab) to a SentencePiece .model file or a directory with tokenizer.json.")


def _seqio_sections(data):
  if data.get("kind") == "replay":
    return [s for k in ("main", "replay") for s in _seqio_sections(data[k])]
  return [data] if data.get("kind") == "seqio" else []


def with_job_tokenizer(config) -> ml_collections.ConfigDict:
  """A copy of `config` whose seqio data sections read the job's tokenizer; `config`
  itself when it has none."""
  if not config.get("data") or not _seqio_sections(config.data):
    return config
  tok = job_tokenizer(config)
  c = ml_collections.ConfigDict(config.to_dict())
  for d in _seqio_sections(c.data):
    d.tokenizer = ml_collections.ConfigDict(tok.to_dict())
    d.vocab = tok.path
  return c


def check_fits(data_cfg, model_vocab_size: int) -> None:
  """A tokenizer whose ids reach past the model's embedding table cannot be trained on."""
  for d in _seqio_sections(data_cfg):
    tok = data_tokenizer(d)
    n = int(make_vocabulary(tok).vocab_size)
    if n > model_vocab_size:
      raise ValueError(f"{tok.path}: the tokenizer has {n} ids but the model's embedding has "
                       f"{model_vocab_size} rows (model.vocab_size); use the model's own "
                       f"tokenizer, or set model.vocab_size >= {n} (an imported model: the "
                       f"vocab_size of its model.json).")


def is_hf(vocab) -> bool:
  from sbp_jax.data.hf_tokenizer import HFTokenizer  # pylint: disable=g-import-not-at-top
  return isinstance(getattr(vocab, "tokenizer", None), HFTokenizer)


def start_id(vocab) -> int:
  """The id training feeds before each sequence's first token (the inputs are the targets
  shifted right): the vocabulary's bos, else its pad id. Synthesis prompts start with it
  too, so the synthesizer sees d1 as it saw it in tuning."""
  bos = vocab.bos_id
  return int(vocab.pad_id) if bos is None or bos < 0 else int(bos)


def doc_sep_ids(tok) -> list[int]:
  """The d1/d2 separator of synthesizer-tuning pairs and synthesis prompts: the reserved
  DOC_SEP token, or (a Hugging Face vocabulary without it) its text's ids, so tuning
  and synthesis agree without adding a token the model was not trained with."""
  from sbp_jax.data import special_tokens  # pylint: disable=g-import-not-at-top
  i = tok.token_to_id(special_tokens.DOC_SEP)
  return [int(i)] if i is not None else list(tok.encode(special_tokens.DOC_SEP))
