"""EntiGraph CPT (thesis 2.4.1, A.2): continue pretraining on the EntiGraph corpus.

lr 5e-6 with 5% linear warmup and cosine decay, context 2,048, batch 16, 2 epochs
over the synthetic corpus; replay of a generic corpus at rate 0.1, one coin per
batch. Start from a base checkpoint (train.init_from; model fields must match
it, e.g. those an import_hf job wrote to model.json). Run:
  launch/tpu_run.sh --config=configs/entigraph_cpt.py --config.train.init_from=DIR/checkpoints
"""

import ml_collections

from configs.base import get_base

SPM = "data/demo_corpus/spm_bpe_4096.model"


def text_data(files, name: str, vocab: str = SPM, eval_files=None) -> dict:
  """A seqio data config (the data layer's contract) over pretraining-text JSONL."""
  d = dict(kind="seqio", vocab=vocab, pack=True,
           train=[dict(name=name, format="text", files=files, weight=1.0)])
  d["eval"] = [dict(name=name + "_eval", format="text", files=eval_files or files)]
  return d


def get_config(model: str = "3b"):
  c = get_base(model)
  c.job = "entigraph_cpt"
  c.cpt = ml_collections.ConfigDict(dict(epochs=2.0, corpus_tokens=0))  # 0 = count the files
  c.data = dict(
      kind="replay", rate=0.1,
      main=text_data("runs/entigraph_generate/shards/doc-*.jsonl", "entigraph"),
      replay=text_data("data/demo_corpus/train.jsonl.gz", "generic_replay"))
  c.train.seq_len = 2048
  c.train.global_batch_size = 16
  c.train.schedule = "cosine"
  c.train.lr = 5e-6
  c.train.end_lr = 0.0
  c.train.warmup_frac = 0.05
  c.train.init_from = ""  # the base model's checkpoints dir (required for real runs)
  c.train.checkpoint_every = 1000
  c.train.eval_every = 0
  return c
