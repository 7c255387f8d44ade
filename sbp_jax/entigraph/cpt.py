"""Job `entigraph_cpt`: continued pretraining on a synthetic (or raw) corpus, by epochs.

The trainer counts steps; CPT is specified in epochs over the target corpus
(thesis A.2: 2 epochs of the EntiGraph corpus, 4 for Raw CPT). This job counts
the target corpus's tokens with the training tokenizer, sets train.num_steps so
that the non-replay batches cover `cpt.epochs` passes, and runs the one train
loop (replay comes from data.kind='replay').
"""

from __future__ import annotations

import copy
import logging
import math

from sbp_jax import fileio
from sbp_jax.data import vocab as vocab_lib
from sbp_jax.fileio import read_jsonl

log = logging.getLogger(__name__)


def derive(config, **sections):
  """A copy of config with whole sections replaced (a stage's own job, data, train...)."""
  c = copy.deepcopy(config)
  with c.unlocked():
    for k, v in sections.items():
      setattr(c, k, v)
  return c


def _text_records(files):
  for path in fileio.expand(files, "data.main.train files", "check the path (globs are allowed)"):
    for row in read_jsonl(path, ("text",)):
      yield row["text"]


def corpus_tokens(data_cfg) -> int:
  """Tokens of the target corpus (data.main for replay configs)."""
  main = data_cfg.main if data_cfg.kind == "replay" else data_cfg
  if main.kind == "text_bytes":
    if main.get("text"):
      return len(main.text.encode("utf-8"))
    n = fileio.size(fileio.require(main.path, "data.path"))
    return int(n * (1 - float(main.get("eval_fraction", 0.1))))
  if main.kind == "seqio":
    tok = vocab_lib.make_tokenizer(vocab_lib.data_tokenizer(main))
    count = lambda t: len(tok.encode(t)) + 1  # + end of document
    total = 0
    for task in main.train:
      if task.get("format", "text") != "text":  # list entries stay plain dicts
        raise ValueError(f"data.main.train task {task.get('name')!r} has format "
                         f"{task.get('format')!r}; epoch counting reads 'text' tasks (or set "
                         "cpt.corpus_tokens).")
      total += sum(count(t) for t in _text_records(task["files"]))
    return total
  raise ValueError(f"cannot count tokens of data.kind={main.kind!r}; set cpt.corpus_tokens.")


def steps_for_epochs(tokens: int, epochs: float, seq_len: int, batch: int,
                     replay_rate: float = 0.0) -> int:
  """Steps whose expected non-replay batches hold `epochs` passes over `tokens`."""
  main_steps = math.ceil(epochs * tokens / (seq_len * batch))
  return max(1, math.ceil(main_steps / (1.0 - replay_rate)))


def plan(config) -> dict:
  config = vocab_lib.with_job_tokenizer(config)  # counted in the tokens the run trains on
  tokens = int(config.cpt.get("corpus_tokens", 0)) or corpus_tokens(config.data)
  rate = float(config.data.get("rate", 0.0)) if config.data.kind == "replay" else 0.0
  steps = steps_for_epochs(tokens, float(config.cpt.epochs), int(config.train.seq_len),
                           int(config.train.global_batch_size), rate)
  return dict(corpus_tokens=tokens, epochs=float(config.cpt.epochs), replay_rate=rate,
              num_steps=steps)


def run(config, workdir: str) -> dict:
  from sbp_jax.train.loop import train  # pylint: disable=g-import-not-at-top
  p = plan(config)
  with config.unlocked():
    config.train.num_steps = p["num_steps"]
  print(f"CPT: {p['corpus_tokens']} corpus tokens x {p['epochs']} epochs, replay "
        f"{p['replay_rate']}: {p['num_steps']} steps of {config.train.global_batch_size} x "
        f"{config.train.seq_len}", flush=True)
  history = train(config, workdir)
  history["plan"] = p
  return history
