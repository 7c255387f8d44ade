"""SBP step 3: synthesis at scale (thesis 3.3.2, B.1.1).

Seed documents d1 are drawn uniformly (with replacement) from D_pretrain; the
synthesizer continues `d1 <|doc_sep|>` (the synthesizer-tuning format) until
end-of-sequence; outputs that repeat a 13-token shingle are dropped (and, with
drop_seed_copies, outputs that reproduce a seed-corpus document). The output
is a set of JSONL shards in the pretraining text format, one seqio source.

Work is cut into shards of a fixed synthetic-token quota; a shard ends with the
document that reaches it (documents are never cut; the rest of that batch is
dropped and counted as dropped_over_quota). Everything a shard
draws (its seed documents and its sampling keys) is a pure function of
(config seed, shard index), and hosts take shards round-robin, so a re-run
skips finished shards and redoes an interrupted one identically: no synthetic
document is ever written twice, whatever the number of hosts or restarts.
Seeds are read by byte offset (SeedDocs), so no host holds D_pretrain in memory.
A seed whose prompt plus max_new_tokens exceeds the model's context stops the job
naming it, unless synthesize.truncate_prompts cuts it to fit (counted in the stats).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import AbstractSet, Callable, Iterator, Sequence

import numpy as np

from sbp_jax import fileio
from sbp_jax.data import vocab as vocab_lib
from sbp_jax.sbp.quality import SHINGLE, has_repeated_shingle
from sbp_jax.sbp.shingles import fingerprint

log = logging.getLogger(__name__)


SHARD_PATTERN = "synthetic-{:05d}.jsonl"


@dataclasses.dataclass
class Sample:
  tokens: list[int]      # generated ids, without the stop token
  text: str
  finish_reason: str     # "stop_token" | "length" | ...
  seed_cut: int = 0      # tokens cut from the seed document so the prompt fit the context


class SeedTooLong(ValueError):
  """Raised by a GenerateFn for the seed text at `row`, whose prompt plus new tokens do not
  fit the synthesizer's context; synthesize_shard names the document."""

  def __init__(self, row: int, prompt_tokens: int, new_tokens: int, context: int, room: int):
    super().__init__(f"seed text {row}: {prompt_tokens} + {new_tokens} tokens > {context}")
    self.row, self.prompt_tokens, self.new_tokens = row, prompt_tokens, new_tokens
    self.context, self.room = context, room

  def named(self, seed_id: str):
    from sbp_jax import validate  # pylint: disable=g-import-not-at-top
    return validate.context_error(
        f"synthesize.seed_files document {seed_id!r}", self.prompt_tokens, self.new_tokens,
        self.context, f"lower synthesize.max_prompt_tokens to {self.room} or less (or "
        "synthesize.max_new_tokens), or set synthesize.truncate_prompts=True to cut such seeds "
        "to fit (counted as seeds_truncated in the shard stats).")


# (seed texts, sampling seed) -> one Sample per seed text
GenerateFn = Callable[[Sequence[str], int], list[Sample]]


# -- inputs --------------------------------------------------------------------------------

SEED_FILES_HINT = ("point it at the D_pretrain JSON-lines files (e.g. "
                   "data/demo_corpus/train.jsonl.gz)")


class SeedDocs:
  """D_pretrain as {"id", "text"} records numbered 0.. in file order, read by index.

  Only an index of byte offsets (12 bytes a document) stays in memory, so every host
  can draw seeds from a corpus far larger than its RAM. A record without `id_field`
  is named "<file name>:<line>". Building the index checks every line, so a bad one
  anywhere raises an error naming file:line before any seed is drawn.
  """

  def __init__(self, files, text_field: str = "text", id_field: str = "id",
               key: str = "synthesize.seed_files"):
    self.text_field, self.id_field, self.key = text_field, id_field, key
    self._hint = f"check {key} and its text_field setting"
    self.files = fileio.expand(files, key, SEED_FILES_HINT)
    self._index = fileio.JsonlIndex(self.files, (text_field,), self._hint)
    if not len(self._index):
      raise ValueError(f"{key}={files!r} holds no documents.")

  def __len__(self) -> int:
    return len(self._index)

  def _doc(self, path: str, n: int, row: dict) -> dict:
    return {"id": str(row.get(self.id_field, f"{os.path.basename(path)}:{n}")),
            "text": row[self.text_field]}

  def take(self, indices) -> list[dict]:
    """The documents at `indices`, in that order (repeats allowed)."""
    return [self._doc(*r) for r in self._index.take(indices, (self.text_field,), self._hint)]

  def __iter__(self) -> Iterator[dict]:
    """Every document in order, streamed."""
    for path in self.files:
      for n, row in fileio.iter_jsonl(path, (self.text_field,), self._hint):
        yield self._doc(path, n, row)


def take_docs(docs: SeedDocs | Sequence[dict], indices) -> list[dict]:
  """docs[i] for each index; a SeedDocs reads them in one pass per file."""
  if isinstance(docs, SeedDocs):
    return docs.take(indices)
  return [docs[i] for i in indices]


# -- pure planning -------------------------------------------------------------------------

def num_shards(target_tokens: int, tokens_per_shard: int) -> int:
  if target_tokens <= 0 or tokens_per_shard <= 0:
    raise ValueError(f"synthesize.target_tokens={target_tokens} and tokens_per_shard="
                     f"{tokens_per_shard} must both be positive.")
  return math.ceil(target_tokens / tokens_per_shard)


def host_shards(total: int, process_index: int, process_count: int) -> list[int]:
  """Round-robin: host h owns shards h, h + P, h + 2P, ..."""
  return list(range(process_index, total, process_count))


def shard_rng(seed: int, shard: int) -> np.random.Generator:
  """The seed-document stream of one shard; depends on nothing but (seed, shard)."""
  return np.random.default_rng([seed, shard])


def batch_seed(seed: int, shard: int, batch: int) -> int:
  """Sampling seed of one batch of one shard (distinct streams for distinct triples)."""
  return int(np.random.SeedSequence([seed, shard, batch, 0x5b9]).generate_state(1)[0] >> 1)


# -- one shard -----------------------------------------------------------------------------

def synthesize_shard(docs: SeedDocs | Sequence[dict], shard: int, generate: GenerateFn, *,
                     seed: int, tokens_per_shard: int, batch_size: int, max_batches: int,
                     shingle: int = SHINGLE, drop_unfinished: bool = False,
                     seed_copies: AbstractSet[bytes] = frozenset(),
                     on_batch: Callable[[int, int], None] | None = None
                     ) -> tuple[list[dict], dict]:
  """Generates kept documents until their tokens reach `tokens_per_shard`: the shard ends
  with the document that reaches it, and later outputs of that batch are dropped
  (dropped_over_quota), so a shard overshoots by less than one document, not one batch.

  seed_copies: fingerprints (shingles.fingerprint) of the seed corpus; an output equal to
  one of its documents is dropped (dropped_copies): it would only repeat real data.
  on_batch(kept_tokens, generated_tokens) is called after every batch (progress).
  Returns (records, stats).
  """
  rng = shard_rng(seed, shard)
  records: list[dict] = []
  stats = dict(shard=shard, generated=0, kept=0, kept_tokens=0, generated_tokens=0,
               dropped_repetitive=0, dropped_empty=0, dropped_unfinished=0, dropped_copies=0,
               dropped_over_quota=0, seeds_truncated=0, batches=0)
  for b in range(max_batches):
    if stats["kept_tokens"] >= tokens_per_shard:
      break
    idx = rng.integers(0, len(docs), size=batch_size)
    seeds = take_docs(docs, idx)
    try:
      outs = generate([d["text"] for d in seeds], batch_seed(seed, shard, b))
    except SeedTooLong as e:
      raise e.named(seeds[e.row]["id"]) from None
    if len(outs) != len(idx):
      raise RuntimeError(f"generator returned {len(outs)} samples for {len(idx)} seeds.")
    stats["batches"] += 1
    batch_tokens = 0
    for j, (d, s) in enumerate(zip(seeds, outs)):
      stats["generated"] += 1
      stats["seeds_truncated"] += s.seed_cut > 0
      batch_tokens += len(s.tokens)
      if not s.tokens or not s.text.strip():
        stats["dropped_empty"] += 1
      elif has_repeated_shingle(s.tokens, shingle):
        stats["dropped_repetitive"] += 1
      elif drop_unfinished and s.finish_reason != "stop_token":
        stats["dropped_unfinished"] += 1
      elif seed_copies and fingerprint(s.text) in seed_copies:
        stats["dropped_copies"] += 1
      elif stats["kept_tokens"] >= tokens_per_shard:
        # Filters first, so repetitive_rate still covers every output of the batch.
        stats["dropped_over_quota"] += 1
      else:
        records.append({"text": s.text, "id": f"syn-{shard:05d}-{b:05d}-{j:04d}",
                        "seed_id": d["id"], "num_tokens": len(s.tokens),
                        "finish_reason": s.finish_reason,
                        **({"seed_truncated_tokens": s.seed_cut} if s.seed_cut else {})})
        stats["kept"] += 1
        stats["kept_tokens"] += len(s.tokens)
    stats["generated_tokens"] += batch_tokens
    if on_batch is not None:
      on_batch(stats["kept_tokens"], batch_tokens)
  if stats["kept_tokens"] < tokens_per_shard:
    log.warning("shard %d stopped after %d batches with %d of %d tokens (%d repetitive, %d empty, "
                "%d seed-copy outputs dropped); raise synthesize.max_batches_per_shard or check "
                "the synthesizer.", shard, stats["batches"], stats["kept_tokens"],
                tokens_per_shard, stats["dropped_repetitive"], stats["dropped_empty"],
                stats["dropped_copies"])
  return records, stats


def shard_path(out_dir: str, shard: int) -> str:
  return os.path.join(out_dir, SHARD_PATTERN.format(shard))


def synthesize_to_dir(docs: SeedDocs | Sequence[dict], generate: GenerateFn, out_dir: str, *,
                      seed: int, target_tokens: int, tokens_per_shard: int, batch_size: int,
                      max_batches_per_shard: int, shingle: int = SHINGLE,
                      drop_unfinished: bool = False,
                      seed_copies: AbstractSet[bytes] = frozenset(), process_index: int = 0,
                      process_count: int = 1, progress: bool = True) -> dict:
  """Writes this host's missing shards; returns this host's totals.

  A shard's stats go to `<shard>.stats.json` before the shard itself is renamed
  into place, so an existing shard always has its stats.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  total = num_shards(target_tokens, tokens_per_shard)
  mine = host_shards(total, process_index, process_count)
  todo = [s for s in mine if not fileio.exists(shard_path(out_dir, s))]
  if len(todo) < len(mine):
    log.info("synthesize: %d of this host's %d shards already done; skipping them.",
             len(mine) - len(todo), len(mine))
  bar = tqdm(total=len(todo) * tokens_per_shard, unit="tok", desc="synthesize",
             disable=not progress, dynamic_ncols=True)
  t0, gen_tokens = time.perf_counter(), 0
  totals = dict(shards_written=0, kept=0, kept_tokens=0, generated=0, generated_tokens=0,
                dropped_repetitive=0, dropped_empty=0, dropped_unfinished=0, dropped_copies=0,
                dropped_over_quota=0, seeds_truncated=0)
  for s in todo:
    done_before = bar.n

    def on_batch(kept_tokens, batch_tokens, base=done_before):
      nonlocal gen_tokens
      gen_tokens += batch_tokens
      bar.update(min(kept_tokens, tokens_per_shard) - (bar.n - base))
      bar.set_postfix(shard=s, gen_tok_s=f"{gen_tokens / (time.perf_counter() - t0):.0f}")

    records, stats = synthesize_shard(
        docs, s, generate, seed=seed, tokens_per_shard=tokens_per_shard, batch_size=batch_size,
        max_batches=max_batches_per_shard, shingle=shingle, drop_unfinished=drop_unfinished,
        seed_copies=seed_copies, on_batch=on_batch)
    fileio.write_json(shard_path(out_dir, s) + ".stats.json", stats, indent=None)
    fileio.write_jsonl(shard_path(out_dir, s), records)
    totals["shards_written"] += 1
    for k in totals:
      if k in stats:
        totals[k] += stats[k]
  bar.close()
  elapsed = time.perf_counter() - t0
  totals["seconds"] = elapsed
  totals["generated_tokens_per_s"] = totals["generated_tokens"] / elapsed if elapsed else 0.0
  return totals


def summarize_dir(out_dir: str) -> dict:
  """Totals over every finished shard (what a seqio source over the dir will read)."""
  shards = fileio.glob(os.path.join(out_dir, "synthetic-*.jsonl"))
  out = dict(shards=len(shards), kept=0, kept_tokens=0, generated=0, generated_tokens=0,
             dropped_repetitive=0, dropped_empty=0, dropped_unfinished=0, dropped_copies=0,
             dropped_over_quota=0, seeds_truncated=0)
  for p in shards:
    st = fileio.read_json(p + ".stats.json")
    for k in out:
      if k in st and k != "shards":
        out[k] += st[k]
  out["repetitive_rate"] = out["dropped_repetitive"] / max(out["generated"], 1)
  return out


# -- the sampler behind GenerateFn ---------------------------------------------------------

def prompt_ids(tokenizer, text: str, max_prompt_tokens: int,
               start: Sequence[int] = ()) -> list[int]:
  """start, then d1 (its first max_prompt_tokens tokens), then the document separator, as
  synthesizer-tuning pairs join them (vocab_lib.doc_sep_ids).

  start: the ids training feeds before a sequence's first token (synthesize.prompt_start_ids)."""
  return ([int(i) for i in start] + list(tokenizer.encode(text))[:max_prompt_tokens]
          + vocab_lib.doc_sep_ids(tokenizer))


def seed_room(tokenizer, context: int, new_tokens: int, start: Sequence[int] = ()) -> int:
  """How many tokens of d1 fit the context beside start, the separator and the new tokens."""
  return context - int(new_tokens) - len(start) - len(vocab_lib.doc_sep_ids(tokenizer))


def sampler_generate_fn(sampler, sp, max_prompt_tokens: int, start: Sequence[int] = (),
                        truncate: bool = False) -> GenerateFn:
  """GenerateFn over sbp_jax.generate.Sampler: stop at end-of-sequence, drop the stop's ids.

  A prompt that with sp.max_new_tokens exceeds the model's context (model.max_seq_len)
  raises SeedTooLong, or with `truncate` has its seed cut to fit (Sample.seed_cut)."""
  tok, context = sampler.tokenizer, int(sampler.cfg.max_seq_len)
  room = seed_room(tok, context, sp.max_new_tokens, start)

  def generate(texts, seed):
    prompts, cuts = [], []
    for row, t in enumerate(texts):
      ids = prompt_ids(tok, t, max_prompt_tokens, start)
      over = len(ids) + sp.max_new_tokens - context
      if over > 0 and not truncate:
        raise SeedTooLong(row, len(ids), sp.max_new_tokens, context, room)
      if over > 0:
        ids = prompt_ids(tok, t, room, start)
      prompts.append(ids)
      cuts.append(max(over, 0))
    outs = sampler.generate(prompts, sp, seed=seed)
    return [Sample(list(o.tokens[:len(o.tokens) - o.stop_len]), o.text, o.finish_reason, cut)
            for o, cut in zip(outs, cuts)]

  return generate


def prompt_start(config) -> tuple[int, ...]:
  """synthesize.prompt_start_ids, or (None) the id training puts before each sequence."""
  ids = config.synthesize.get("prompt_start_ids")
  if ids is not None:
    return tuple(int(i) for i in ids)
  if (config.get("tokenizer") or {}).get("kind") == "bytes":
    return ()  # byte models train on raw text streams, with no start id
  return (vocab_lib.start_id(vocab_lib.make_vocabulary(vocab_lib.job_tokenizer(config))),)


# What the shards depend on (the sampler reads generate.model_json when set, and the
# prompt's start id the job's tokenizer); placement and the progress bar do not count.
IDENTITY_KEYS = ("model", "synthesize", "tokenizer", "seed", "generate.model_json", "data.vocab")
HOW = ("synthesize.ici", "synthesize.progress")


def check(config) -> None:
  """The settings and inputs the job needs, before it claims its workdir."""
  from sbp_jax import validate  # pylint: disable=g-import-not-at-top
  from sbp_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  from sbp_jax.generate.generate_job import model_config  # pylint: disable=g-import-not-at-top
  from sbp_jax.generate.text_codec import check_fits, make_tokenizer  # pylint: disable=g-import-not-at-top
  s = config.synthesize
  for key in ("target_tokens", "tokens_per_shard", "batch_size", "max_batches_per_shard",
              "max_prompt_tokens", "max_new_tokens", "shingle"):
    validate.positive(f"synthesize.{key}", s[key])
  validate.finite_number("synthesize.temperature", s.temperature, minimum=0)
  if not 0 < validate.finite_number("synthesize.top_p", s.top_p) <= 1:
    raise InputError(f"synthesize.top_p={s.top_p!r} must be in (0, 1]; set "
                     "--config.synthesize.top_p (1.0 turns nucleus sampling off).")
  fileio.expand(s.seed_files, "synthesize.seed_files", SEED_FILES_HINT)
  if s.checkpoint:
    from sbp_jax.train.checkpoint import check_checkpoint  # pylint: disable=g-import-not-at-top
    check_checkpoint("synthesize.checkpoint", s.checkpoint)
  tok, model = make_tokenizer(config.tokenizer), model_config(config)
  check_fits(tok, model.vocab_size)
  start = prompt_start(config)
  room = seed_room(tok, int(model.max_seq_len), int(s.max_new_tokens), start)
  if room < 1:
    raise InputError(
        f"synthesize.max_new_tokens={s.max_new_tokens} leaves no room for a seed document in "
        f"the model's context of {model.max_seq_len} (model.max_seq_len; the prompt's start "
        f"and separator take {int(model.max_seq_len) - int(s.max_new_tokens) - room}); lower "
        "synthesize.max_new_tokens.")
  if room < int(s.max_prompt_tokens) and not s.get("truncate_prompts", False):
    log.warning("synthesize: a seed of more than %d tokens (synthesize.max_prompt_tokens=%d) "
                "does not fit model.max_seq_len=%d with max_new_tokens=%d, and stops the job; "
                "set synthesize.truncate_prompts=True to cut such seeds instead.", room,
                s.max_prompt_tokens, model.max_seq_len, s.max_new_tokens)


def output_dir(config, workdir: str) -> str:
  """synthesize.output_dir, or <workdir>/synthetic; a relative local path is made absolute."""
  out = config.synthesize.get("output_dir", "") or os.path.join(workdir, "synthetic")
  return fileio.resolve(out)


def run(config, workdir: str) -> dict:
  """Job `synthesize`: config.synthesize -> workdir/synthetic/synthetic-NNNNN.jsonl."""
  import jax  # pylint: disable=g-import-not-at-top
  from sbp_jax import runs  # pylint: disable=g-import-not-at-top
  from sbp_jax.parallel import maybe_initialize_distributed  # pylint: disable=g-import-not-at-top
  maybe_initialize_distributed(config.get("distributed"))
  s = config.synthesize
  check(config)
  docs = SeedDocs(s.seed_files, s.get("text_field", "text"), s.get("id_field", "id"))
  out_dir = output_dir(config, workdir)
  runs.claim(workdir, "synthesize", config, IDENTITY_KEYS, (out_dir, "synthesize_summary.json"),
             ignore=HOW)
  total = num_shards(int(s.target_tokens), int(s.tokens_per_shard))
  mine = host_shards(total, jax.process_index(), jax.process_count())
  if all(fileio.exists(shard_path(out_dir, k)) for k in mine):
    log.info("synthesize: all %d shards of this host exist in %s.", len(mine), out_dir)
    totals = {"shards_written": 0}
  else:
    from sbp_jax.generate.generate_job import make_sampler, sampling_params  # pylint: disable=g-import-not-at-top
    from sbp_jax.parallel import make_mesh  # pylint: disable=g-import-not-at-top
    # The synthesizer on this host's own devices (hosts synthesize independently).
    mesh = make_mesh(tuple(s.get("ici", (-1, 1, 1))), devices=jax.local_devices())
    sampler = make_sampler(config, checkpoint=s.checkpoint, mesh=mesh)
    gen = sampler_generate_fn(sampler, sampling_params(s), int(s.max_prompt_tokens),
                              prompt_start(config), bool(s.get("truncate_prompts", False)))
    # One 8-byte fingerprint per seed document in a Python set on every host (~100 bytes
    # each with the set's overhead): fine for millions of documents, not for billions.
    copies = ({fingerprint(d["text"]) for d in docs} if s.get("drop_seed_copies", False)
              else frozenset())
    totals = synthesize_to_dir(
        docs, gen, out_dir, seed=int(config.seed), target_tokens=int(s.target_tokens),
        tokens_per_shard=int(s.tokens_per_shard), batch_size=int(s.batch_size),
        max_batches_per_shard=int(s.max_batches_per_shard), shingle=int(s.shingle),
        drop_unfinished=bool(s.get("drop_unfinished", False)), seed_copies=copies,
        process_index=jax.process_index(), process_count=jax.process_count(),
        progress=bool(s.get("progress", True)))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices("synthesize_done")
  summary = summarize_dir(out_dir)
  summary["this_host"] = totals
  if jax.process_index() == 0:
    fileio.write_json(os.path.join(workdir, "synthesize_summary.json"), summary)
  log.info("synthesize: %d docs, %d tokens in %d shards; %.1f%% of outputs dropped as repetitive.",
           summary["kept"], summary["kept_tokens"], summary["shards"],
           100 * summary["repetitive_rate"])
  return summary
