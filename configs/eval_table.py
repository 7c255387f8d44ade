"""Combine eval results of several checkpoints into the layout of thesis Table 3.2:
  launch/tpu_run.sh --config=configs/eval_table.py --workdir=runs/table \
      --config.table.runs='[...]'   (or edit the list below)
Each run is {label, results: an eval job's results.json}; the baseline gets
absolute numbers, the others differences, and methods the share of the oracle's
average QA gain they recover.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.job = "eval_table"
  c.table = ml_collections.ConfigDict()
  c.table.runs = (
      dict(label="Baseline", results="runs/eval_baseline/results.json"),
      dict(label="SBP", results="runs/eval_sbp/results.json"),
      dict(label="Oracle", results="runs/eval_oracle/results.json"),
  )
  c.table.baseline = "Baseline"
  c.table.oracle = "Oracle"   # "" = no share-of-gain row
  c.table.tasks = ()          # () = the baseline's tasks, in its order
  return c
