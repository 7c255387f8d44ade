"""Raw CPT baseline (thesis 2.4.1, A.2): continue pretraining on the source documents.

The thesis tuned epochs and replay rate jointly and kept 4 epochs at replay 0.1.
The source documents become pretraining text with the `entigraph` job in mode
'raw' (no model involved):
  launch/tpu_run.sh --config=configs/entigraph_generate.py --config.entigraph.mode=raw \
      --config.entigraph.documents=ARTICLES --workdir=runs/raw_corpus
  launch/tpu_run.sh --config=configs/entigraph_raw_cpt.py --config.train.init_from=DIR
"""

from configs import entigraph_cpt


def get_config():
  c = entigraph_cpt.get_config()
  c.cpt.epochs = 4.0  # tunable: --config.cpt.epochs=N
  c.data.main = entigraph_cpt.text_data("runs/raw_corpus/shards/doc-*.jsonl", "raw_source")
  c.data.rate = 0.1
  return c
