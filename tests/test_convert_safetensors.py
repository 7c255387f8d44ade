"""Import of tiny random checkpoints written by transformers (Llama, Qwen2, Qwen3)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sbp_jax.convert import safetensors_import as si  # pylint: disable=g-import-not-at-top
from sbp_jax.model import Transformer
from sbp_jax.train.checkpoint import Checkpointer

COMMON = dict(vocab_size=96, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
              rms_norm_eps=1e-6)


def _write(tmp_path, family, shard=False, **kw):
  torch.manual_seed(0)
  cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
         "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
         "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM)}[family]
  model = cls[1](cls[0](**{**COMMON, **kw})).float().eval()
  with torch.no_grad():  # random norms and biases too, so that a wrong mapping shows
    for name, p in model.named_parameters():
      if name.endswith("norm.weight"):
        p.copy_(1 + 0.3 * torch.randn_like(p))
      elif name.endswith("bias"):
        p.copy_(0.3 * torch.randn_like(p))
      elif "embed" in name or "lm_head" in name:
        p.copy_(torch.randn_like(p))
  path = str(tmp_path / family)
  model.save_pretrained(path, max_shard_size="20KB" if shard else "1GB")
  return model, path


def _compare(model, path, tokens):
  cfg, params = si.load_hf(path, dtype="float32")
  ours = Transformer(cfg).apply({"params": params}, jnp.asarray(tokens))["logits"]
  with torch.no_grad():
    ref = model(torch.tensor(tokens)).logits.numpy()
  return cfg, params, float(np.abs(np.asarray(ours) - ref).max())


TOKENS = np.random.default_rng(0).integers(0, 96, size=(2, 11)).tolist()


def test_llama_sharded(tmp_path):
  model, path = _write(tmp_path, "llama", shard=True, rope_theta=10000.0)
  assert os.path.exists(os.path.join(path, "model.safetensors.index.json"))
  cfg, _, err = _compare(model, path, TOKENS)
  assert not cfg.qk_norm and not cfg.qkv_bias and not cfg.tie_embeddings
  assert err < 1e-4, err


def test_qwen2_biases(tmp_path):
  model, path = _write(tmp_path, "qwen2", rope_theta=1e6)
  cfg, _, err = _compare(model, path, TOKENS)
  assert cfg.qkv_bias and cfg.rope_theta == 1e6
  assert err < 1e-4, err


def test_qwen3_qk_norm_explicit_head_dim_tied(tmp_path):
  model, path = _write(tmp_path, "qwen3", head_dim=24, tie_word_embeddings=True)
  cfg, params, err = _compare(model, path, TOKENS)
  assert cfg.qk_norm and cfg.resolved_head_dim == 24 and cfg.tie_embeddings
  assert "output" not in params
  assert err < 1e-4, err


def test_checkpoint_written_for_init_from(tmp_path):
  model, path = _write(tmp_path, "qwen3", head_dim=16)
  out = str(tmp_path / "imported")
  cfg = si.import_hf(path, out, dtype="float32")
  assert os.path.exists(os.path.join(out, "model.json"))
  assert os.path.exists(os.path.join(out, "tokenizer", "config.json"))
  _, params = si.load_hf(path, dtype="float32")
  abstract = jax.eval_shape(lambda: params)
  ckpt = Checkpointer(os.path.join(out, "checkpoints"), every=1, keep=1, async_save=False)
  restored = ckpt.restore_params(ckpt.latest_step(), abstract)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, np.asarray(b))
  with open(os.path.join(out, "model.json")) as f:
    assert json.load(f)["head_dim"] == cfg.head_dim == 16


def test_mismatch_names_the_tensor(tmp_path):
  _, path = _write(tmp_path, "llama")
  with open(os.path.join(path, "config.json")) as f:
    c = json.load(f)
  c["intermediate_size"] = 64
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(c, f)
  with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.gate_proj\.weight"):
    si.load_hf(path)
  c["model_type"] = "gpt2"
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(c, f)
  with pytest.raises(ValueError, match="model_type"):
    si.load_hf(path)


def test_import_then_generate_job_matches_reference_greedy(tmp_path):
  from tokenizers import Tokenizer, models, pre_tokenizers  # pylint: disable=g-import-not-at-top
  from configs import generate_tiny  # pylint: disable=g-import-not-at-top
  from sbp_jax.generate import generate_job  # pylint: disable=g-import-not-at-top
  model, path = _write(tmp_path, "qwen3", head_dim=16, eos_token_id=0)
  words = ("the a cat dog sat on mat ran to big small red blue and of in it is was he she "
           "they saw ate fish bird tree house").split()
  tok = Tokenizer(models.WordLevel({"<|endoftext|>": 0, **{w: i + 1 for i, w in enumerate(words)}},
                                   unk_token="<|endoftext|>"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.save(os.path.join(path, "tokenizer.json"))
  out = str(tmp_path / "imported")
  si.import_hf(path, out, dtype="float32")

  c = generate_tiny.get_config()
  c.generate.checkpoint = os.path.join(out, "checkpoints")
  c.generate.model_json = os.path.join(out, "model.json")
  c.tokenizer.kind, c.tokenizer.path = "hf", os.path.join(out, "tokenizer")
  c.generate.temperature, c.generate.max_new_tokens = 0.0, 6
  prompts = ["the cat sat on the mat", "a big red dog"]
  c.generate.prompts = str(tmp_path / "p.jsonl")
  with open(c.generate.prompts, "w") as f:
    for p in prompts:
      f.write(json.dumps({"prompt": p}) + "\n")
  generate_job.run_generate(c, str(tmp_path / "gen"))
  with open(tmp_path / "gen" / "outputs" / "part-00000.jsonl") as f:
    got = [json.loads(l) for l in f]
  for p, row in zip(prompts, got):
    ids = tok.encode(p).ids
    with torch.no_grad():
      ref = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                           eos_token_id=0, pad_token_id=0)[0, len(ids):].tolist()
    if 0 in ref:  # stopped at end-of-sequence: the text excludes it
      ref = ref[:ref.index(0)]
    assert row["completion"] == tok.decode(ref)
