"""Serve a model on an OpenAI-compatible HTTP API (completions and chat completions):
  launch/tpu_run.sh --config=configs/serve_tiny.py --config.generate.checkpoint=DIR/checkpoints
then point any OpenAI client (or the EntiGraph HTTP backend) at http://127.0.0.1:8000/v1.
Binds to 127.0.0.1 unless serve.host is changed; set serve.api_key_env to the name
of an environment variable holding a key to require `Authorization: Bearer <key>`.
Imported checkpoints: --config.generate.model_json=IMPORT/model.json
--config.tokenizer.kind=hf --config.tokenizer.path=IMPORT.
"""

import ml_collections

from configs import generate_tiny


def get_config():
  c = generate_tiny.get_config()
  c.job = "serve"
  c.serve = ml_collections.ConfigDict(dict(
      host="127.0.0.1", port=8000, model_name="sbp_jax", api_key_env="",
      max_batch=8,          # prompts per sampler call
      batch_wait_s=0.02))   # how long the batcher waits for more requests
  return c
