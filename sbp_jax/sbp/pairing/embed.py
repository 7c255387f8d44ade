"""Document embedders and embedding shards.

Two embedders share one interface (`dim`, `embed(texts) -> [n, dim]` unit-norm
float32): a language model's hidden states (LMEmbedder) and an external BERT
sentence encoder (sbp_jax.sbp.pairing.encoder). LMEmbedder pools either the mean of a
chosen layer (our own model's embeddings; the thesis names this the
self-contained ideal) or, as Qwen3-Embedding does (the thesis's pairing
embedder), the last token's final hidden state (after the final norm), with
the text tokenized as the model's own tokenizer does (its post-processor
appends <|endoftext|>) and cut to the model's context. Embedding shards are .npz files
(vectors, global row ids, document ids) written to a temporary name and renamed,
so a file that exists is complete and a re-run skips it.
"""

from __future__ import annotations

import logging
from typing import Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sbp_jax import fileio
from sbp_jax.model.layers import RMSNorm
from sbp_jax.sbp.pairing.encoder import SentenceEncoder, masked_mean_unit, padded_batches

log = logging.getLogger(__name__)


class Embedder(Protocol):
  dim: int

  def embed(self, texts: Sequence[str]) -> np.ndarray:
    ...


POOLINGS = ("mean", "last")


class LMEmbedder:
  """L2-normalised hidden states of an sbp_jax Transformer.

  pooling "mean": the mean over the text's tokens of block output `layer`
  (Transformer(..., return_hidden)): 0 = after the first block, -1 = after the
  last block (before the final norm). pooling "last": the last token's output
  after the final norm (what transformers calls last_hidden_state; `layer` must
  be -1). A tokenizer with `encode_for_model` (a Hugging Face tokenizer.json)
  tokenizes as the model's pipeline does, specials included.
  Batches are sharded over the mesh's batch axes (rows padded to fill them).
  """

  def __init__(self, cfg, params, tokenizer, layer: int = -1, max_len: int = 512,
               batch_size: int = 16, mesh=None, rules=None, pooling: str = "mean"):
    from sbp_jax.model import Transformer  # pylint: disable=g-import-not-at-top
    from sbp_jax.parallel import batch_shards, make_mesh, make_rules, place_params, round_up  # pylint: disable=g-import-not-at-top
    if not -cfg.num_layers <= layer < cfg.num_layers:
      raise ValueError(f"pair.embedder.layer={layer} is outside the model's {cfg.num_layers} "
                       "layers (use 0..L-1, or -1 for the last).")
    if pooling not in POOLINGS or (pooling == "last" and layer != -1):
      raise ValueError(f"pair.embedder.pooling={pooling!r} with layer={layer}: choose 'mean' "
                       "(any layer) or 'last' (layer -1, the final hidden state).")
    self.cfg, self.tokenizer, self.layer, self.pooling = cfg, tokenizer, layer, pooling
    self.max_len = min(max_len, cfg.max_seq_len)
    self.mesh = mesh if mesh is not None else make_mesh((1, 1, 1), devices=jax.devices()[:1])
    self.rules = rules if rules is not None else make_rules()
    self.dim = cfg.d_model
    self.batch_size = round_up(batch_size, batch_shards(self.mesh, self.rules))
    model = Transformer(cfg)
    self.params = place_params(params, cfg, self.mesh, self.rules)

    final_norm = RMSNorm(cfg.norm_eps, jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype))

    def fn(p, tokens, mask):
      last = jnp.sum(mask, axis=1).astype(jnp.int32) - 1
      hidden = model.apply({"params": p}, tokens, segment_ids=mask.astype(jnp.int32),
                           return_hidden=True, logits_at=last)["hidden"][layer]
      if pooling == "mean":
        return masked_mean_unit(hidden, mask)
      x = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
      x = final_norm.apply({"params": p["final_norm"]}, x).astype(jnp.float32)
      return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    self._fn = jax.jit(fn)

  def embed(self, texts: Sequence[str]) -> np.ndarray:
    from sbp_jax.parallel import batch_sharding, mesh_context  # pylint: disable=g-import-not-at-top
    from sbp_jax.generate.text_codec import pad_id_of  # pylint: disable=g-import-not-at-top
    enc = getattr(self.tokenizer, "encode_for_model", None)
    enc = enc or (lambda t, n: list(self.tokenizer.encode(t))[:n])
    ids = [enc(t, self.max_len) or [pad_id_of(self.tokenizer)] for t in texts]
    out = np.zeros((len(ids), self.dim), np.float32)
    put = lambda x: jax.device_put(x, batch_sharding(self.mesh, self.rules, x.ndim))
    with mesh_context(self.mesh, self.rules):
      for rows, tokens, mask in padded_batches(ids, self.batch_size):
        out[rows] = np.asarray(self._fn(self.params, put(tokens), put(mask)))[:len(rows)]
    return out


def lm_embedder_files(config) -> dict:
  """kind 'lm': {model_json, checkpoint, tokenizer section}. pair.embedder.import_dir (an
  import's output, e.g. of Qwen3-Embedding-0.6B) gives all three; otherwise model_json
  (default: config.model), checkpoint and the job's config.tokenizer."""
  e = config.pair.embedder
  imp = e.get("import_dir", "")
  tok = config.tokenizer
  if imp:
    from sbp_jax.data import vocab  # pylint: disable=g-import-not-at-top
    if not vocab.import_dir(imp):
      raise FileNotFoundError(f"pair.embedder.import_dir={imp!r} is not an import's output "
                              "(model.json, checkpoints/, tokenizer/tokenizer.json); import the "
                              "embedder with configs/import_hf.py first.")
    tok = vocab.section(f"{imp}/tokenizer", "hf")
  return dict(model_json=e.get("model_json", "") or (f"{imp}/model.json" if imp else ""),
              checkpoint=e.get("checkpoint", "") or (f"{imp}/checkpoints" if imp else ""),
              tokenizer=tok)


def make_embedder(config) -> Embedder:
  """From config.pair.embedder: kind 'encoder' (BERT dir; '' = bundled MiniLM) or 'lm'
  (an sbp_jax checkpoint: an import_dir, or model_json/checkpoint with config.tokenizer;
  config.mesh places it)."""
  e = config.pair.embedder
  if e.kind == "encoder":
    return SentenceEncoder(e.get("path", ""), batch_size=int(e.batch_size),
                           max_len=int(e.get("max_len", 0)))
  if e.kind == "lm":
    from sbp_jax.generate.generate_job import load_params  # pylint: disable=g-import-not-at-top
    from sbp_jax.generate.text_codec import make_tokenizer  # pylint: disable=g-import-not-at-top
    from sbp_jax.model import ModelConfig  # pylint: disable=g-import-not-at-top
    from sbp_jax.parallel import make_rules, mesh_from_config  # pylint: disable=g-import-not-at-top
    files = lm_embedder_files(config)
    if files["model_json"]:
      cfg = ModelConfig.from_dict({**fileio.read_json(files["model_json"]), "dtype": config.model.dtype})
    else:
      cfg = ModelConfig.from_dict(config.model)
    mesh, rules = mesh_from_config(config.mesh), make_rules(config.mesh.get("rules"))
    params = load_params(cfg, files["checkpoint"], mesh, rules, config.seed)
    return LMEmbedder(cfg, params, make_tokenizer(files["tokenizer"]), layer=int(e.layer),
                      max_len=int(e.get("max_len", 0) or cfg.max_seq_len),
                      batch_size=int(e.batch_size), mesh=mesh, rules=rules,
                      pooling=e.get("pooling", "mean"))
  raise ValueError(f"pair.embedder.kind={e.kind!r}; choose 'encoder' (a BERT sentence "
                   "encoder directory) or 'lm' (an sbp_jax checkpoint).")


# -- shards -----------------------------------------------------------------------------

def write_npz(path: str, **arrays) -> None:
  """Atomic: a temporary file renamed into place."""
  with fileio.atomic_open(path, "wb") as f:
    np.savez(f, **arrays)


def write_embedding_shard(path: str, vectors: np.ndarray, gids: np.ndarray,
                          ids: Sequence[str]) -> None:
  write_npz(path, vectors=np.asarray(vectors, np.float32), gids=np.asarray(gids, np.int64),
            ids=np.asarray(list(ids), dtype=str))


def read_embedding_shard(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """-> (vectors [n, d] float32, gids [n] int64, ids [n] str)."""
  if not fileio.exists(path):
    raise FileNotFoundError(f"{path} does not exist; run the embedding stage first.")
  with fileio.open_file(path) as f, np.load(f) as z:
    return z["vectors"], z["gids"], z["ids"]


def embed_docs(embedder: Embedder, docs: Sequence[dict], path: str) -> bool:
  """Embeds one docs shard (records with gid/id/text) into `path`; False if it existed."""
  if fileio.exists(path):
    return False
  vecs = embedder.embed([d["text"] for d in docs])
  write_embedding_shard(path, vecs, [d["gid"] for d in docs], [d["id"] for d in docs])
  log.info("embedded %d docs -> %s", len(docs), path)
  return True
