"""Sample completions of a prompts file (JSON lines with a "prompt" field).

Defaults run the tiny byte-level model on CPU; point generate.checkpoint at a
trained run's checkpoints/ (or an import_hf output) and tokenizer at its
tokenizer for real use, e.g.
  launch/tpu_run.sh --config=configs/generate_tiny.py --config.generate.prompts=p.jsonl
"""

import ml_collections

from configs.base import get_base


def generation_section() -> ml_collections.ConfigDict:
  g = ml_collections.ConfigDict()
  g.checkpoint = ""          # checkpoints dir; "" = random weights from config.seed (demo only)
  g.model_json = ""          # e.g. <import workdir>/model.json: model fields from the import
  g.prompts = ""             # JSON lines
  g.prompt_field = "prompt"
  g.batch_size = 8
  g.shard_size = 64          # prompts per output part (re-runs skip finished parts)
  g.temperature = 1.0        # synthesis setting of the thesis: T=1.0, top_p=0.9
  g.top_k = 0
  g.top_p = 0.9
  g.max_new_tokens = 64
  g.stop_strings = ()
  g.truncate_prompts = False  # True: cut a prompt's start to fit the context (else an error)
  g.chat = False             # wrap each prompt as a user turn with the model's chat template
  g.chat_template = ""       # "" = the tokenizer's own (tokenizer.path); or a .jinja file
  g.system_prompt = ""       # "" = the template's default system turn, if it has one
  return g


def get_config():
  c = get_base("tiny")
  c.job = "generate"
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.tokenizer = ml_collections.ConfigDict(dict(kind="bytes", path=""))  # or kind="hf"
  c.generate = generation_section()
  return c
