"""SBP embedders: the Flax BERT encoder against transformers, the LM embedder, shards."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbp_jax.sbp.pairing import embed
from sbp_jax.sbp.pairing import encoder

SENTENCES = ["The cat sat on the mat.", "Stock markets fell sharply after the interest rate rise.",
             "A comet's tail always points away from the Sun.", "ok",
             "Bread dough rises because yeast ferments sugars into carbon dioxide. " * 12]


def _reference(path, texts, max_len):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  tok = transformers.AutoTokenizer.from_pretrained(path)
  model = transformers.BertModel.from_pretrained(path).eval()
  b = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
  with torch.no_grad():
    h = model(**b).last_hidden_state
  m = b["attention_mask"][..., None].float()
  return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()


def test_minilm_matches_transformers():
  enc = encoder.SentenceEncoder(batch_size=4)  # the bundled all-MiniLM-L6-v2
  ours = enc.embed(SENTENCES)
  ref = _reference(enc.path, SENTENCES, enc.max_len)
  assert ours.shape == (5, 384)
  np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
  assert np.abs(ours - ref).max() < 1e-4
  # Related sentences are closer than unrelated ones.
  sims = ours @ ours.T
  assert sims[1, 2] < 0.5 and sims[0, 0] > 0.99


def _tiny_bert_dir(tmp_path):
  """A random 2-layer BERT saved in the Hugging Face layout (MiniLM's tokenizer)."""
  from safetensors.numpy import save_file
  src = encoder.bundled_minilm_dir()
  cfg = encoder.BertConfig(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4,
                           intermediate_size=64, max_position=64)
  params = encoder.BertEncoder(cfg).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32),
                                         jnp.ones((1, 4), bool))["params"]
  tensors = {}
  for key, (hf, transpose) in encoder._hf_names(cfg).items():  # pylint: disable=protected-access
    node = params
    for k in key:
      node = node[k]
    # Random LayerNorm scales too, so a swapped tensor would show.
    arr = np.asarray(node) + (0.1 * np.random.default_rng(len(hf)).standard_normal(node.shape)
                              if key[-1] in ("scale", "bias") else 0)
    tensors[hf] = np.ascontiguousarray(arr.T if transpose else arr, np.float32)
  d = tmp_path / "tiny_bert"
  d.mkdir()
  save_file(tensors, str(d / "model.safetensors"))
  hf_cfg = json.load(open(os.path.join(src, "config.json")))
  hf_cfg.update(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=64)
  json.dump(hf_cfg, open(d / "config.json", "w"))
  for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    shutil.copy(os.path.join(src, f), d / f)
  return d, tensors


def test_any_bert_dir_loads_and_matches(tmp_path):
  d, _ = _tiny_bert_dir(tmp_path)
  enc = encoder.SentenceEncoder(str(d), batch_size=2)
  assert enc.max_len == 64 and enc.dim == 32
  np.testing.assert_allclose(enc.embed(SENTENCES), _reference(str(d), SENTENCES, 64), atol=1e-5)


def test_bad_tensor_shape_is_named(tmp_path):
  from safetensors.numpy import save_file
  d, tensors = _tiny_bert_dir(tmp_path)
  tensors["encoder.layer.1.intermediate.dense.weight"] = np.zeros((65, 32), np.float32)
  save_file(tensors, str(d / "model.safetensors"))
  with pytest.raises(ValueError, match=r"encoder\.layer\.1\.intermediate\.dense\.weight.*\(65, 32\)"):
    encoder.SentenceEncoder(str(d))
  del tensors["encoder.layer.1.intermediate.dense.weight"]
  save_file(tensors, str(d / "model.safetensors"))
  with pytest.raises(ValueError, match="is missing"):
    encoder.SentenceEncoder(str(d))
  cfg = json.load(open(d / "config.json"))
  json.dump({**cfg, "model_type": "roberta"}, open(d / "config.json", "w"))
  with pytest.raises(ValueError, match=r"config\.json: model_type='roberta'"):
    encoder.SentenceEncoder(str(d))


def _tiny_lm():
  from configs.model import presets
  from sbp_jax.model import ModelConfig, Transformer
  from sbp_jax.generate.text_codec import ByteTokenizer
  cfg = ModelConfig.from_dict({**presets.get("tiny").to_dict(), "dtype": "float32",
                               "remat_policy": "none", "vocab_size": 512})
  params = Transformer(cfg).init(jax.random.key(1), jnp.zeros((1, 8), jnp.int32))["params"]
  return cfg, jax.tree.map(np.asarray, __import__("flax").linen.meta.unbox(params)), ByteTokenizer()


@pytest.mark.slow  # compiles the embedder on several meshes
def test_lm_embedder_pools_the_chosen_layer_and_shards():
  from sbp_jax.model import Transformer
  from sbp_jax.parallel import make_mesh
  cfg, params, tok = _tiny_lm()
  texts = ["a short one", "a much longer document about something else entirely " * 3, "x"]
  one = embed.LMEmbedder(cfg, params, tok, layer=0, batch_size=4)
  got = one.embed(texts)
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
  # Padding and batch composition do not leak into a document's vector.
  np.testing.assert_allclose(one.embed([texts[0]])[0], got[0], atol=1e-5)
  # Reference: layer-0 hidden states of the unpadded text, mean over tokens.
  ids = np.asarray([tok.encode(texts[1])], np.int32)
  h = Transformer(cfg).apply({"params": params}, ids, return_hidden=True)["hidden"][0, 0]
  ref = np.asarray(h).mean(0)
  np.testing.assert_allclose(got[1], ref / np.linalg.norm(ref), atol=1e-4)
  # Another layer gives other vectors; an 8-device data mesh gives the same ones.
  last = embed.LMEmbedder(cfg, params, tok, layer=-1, batch_size=4).embed(texts)
  assert np.abs(last - got).max() > 1e-2
  sharded = embed.LMEmbedder(cfg, params, tok, layer=0, batch_size=4,
                             mesh=make_mesh((-1, 1, 1)))
  assert sharded.batch_size == 8
  np.testing.assert_allclose(sharded.embed(texts), got, atol=1e-5)
  with pytest.raises(ValueError, match="layer=7"):
    embed.LMEmbedder(cfg, params, tok, layer=7)


def test_embedding_shard_written_once(tmp_path):
  class Counting:
    dim, calls = 3, 0

    def embed(self, texts):
      Counting.calls += 1
      v = np.ones((len(texts), 3), np.float32)
      return v / np.linalg.norm(v, axis=1, keepdims=True)

  docs = [{"gid": 5, "id": "a", "text": "x"}, {"gid": 6, "id": "b", "text": "y"}]
  path = str(tmp_path / "emb-00000.npz")
  assert embed.embed_docs(Counting(), docs, path)
  assert not embed.embed_docs(Counting(), docs, path)
  assert Counting.calls == 1 and not any(p.endswith(".tmp.npz") for p in os.listdir(tmp_path))
  vecs, gids, ids = embed.read_embedding_shard(path)
  assert vecs.shape == (2, 3) and list(gids) == [5, 6] and list(ids) == ["a", "b"]


def test_make_embedder_lm_from_config():
  from configs import sbp_pair_demo
  c = sbp_pair_demo.get_config()
  c.pair.embedder.kind = "lm"  # checkpoint "" = random tiny model (smoke test)
  c.pair.embedder.layer = 1
  e = embed.make_embedder(c)
  assert isinstance(e, embed.LMEmbedder) and e.dim == c.model.d_model
  v = e.embed(["first document", "second"])
  assert v.shape == (2, c.model.d_model)
  np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
  c.pair.embedder.kind = "tfidf"
  with pytest.raises(ValueError, match="pair.embedder.kind='tfidf'"):
    embed.make_embedder(c)
