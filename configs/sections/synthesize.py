"""The `synthesize` section: SBP synthesis (sbp_jax/sbp/synthesize.py), thesis B.1.1 defaults."""

import ml_collections


def synthesize_section() -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict()
  s.checkpoint = ""             # synthesizer checkpoints dir; "" = random weights (demo only)
  s.seed_files = ""             # D_pretrain JSON lines (glob or list), {"text", "id"}
  s.text_field = "text"
  s.id_field = "id"
  s.output_dir = ""             # "" = <workdir>/synthetic
  s.target_tokens = 4096        # stop once this many synthetic tokens are kept
  s.tokens_per_shard = 1024     # the unit of resume and of host assignment
  s.max_batches_per_shard = 1000  # guard against a synthesizer whose outputs are all dropped
  s.batch_size = 8              # rows per sampler call (per host)
  s.max_prompt_tokens = 4096    # d1 is cut to this many tokens (thesis: docs <= 4,096)
  # A seed whose prompt + max_new_tokens exceeds model.max_seq_len (thesis: 4,096 + 4,096
  # in 8,192 leaves no room for the start id and separator): True cuts it to fit, counted
  # as seeds_truncated in the stats and seed_truncated_tokens in its records; False stops
  # the job at the first such seed, naming it.
  s.truncate_prompts = True
  # Ids before d1; None: the id training feeds before a sequence's first token
  # (vocab.start_id: bos, else pad), so prompts look like tuning's inputs.
  s.prompt_start_ids = None
  s.max_new_tokens = 4096       # d2 length cap; sampling stops earlier at end-of-sequence
  s.temperature = 1.0           # thesis B.1.1
  s.top_p = 0.9
  s.top_k = 0
  s.shingle = 13                # drop outputs repeating any 13-token shingle
  s.drop_unfinished = False     # also drop outputs cut at max_new_tokens
  s.drop_seed_copies = False    # also drop outputs equal (after normalising) to a seed document
  s.ici = (-1, 1, 1)            # each host's own mesh over its local devices
  s.progress = True
  return s
