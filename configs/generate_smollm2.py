"""Greedy chat completions from SmolLM2-135M-Instruct imported by
configs/import_smollm2.py (default work dir runs/import_smollm2). Each prompt is
wrapped as a user turn with the model's own chat template (generate.chat).

  launch/tpu_run.sh --config=configs/generate_smollm2.py --config.generate.prompts=p.jsonl
"""

from configs import generate_tiny

IMPORTED = "runs/import_smollm2"


def get_config():
  c = generate_tiny.get_config()
  c.tokenizer.kind, c.tokenizer.path = "hf", f"{IMPORTED}/tokenizer"
  g = c.generate
  g.checkpoint, g.model_json = f"{IMPORTED}/checkpoints", f"{IMPORTED}/model.json"
  g.chat = True
  g.temperature, g.top_p, g.max_new_tokens = 0.0, 1.0, 64
  return c
