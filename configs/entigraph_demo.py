"""EntiGraph end to end on CPU with the tiny model and the shipped Vellmar corpus
(data/entigraph_demo: 4 short fictional articles, 16 four-choice questions):
  launch/tpu_run.sh --config=configs/entigraph_demo.py
base pretraining -> EntiGraph generation -> CPT with replay -> QA before / after.
A tiny model is near chance on the questions; the point is the working loop.
"""

import ml_collections

from configs import entigraph_generate
from configs.base import get_base
from configs.generate_tiny import generation_section

DEMO = "data/entigraph_demo"


def get_config():
  c = get_base("tiny")
  c.job = "entigraph_demo"
  c.model.vocab_size = 272  # bytes + our special tokens (ByteTokenizer)
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.model.max_seq_len = 4096
  c.tokenizer = ml_collections.ConfigDict(dict(kind="bytes", path=""))

  # Training settings shared by base pretraining and CPT (CPT overrides lr below).
  c.train.seq_len = 128
  c.train.global_batch_size = 16
  c.train.lr = 3e-3
  c.train.end_lr = 3e-4
  c.train.log_every = 25
  c.train.eval_every = 0
  c.train.checkpoint_every = 1000
  c.train.async_checkpoint = False
  c.train.peak_flops_per_device = 50e9

  c.generate = generation_section()  # checkpoint filled in by the demo per step
  c.generator = entigraph_generate.generator_section()
  c.generator.kind = "local"
  c.generator.style = "completion"   # a base model: plain prompts, no chat turns
  c.generator.batch_size = 4

  e = entigraph_generate.entigraph_section()
  e.documents = f"{DEMO}/articles.jsonl"
  e.max_entities = 5
  e.num_triples = 2
  e.extraction_retries = 1
  e.extraction_fallback = "heuristic"
  e.extraction_max_tokens = 96
  e.relation_max_tokens = 96
  e.batch_size = 4
  e.temperature = 1.0
  e.top_p = 0.95
  c.entigraph = e

  c.cpt = ml_collections.ConfigDict(dict(epochs=2.0, corpus_tokens=0))
  c.qa = ml_collections.ConfigDict(dict(
      questions=f"{DEMO}/questions.jsonl", modes=("sample", "loglik"), k=4, shots=2,
      temperature=1.0, top_p=1.0, max_new_tokens=48, batch_questions=2, loglik_shots=0,
      score_batch=16, max_questions=0))

  c.demo = ml_collections.ConfigDict(dict(
      generic=f"{DEMO}/generic.txt",  # base pretraining text and the replay corpus
      base_steps=150,
      include_raw=True,    # the source documents join the CPT corpus (the tiny model's
                           # synthetic texts alone carry little of the articles)
      cpt_epochs=20.0,     # a tiny model needs many passes; the thesis setting is 2
      cpt_lr=1e-3,
      replay_rate=0.1))
  return c
