"""Defaults shared by every job config. Experiment files copy and override."""

import ml_collections

from configs.model import presets


# XLA flags for TPU pods: overlap FSDP all-gathers / reduce-scatters with compute
# (async collective fusion), as large-model JAX trainers do on v4/v5p.
TPU_ENV = {
    "LIBTPU_INIT_ARGS": " ".join([
        "--xla_tpu_enable_async_collective_fusion=true",
        "--xla_tpu_enable_async_collective_fusion_fuse_all_gather=true",
        "--xla_tpu_enable_async_collective_fusion_multiple_steps=true",
        "--xla_tpu_overlap_compute_collective_tc=true",
        "--xla_enable_async_all_gather=true",
    ]),
}


def get_base(model: str = "tiny") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = "train"
  c.seed = 0
  c.model = presets.get(model)

  c.mesh = ml_collections.ConfigDict()
  c.mesh.ici = (-1, 1, 1)  # (data, fsdp, tensor); -1 takes the remaining devices
  c.mesh.dcn = (1, 1, 1)   # across slices, for multi-slice jobs
  c.mesh.rules = ()        # ((logical_name, mesh_axes), ...) overriding the defaults

  # Environment variables the job sets before JAX starts (TPU configs use TPU_ENV).
  c.env = ml_collections.ConfigDict()

  # Compiled XLA programs are kept here (a local or gs:// path; "" turns it off), so a
  # re-run, or a stage that builds the same program as an earlier one (the SBP arms all
  # train one shape), loads it instead of compiling again. Programs that compile faster
  # than min_compile_secs are not worth a file. The env var JAX_COMPILATION_CACHE_DIR wins.
  c.compile_cache = ml_collections.ConfigDict(dict(dir="~/.cache/sbp_jax/xla",
                                                   min_compile_secs=1.0))

  c.distributed = ml_collections.ConfigDict()
  c.distributed.coordinator_address = ""  # "host:port" for manual multi-process runs
  c.distributed.num_processes = 1
  c.distributed.process_id = 0

  c.train = ml_collections.ConfigDict()
  c.train.seq_len = 4096
  c.train.global_batch_size = 2048
  c.train.grad_accum_steps = 1
  c.train.num_steps = 1000
  c.train.run_steps = 0            # > 0: stop after this many steps this run (resume later)
  c.train.schedule = "cosine"  # or "constant"
  c.train.lr = 1e-2
  c.train.end_lr = 5e-5
  c.train.warmup_frac = 0.05
  c.train.b1 = 0.9
  c.train.b2 = 0.95
  c.train.eps = 1e-8
  c.train.weight_decay = 0.1
  c.train.clip_norm = 1.0
  c.train.init_from = ""  # checkpoints dir of another run to start from (params only)
  c.train.log_every = 10
  c.train.eval_every = 0
  c.train.eval_steps = 10
  c.train.eval_batch_size = 0  # 0: same as global_batch_size
  c.train.checkpoint_every = 500
  c.train.checkpoint_dir = ""  # "" = <workdir>/checkpoints; or elsewhere (another bucket)
  c.train.keep_checkpoints = 3
  c.train.async_checkpoint = True
  c.train.peak_flops_per_device = 459e12  # TPU v5p bf16; used only for the MFU estimate
  return c
