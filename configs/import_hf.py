"""Import a Hugging Face safetensors checkpoint (Llama, Qwen2, Qwen3) into an
sbp_jax checkpoint: --config.convert.source=DIR --workdir=OUT writes
OUT/checkpoints (usable as train.init_from / generate.checkpoint), OUT/model.json
(the model fields) and OUT/tokenizer/ (tokenizer.kind="hf")."""

import ml_collections

from configs.base import get_base


def get_config():
  c = get_base("tiny")
  c.job = "import_hf"
  c.convert = ml_collections.ConfigDict(dict(source="", dtype="bfloat16"))
  return c
