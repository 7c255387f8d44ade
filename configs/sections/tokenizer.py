"""The `tokenizer` section: the job's one tokenizer (sbp_jax/data/vocab.py).

It drives the data vocabulary, the pairing near-duplicate rule, token counts and
the sampler. Left empty in a job that starts from an import
(train.init_from=IMPORT/checkpoints), IMPORT/tokenizer is used.
"""

import ml_collections


def tokenizer_section(path: str = "", kind: str = "") -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      kind=kind,        # "sentencepiece" | "hf" | "bytes"; "" = from the path (.model or not)
      path=path,        # a .model file, or a directory with tokenizer.json
      pad_id=-1,        # hf, a model without a pad token: the id to pad with
      mask_pad=False))  # hf: True allows a pad id that is a real token (it is masked by position)
