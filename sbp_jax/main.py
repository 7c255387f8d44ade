"""Single entry point: `python -m sbp_jax.main --config=configs/X.py --workdir=DIR`.

The config's `job` field picks what runs; overrides use `--config.a.b=value`.
Bad input (a config value, a file, a workdir holding another run) ends in one
paragraph on stderr and exit status 1; `--debug` or SBP_JAX_DEBUG=1 shows the
traceback instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import traceback

from absl import flags
from ml_collections import config_flags

from sbp_jax import errors, fileio, runs

# Jobs are imported lazily so that, e.g., a generation job never imports Beam.
JOBS = {
    "train": "sbp_jax.train.loop:run",
    "entigraph_theory": "sbp_jax.entigraph.theory_job:run",
    "entigraph": "sbp_jax.entigraph.synth_corpus:run",
    "entigraph_cpt": "sbp_jax.entigraph.cpt:run",
    "entigraph_qa": "sbp_jax.entigraph.qa:run",
    "entigraph_demo": "sbp_jax.entigraph.entigraph_demo:run",
    "entigraph_cpt_study": "sbp_jax.entigraph.cpt_study:run",
    "serve": "sbp_jax.generate.serve:run_serve",
    "generate": "sbp_jax.generate.generate_job:run_generate",
    "import_hf": "sbp_jax.convert.safetensors_import:run",
    "synthesize": "sbp_jax.sbp.synthesize:run",
    "sbp_experiment": "sbp_jax.sbp.experiment:run",
    "eval": "sbp_jax.eval.jobs:run_eval",
    "eval_table": "sbp_jax.eval.jobs:run_eval_table",
    "pair": "sbp_jax.sbp.pair:run",
    "s1_sft": "sbp_jax.reasoning.sft:run",
    "budget_eval": "sbp_jax.reasoning.bf_eval:run",
    "s1_demo": "sbp_jax.reasoning.s1_demo:run",
    "import_gguf": "sbp_jax.convert.gguf_import:run",
    "budget_eval_gym": "sbp_jax.reasoning.gym_eval:run",
    "s1_smollm2": "sbp_jax.reasoning.s1_smollm2:run",
}

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory owned by this job "
                               "(default: runs/<config file name>).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Clear this job's earlier outputs in the "
                               "workdir when they were made with other settings.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show tracebacks (also SBP_JAX_DEBUG=1).")


# Jobs merged into others: the message says what to run instead.
REMOVED = {
    "budget_forcing": "job 'budget_forcing' is now part of 'budget_eval' (one budget-forcing "
                      "job, sbp_jax.reasoning.bf_eval): use configs/budget_forcing_tiny.py, or "
                      "set job='budget_eval' and move the `budget` section to `budget_eval` "
                      "(settings -> sequential.settings, prompt_template/think_start/think_end/"
                      "answer_prefix -> template.*, inline_questions, parallel.ns=()).",
}


def resolve_job(name: str):
  if name in REMOVED:
    raise errors.InputError(f"config.job={name!r}: {REMOVED[name]}")
  if name not in JOBS:
    raise errors.InputError(f"config.job={name!r} is not a known job; choose one of "
                            f"{sorted(JOBS)}.")
  module, fn = JOBS[name].split(":")
  return getattr(importlib.import_module(module), fn)


def apply_env(env) -> None:
  """Sets the config's `env` section (e.g. LIBTPU_INIT_ARGS) before JAX starts a
  backend; a variable already set in the shell wins, so one run can override it."""
  for key, value in (env or {}).items():
    os.environ.setdefault(str(key), str(value))


def apply_compile_cache(cache) -> None:
  """Turns on JAX's persistent compilation cache at `compile_cache.dir` (see configs/base.py)."""
  if not cache or not cache.get("dir") or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return  # off, or the shell chose a cache (the test suite uses one per session)
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", fileio.resolve(cache.dir))
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    float(cache.get("min_compile_secs", 1.0)))


def run_job(config, workdir: str, overwrite: bool = False) -> None:
  """Runs config.job in workdir. The job records config.json (runs.claim) once its
  inputs are checked; jobs that claim nothing get it when they finish."""
  job = resolve_job(config.job)
  if fileio.exists(workdir) and not fileio.isdir(workdir):
    raise errors.InputError(f"--workdir={workdir} is a file, not a directory; choose another "
                            "--workdir.")
  apply_env(config.get("env"))
  apply_compile_cache(config.get("compile_cache"))
  if config.get("import_gguf"):  # a job on an imported GGUF model imports it first
    from sbp_jax.convert.gguf_import import ensure_imported  # pylint: disable=g-import-not-at-top
    ensure_imported(config.import_gguf)
  with runs.overwriting(overwrite):
    job(config, workdir)
  runs.record_config(workdir, config, only_if_absent=True)


def _parse(argv) -> tuple:
  for name in [n for n in flags.FLAGS if n.startswith("config.")]:
    delattr(flags.FLAGS, name)  # a previous run's override flags (runs in one process: tests)
  if flags.FLAGS.is_parsed():
    flags.FLAGS.unparse_flags()
  saved, sys.argv = sys.argv, list(argv)  # config_flags reads the overrides from sys.argv
  try:
    flags.FLAGS(argv)
  finally:
    sys.argv = saved
  config = _CONFIG.value
  if config is None or not any(a.startswith("--config=") or a == "--config" for a in argv):
    raise errors.InputError("--config=configs/<name>.py is required.")
  workdir = _WORKDIR.value or os.path.join(
      "runs", os.path.splitext(os.path.basename(flags.FLAGS["config"].config_filename))[0])
  return config, workdir


def _config_keys(argv) -> list[str]:
  """The dotted keys of the --config file in argv (to suggest a fix for a typo); [] if it
  does not load."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")
  path, _, arg = spec.partition(":")
  try:
    mod_spec = importlib.util.spec_from_file_location("_sbp_config_for_keys", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    config = mod.get_config(arg) if arg else mod.get_config()
  except Exception:  # pylint: disable=broad-except  # then the parse error itself is shown
    return []
  flat = runs.flatten(config)
  return sorted(set(flat) | {k.rsplit(".", i)[0] for k in flat for i in range(1, 3)})


def cli(argv) -> int:
  """Parses argv (argv[0] is the program), runs the job; returns the exit status."""
  debug = "--debug" in argv or os.environ.get("SBP_JAX_DEBUG", "") not in ("", "0")
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  logging.getLogger("absl").setLevel(logging.WARNING)
  try:
    try:
      config, workdir = _parse(argv)
    except Exception as e:  # pylint: disable=broad-except
      msg = errors.override_typo(argv, _config_keys(argv))
      if msg is None:
        msg = errors.explain(e) or f"{type(e).__name__}: {e}"
      raise errors.InputError(msg) from e
    run_job(config, workdir, _OVERWRITE.value)
    return 0
  except Exception as e:  # pylint: disable=broad-except
    msg = errors.explain(e)
    if debug or msg is None:
      traceback.print_exc()
      if msg is None:
        return 1
    print(f"sbp_jax: {type(e).__name__ if not isinstance(e, errors.InputError) else 'error'}: "
          f"{msg}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(cli(sys.argv))
