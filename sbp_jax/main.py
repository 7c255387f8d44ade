"""Single entry point: `python -m sbp_jax.main --config=configs/X.py --workdir=DIR`.

The config's `job` field picks what runs; overrides use `--config.a.b=value`.
"""

from __future__ import annotations

import importlib
import logging
import os

from absl import app, flags
from ml_collections import config_flags

from sbp_jax import fileio

# Jobs are imported lazily so that, e.g., a generation job never imports Beam.
JOBS = {
    "train": "sbp_jax.train.loop:run",
    "entigraph_theory": "sbp_jax.entigraph.theory_job:run",
    "entigraph": "sbp_jax.entigraph.pipeline:run",
    "entigraph_cpt": "sbp_jax.entigraph.cpt:run",
    "entigraph_qa": "sbp_jax.entigraph.qa:run",
    "entigraph_demo": "sbp_jax.entigraph.demo:run",
    "serve": "sbp_jax.generate.serve:run_serve",
    "generate": "sbp_jax.generate.jobs:run_generate",
    "budget_forcing": "sbp_jax.generate.jobs:run_budget_forcing",
    "import_hf": "sbp_jax.convert.safetensors_import:run",
    "synthesize": "sbp_jax.sbp.synthesize:run",
    "sbp_experiment": "sbp_jax.sbp.experiment:run",
    "eval": "sbp_jax.eval.jobs:run_eval",
    "eval_table": "sbp_jax.eval.jobs:run_eval_table",
    "pair": "sbp_jax.sbp.job:run",
    "s1_sft": "sbp_jax.reasoning.sft:run",
    "budget_eval": "sbp_jax.reasoning.bf_eval:run",
    "s1_demo": "sbp_jax.reasoning.demo:run",
    "import_gguf": "sbp_jax.convert.gguf_import:run",
    "budget_eval_gym": "sbp_jax.reasoning.gym_eval:run",
}

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory owned by this job "
                               "(default: runs/<config file name>).")


def resolve_job(name: str):
  if name not in JOBS:
    raise ValueError(f"config.job={name!r} is not a known job; choose one of {sorted(JOBS)}.")
  module, fn = JOBS[name].split(":")
  return getattr(importlib.import_module(module), fn)


def apply_env(env) -> None:
  """Sets the config's `env` section (e.g. LIBTPU_INIT_ARGS) before JAX starts a
  backend; a variable already set in the shell wins, so one run can override it."""
  for key, value in (env or {}).items():
    os.environ.setdefault(str(key), str(value))


def main(argv):
  del argv
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  logging.getLogger("absl").setLevel(logging.WARNING)
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("--config=configs/<name>.py is required.")
  workdir = _WORKDIR.value or os.path.join(
      "runs", os.path.splitext(os.path.basename(flags.FLAGS["config"].config_filename))[0])
  apply_env(config.get("env"))
  fileio.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=1))
  if config.get("import_gguf"):  # a job on an imported GGUF model imports it first
    from sbp_jax.convert.gguf_import import ensure_imported  # pylint: disable=g-import-not-at-top
    ensure_imported(config.import_gguf)
  resolve_job(config.job)(config, workdir)


if __name__ == "__main__":
  app.run(main)
