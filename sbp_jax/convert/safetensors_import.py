"""Hugging Face safetensors checkpoints (Llama, Qwen2, Qwen3) -> sbp_jax params.

Reads config.json and *.safetensors (one file, or shards listed in
model.safetensors.index.json) with the `safetensors` library; never unpickles.
Writes an orbax checkpoint in the trainer's layout (usable as
`train.init_from` and by the generation jobs), the model config as
model.json, and the tokenizer files.

Layouts: HF linear weights are [out, in]. q_proj [heads*hd, d] -> our query
kernel [d, heads, hd]; o_proj [d, heads*hd] -> out kernel [heads, hd, d]. Both
sides use the "rotate half" RoPE layout, so no row permutation is needed.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import jax
import numpy as np

from sbp_jax import fileio
from sbp_jax.errors import InputError
from sbp_jax.model import ModelConfig

log = logging.getLogger(__name__)

FAMILIES = ("llama", "qwen2", "qwen3")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json", "config.json", "chat_template.jinja")
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def _fail(path: str, field: str, msg: str):
  raise ValueError(f"{path}: {field}: {msg}")


def model_config_from_hf(path: str, dtype: str = "bfloat16") -> tuple[ModelConfig, str]:
  """config.json -> (ModelConfig, family). Unsupported features are errors."""
  file = os.path.join(path, "config.json")
  if not fileio.exists(file):
    raise FileNotFoundError(f"{file} does not exist; point the import at a Hugging Face model "
                            "directory (config.json + *.safetensors).")
  hf = fileio.read_json(file)
  family = hf.get("model_type")
  if family not in FAMILIES:
    _fail(file, "model_type", f"{family!r} is not supported; supported: {FAMILIES}.")
  act = hf.get("hidden_act", "silu")
  if act != "silu":
    _fail(file, "hidden_act", f"{act!r}; only SwiGLU with silu is supported.")
  rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  if rope_type not in ("default", None):
    _fail(file, "rope_parameters.rope_type", f"{rope_type!r} (RoPE scaling) is not supported by "
          "our model; only plain RoPE.")
  theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
  if hf.get("mlp_bias"):
    _fail(file, "mlp_bias", "MLP biases are not supported.")
  if family != "qwen2" and hf.get("attention_bias"):
    _fail(file, "attention_bias", f"{family} attention biases (they include o_proj) are not "
          "supported; only Qwen2's q/k/v biases are.")
  if hf.get("use_sliding_window"):
    _fail(file, "use_sliding_window", "sliding-window attention is not supported.")
  heads = hf["num_attention_heads"]
  d = hf["hidden_size"]
  head_dim = hf.get("head_dim") or d // heads
  cfg = ModelConfig(
      vocab_size=hf["vocab_size"], num_layers=hf["num_hidden_layers"], d_model=d,
      d_ffn=hf["intermediate_size"], num_heads=heads,
      num_kv_heads=hf.get("num_key_value_heads") or heads,
      head_dim=None if head_dim * heads == d else head_dim, rope_theta=float(theta),
      norm_eps=float(hf.get("rms_norm_eps", 1e-6)), qk_norm=family == "qwen3",
      qkv_bias=family == "qwen2",
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
      max_seq_len=int(hf.get("max_position_embeddings", 4096)), dtype=dtype,
      param_dtype="float32", remat_policy="none")
  return cfg, family


def _tensor_files(path: str) -> list[str]:
  index = os.path.join(path, "model.safetensors.index.json")
  if fileio.exists(index):
    weight_map = fileio.read_json(index).get("weight_map")
    if not weight_map:
      _fail(index, "weight_map", "missing or empty.")
    return sorted({os.path.join(path, v) for v in weight_map.values()})
  files = fileio.glob(os.path.join(path, "*.safetensors"))
  if not files:
    pickled = fileio.glob(os.path.join(path, "*.bin")) + fileio.glob(os.path.join(path, "*.pt"))
    hint = (" It holds pickled weights, which we never load; convert them to safetensors "
            "first (e.g. save_pretrained(..., safe_serialization=True)).") if pickled else ""
    raise FileNotFoundError(f"{path}: no *.safetensors files.{hint}")
  return files


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """All tensors of a (possibly sharded) safetensors checkpoint as float32 numpy."""
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  out: dict[str, np.ndarray] = {}
  cpu = jax.local_devices(backend="cpu")[0]
  for file in _tensor_files(path):
    if not fileio.exists(file):
      raise FileNotFoundError(f"{file} is listed in the index but does not exist.")
    # framework="flax" reads bfloat16 too (numpy has no bf16); keep it on the host.
    try:
      with jax.default_device(cpu), safe_open(file, framework="flax") as f:
        for name in f.keys():
          if name in out:
            raise InputError(f"{file}: tensor {name!r} appears in more than one shard.")
          out[name] = np.asarray(f.get_tensor(name), dtype=np.float32)
    except InputError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # SafetensorError, OSError, ...
      raise InputError(f"{file} is not a readable safetensors file ({type(e).__name__}: "
                       f"{(str(e).strip().splitlines() or [''])[0][:200]}); it is truncated or "
                       "damaged: download it again.") from e
  return out


def convert_tensors(tensors: dict[str, np.ndarray], cfg: ModelConfig,
                    where: str = "checkpoint") -> dict:
  """HF tensor dict -> our (scanned) params tree of float32 numpy arrays."""
  d, L, hd = cfg.d_model, cfg.num_layers, cfg.resolved_head_dim
  h, kv, ffn, v = cfg.num_heads, cfg.num_kv_heads, cfg.d_ffn, cfg.vocab_size
  used: set[str] = set()

  def get(name, shape):
    if name not in tensors:
      raise ValueError(f"{where}: tensor {name!r} is missing (expected shape {shape}).")
    t = tensors[name]
    if tuple(t.shape) != tuple(shape):
      raise ValueError(f"{where}: tensor {name!r} has shape {tuple(t.shape)} but the config "
                       f"implies {tuple(shape)}.")
    used.add(name)
    return t

  def stack(fn):
    return np.stack([fn(f"model.layers.{i}.") for i in range(L)])

  def proj_in(name, heads):   # [heads*hd, d] -> [d, heads, hd]
    return lambda p: get(p + name, (heads * hd, d)).T.reshape(d, heads, hd)

  def vec(name, n, heads=None):
    return lambda p: get(p + name, (n,)) if heads is None else get(p + name, (n,)).reshape(heads, hd)

  attn = {
      "query": {"kernel": stack(proj_in("self_attn.q_proj.weight", h))},
      "key": {"kernel": stack(proj_in("self_attn.k_proj.weight", kv))},
      "value": {"kernel": stack(proj_in("self_attn.v_proj.weight", kv))},
      "out": {"kernel": stack(lambda p: get(p + "self_attn.o_proj.weight", (d, h * hd)).T
                              .reshape(h, hd, d))},
  }
  if cfg.qkv_bias:
    for ours, theirs, n in (("query", "q_proj", h), ("key", "k_proj", kv), ("value", "v_proj", kv)):
      attn[ours]["bias"] = stack(vec(f"self_attn.{theirs}.bias", n * hd, n))
  if cfg.qk_norm:
    attn["query_norm"] = {"scale": stack(vec("self_attn.q_norm.weight", hd))}
    attn["key_norm"] = {"scale": stack(vec("self_attn.k_norm.weight", hd))}
  layers = {
      "attention": attn,
      "attention_norm": {"scale": stack(vec("input_layernorm.weight", d))},
      "mlp_norm": {"scale": stack(vec("post_attention_layernorm.weight", d))},
      "mlp": {
          "gate": {"kernel": stack(lambda p: get(p + "mlp.gate_proj.weight", (ffn, d)).T)},
          "up": {"kernel": stack(lambda p: get(p + "mlp.up_proj.weight", (ffn, d)).T)},
          "down": {"kernel": stack(lambda p: get(p + "mlp.down_proj.weight", (d, ffn)).T)},
      },
  }
  params = {"embedding": get("model.embed_tokens.weight", (v, d)), "layers": layers,
            "final_norm": {"scale": get("model.norm.weight", (d,))}}
  if not cfg.tie_embeddings:
    params["output"] = {"kernel": get("lm_head.weight", (v, d)).T}
  elif "lm_head.weight" in tensors:
    used.add("lm_head.weight")  # a tied copy some writers store anyway
  extra = sorted(n for n in tensors if n not in used and not n.endswith(_IGNORED_SUFFIXES))
  if extra:
    raise ValueError(f"{where}: tensor(s) {extra[:5]} are not used by the {cfg.num_layers}-layer "
                     "model the config describes (a config/checkpoint mismatch, or an unsupported "
                     "feature such as an output bias).")
  return jax.tree.map(lambda x: np.ascontiguousarray(x, np.float32), params)


def load_hf(path: str, dtype: str = "bfloat16") -> tuple[ModelConfig, dict]:
  cfg, family = model_config_from_hf(path, dtype)
  params = convert_tensors(read_tensors(path), cfg, where=path)
  log.info("Read a %s checkpoint from %s: %d layers, d_model %d", family, path, cfg.num_layers,
           cfg.d_model)
  return cfg, params


def save_checkpoint(params: dict, cfg: ModelConfig, out_dir: str, source: str = "") -> str:
  """Writes out_dir/checkpoints (orbax, step 0, item "state" = {"params": ...}) and
  out_dir/model.json. Returns the checkpoints directory."""
  from sbp_jax.train.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  ckpt_dir = os.path.join(out_dir, "checkpoints")
  ckpt = Checkpointer(ckpt_dir, every=1, keep=1, async_save=False)
  ckpt.save(0, {"params": jax.tree.map(np.asarray, params)}, {"source": source}, force=True)
  ckpt.close()
  fileio.write_json(os.path.join(out_dir, "model.json"), dataclasses.asdict(cfg))
  return ckpt_dir


def import_hf(src: str, out_dir: str, dtype: str = "bfloat16", before_write=None) -> ModelConfig:
  """The whole import: params, model.json and tokenizer files under out_dir.
  before_write(): called once the source has been read, before anything is written."""
  cfg, params = load_hf(src, dtype)
  if before_write is not None:
    before_write()
  save_checkpoint(params, cfg, out_dir, source=os.path.abspath(src))
  tok_dir = os.path.join(out_dir, "tokenizer")
  for name in TOKENIZER_FILES:
    if fileio.exists(os.path.join(src, name)):
      fileio.copy(os.path.join(src, name), os.path.join(tok_dir, name))
  return cfg


def run(config, workdir: str) -> None:
  """Job `import_hf`: config.convert.source -> workdir/{checkpoints, model.json, tokenizer/}."""
  from sbp_jax import runs  # pylint: disable=g-import-not-at-top
  if not fileio.isdir(config.convert.source):
    raise InputError(f"convert.source={config.convert.source!r} is not a directory; point it at "
                     "a Hugging Face model directory (config.json + *.safetensors).")
  cfg = import_hf(config.convert.source, workdir, config.convert.get("dtype", "bfloat16"),
                  before_write=lambda: runs.claim(workdir, "import_hf", config, ("convert",),
                                                  ("checkpoints", "model.json", "tokenizer")))
  log.info("Imported %s into %s (%s). Use model fields from %s/model.json and "
           "train.init_from=%s/checkpoints.", config.convert.source, workdir,
           dataclasses.asdict(cfg), workdir, workdir)
