"""The seqio input pipeline behind `data.kind = "seqio"`.

Config (plain data):
  data = dict(kind="seqio", vocab="path/to/spm.model",   # or tokenizer=dict(...): see
              pack=True,                               # sbp_jax/data/vocab.py
              train=[dict(name=..., format="text"|"pairs"|"prompt_response",
                          files=glob or list, weight=token share,
                          synthetic=False,   # True: read once, never repeated
                          max_len=None),     # pairs/prompt_response length cap
                     ...],
              eval=[dict(name=..., format=..., files=...)],
              shuffle_buffer=10_000, strict_resume=True,
              checkpoint_iterator=True)  # see "Fast resume" below

Train: a seqio Mixture of the train tasks, shuffled with the run's seed, real
tasks repeated, synthetic tasks read once; `weight` is a share of TOKENS
(converted to seqio's per-example rates with each task's mean example length).
A train task that yields no example at all (every document empty) is an error
when the iterator is built: repeated, it would make the iterator spin forever.
Eval: the eval tasks one after another, unshuffled, one pass; after the end
every batch is all padding (weight 0), so all hosts run the same number of
eval steps and the loss is unchanged.

When a synthetic task runs out, the stream ends: the iterator raises
DataExhausted and the trainer saves a checkpoint and stops (plan the budget
with mixture.plan_mixture so this does not happen before num_steps; with
several hosts, each runs out on its own, so treat it as a planning error).

Multi-host: host i of n reads seqio.ShardInfo(i, n) of every task (whole
files when a task has at least n files, else every n-th example) and yields
its global_batch / n rows.

Exact resume. The pipeline is deterministic: fixed seeds for file order,
shuffle buffers and mixture sampling, and tf.data's deterministic mode. The
iterator's state is the number of batches it has handed out (plus a
fingerprint of the pipeline's definition); restoring rebuilds the pipeline and
skips that many batches inside tf.data (the fallback of the fast resume below:
it always works). This needs no files besides the JSON
the trainer already checkpoints and survives TF upgrades of iterator
checkpoint formats; its cost is re-reading the skipped data once on resume
(see benchmarks/data_throughput.py for the skip speed). A changed data config
(or host count) makes the position meaningless: set_state raises, unless
data.strict_resume=False, which warns and skips anyway.

Fast resume (data.checkpoint_iterator, default True). Skipping re-reads,
tokenizes and packs every skipped batch: hours at the end of a 200B-token run.
So the trainer also saves the tf.data iterator itself (tf.train.Checkpoint, as
t5x does) in each model checkpoint, one per host (save_iterator), and restores
it on resume (restore_iterator) instead of skipping. The JSON position stays
the source of truth: it is checked (fingerprint) first, and whenever the
iterator checkpoint is missing, unreadable, from another TF version or of a
changed pipeline, restore_iterator warns and the exact skip is used instead.
If the pipeline holds a stage tf.data cannot checkpoint (py_function,
from_generator: external state), save_iterator warns once naming it and the
run keeps skip-resume. Caveats: a checkpoint holds every buffered element (the
shuffle buffers, data.shuffle_buffer examples per task; seqio's in-memory cache
of small tasks; prefetched batches), so it can be hundreds of MB per host; and
its layout follows the dataset graph, so it restores only into the same graph
(the state records the `skip` the live iterator was built with for that).
Saving is synchronous, since the iterator must be captured before the next
batch (about 0.3 s for the demo corpus; benchmarks/data_throughput.py reports
it with the resume times). Where the files go: sbp_jax/train/checkpoint.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Callable

import numpy as np

from sbp_jax.data import mixture as mixture_lib
from sbp_jax.data import sources
from sbp_jax.data import tasks as tasks_lib
from sbp_jax.data.sources import seqio, tf
from sbp_jax.data import vocab as vocab_lib

log = logging.getLogger("sbp_jax")

_SPLITS = {"train": "train", "eval": "validation"}


class DataExhausted(StopIteration):
  """The train stream ended because a never-repeated task ran out."""


def load_vocab(data_cfg):
  """The seqio vocabulary of a data section (sbp_jax.data.vocab: SentencePiece or a
  Hugging Face tokenizer.json), checked for the ids the formats need."""
  return vocab_lib.make_vocabulary(vocab_lib.data_tokenizer(data_cfg))


def entries(data_cfg, split: str) -> list[dict]:
  """The validated task entries of data.train or data.eval."""
  key = split
  raw = data_cfg.get(key)
  if not raw:
    raise ValueError(f"data.{key} is empty; list at least one dict(name=..., format=..., "
                     f"files=...).")
  out, names = [], set()
  for i, e in enumerate(raw):
    e = dict(e)
    where = f"data.{key}[{i}]"
    for field in ("name", "format", "files"):
      if not e.get(field):
        raise ValueError(f"{where}: field {field!r} is missing; each entry needs name, format "
                         f"and files.")
    if e["format"] not in tasks_lib.FORMATS:
      raise ValueError(f"{where}: format={e['format']!r} is not known; choose one of "
                       f"{tasks_lib.FORMATS}.")
    if e["name"] in names:
      raise ValueError(f"{where}: name {e['name']!r} is used twice in data.{key}.")
    unknown = set(e) - {"name", "format", "files", "weight", "synthetic", "max_len"}
    if unknown:
      raise ValueError(f"{where}: unknown fields {sorted(unknown)}.")
    names.add(e["name"])
    e.setdefault("weight", 1.0)
    e.setdefault("synthetic", False)
    e.setdefault("max_len", None)
    if isinstance(e["files"], (tuple, list)):
      e["files"] = list(e["files"])
    if not e["weight"] > 0:
      raise ValueError(f"{where}: weight must be > 0, got {e['weight']}.")
    out.append(e)
  return out


_MEAN_TOKENS: dict[str, float] = {}


def _mean_example_tokens(task, key: str, seq_len: int, n: int = 256) -> float:
  """Mean tokens per example over the task's first n examples (unshuffled, so
  the rates, and hence the batches, are the same in every run)."""
  if key not in _MEAN_TOKENS:
    ds = task.get_dataset(tasks_lib.sequence_lengths(seq_len), split="train", shuffle=False,
                          num_epochs=1, try_in_mem_cache=False).take(n)
    sizes = [len(ex["targets"]) for ex in ds.as_numpy_iterator()]
    _MEAN_TOKENS[key] = float(np.mean(sizes)) if sizes else 1.0
  return _MEAN_TOKENS[key]


_NONEMPTY: set[str] = set()


def _check_has_examples(task, e: dict, key: str, seq_len: int, shard_info) -> None:
  """Raises if the task yields no example at all (every document empty or filtered out):
  repeated forever, such a task makes the train iterator spin without yielding. Reads
  this host's share unshuffled, once, up to its first example (one pass at worst)."""
  if key in _NONEMPTY:
    return
  ds = task.get_dataset(tasks_lib.sequence_lengths(seq_len), split="train", shuffle=False,
                        shard_info=shard_info, num_epochs=1, try_in_mem_cache=False)
  if next(ds.take(1).as_numpy_iterator(), None) is None:
    host = (f" (this host's share: host {shard_info.index} of {shard_info.num_shards})"
            if shard_info else "")
    raise ValueError(
        f"data.train task {e['name']!r} yields no training examples{host}: every record of "
        f"files={e['files']!r} is empty or filtered out (format {e['format']!r}; text "
        f"documents that tokenize to nothing are dropped). Fill the files (is the document "
        f"in the field the format reads?) or remove the task from data.train.")
  _NONEMPTY.add(key)


def build_dataset(data_cfg, split: str, seq_len: int, local_batch: int, seed: int,
                  shard_info=None):
  """tf.data.Dataset of host-local batches (dicts of [local_batch, seq_len])."""
  vocab = load_vocab(data_cfg)
  es = entries(data_cfg, split)
  lengths = tasks_lib.sequence_lengths(seq_len)
  seqio_split = _SPLITS[split]
  buffer = int(data_cfg.get("shuffle_buffer", 10_000))
  tasks = [tasks_lib.register_task(e["name"], e["format"], {seqio_split: e["files"]}, vocab,
                                   max_len=e["max_len"], shuffle_buffer_size=buffer)
           for e in es]
  if split == "train":
    tok = vocab_lib.data_tokenizer(data_cfg).to_dict()
    keys = [json.dumps([e, tok, seq_len, sources.file_stamps(e["files"])],
                       sort_keys=True, default=str) for e in es]
    shard_key = [shard_info.index, shard_info.num_shards] if shard_info else None
    for t, e, key in zip(tasks, es, keys):
      _check_has_examples(t, e, json.dumps([key, shard_key]), seq_len, shard_info)
    if len(tasks) == 1:
      rates = {tasks[0].name: 1.0}
    else:
      means = {t.name: _mean_example_tokens(t, key, seq_len) for t, key in zip(tasks, keys)}
      rates = mixture_lib.example_rates({e["name"]: float(e["weight"]) for e in es}, means)
    mix = mixture_lib.register_mixture("mix:" + "+".join(rates), list(rates.items()),
                                       never_repeat=[e["name"] for e in es if e["synthetic"]])
    ds = mix.get_dataset(lengths, split=seqio_split, shuffle=True, seed=seed,
                         shard_info=shard_info, num_epochs=None, log_mixing_proportions=False,
                         try_in_mem_cache=True)
  else:
    ds = None
    for t in tasks:
      d = t.get_dataset(lengths, split=seqio_split, shuffle=False, shard_info=shard_info,
                        num_epochs=1)
      d = d.map(lambda ex: {k: ex[k] for k in lengths})
      ds = d if ds is None else ds.concatenate(d)
  ds = tasks_lib.LMBatchConverter(pack=bool(data_cfg.get("pack", True)), vocab=vocab)(ds, lengths)
  ds = ds.batch(local_batch, drop_remainder=split == "train")
  options = tf.data.Options()
  options.deterministic = True
  # An iterator checkpoint of a stage with Python state (py_function) would be
  # silently inexact; this makes saving it fail instead (and resume skip).
  options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.FAIL
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def fingerprint(data_cfg, split, seq_len, local_batch, seed, shard) -> str:
  d = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in dict(data_cfg).items()
       if k not in ("strict_resume", "checkpoint_iterator")}  # how to resume, not what
  blob = json.dumps([d, split, seq_len, local_batch, seed, shard], sort_keys=True, default=str)
  return hashlib.sha1(blob.encode()).hexdigest()[:16]


class SeqioIterator:
  """Resumable iterator of host-local numpy batches over a deterministic
  tf.data pipeline; state = batches handed out (see the module docstring).

  `resumed_by` says how the last set_state took effect: "skip" (replays
  `replayed` batches at the first next()) or "iterator_checkpoint" (replays
  none); None before any set_state."""

  def __init__(self, make_dataset: Callable, local_batch: int, seq_len: int, fp: str, *,
               pad_at_end: bool, never_repeat=(), strict_resume: bool = True,
               checkpoint_iterator: bool = False):
    self._make, self.local_batch, self.seq_len, self.fp = make_dataset, local_batch, seq_len, fp
    self.pad_at_end, self.never_repeat, self.strict = pad_at_end, tuple(never_repeat), strict_resume
    self.checkpoint_iterator = checkpoint_iterator
    self.batches = 0
    self.exhausted = False
    self.resumed_by, self.replayed = None, 0
    self._it = None
    self._skip = 0           # the skip(n) the live tf iterator was built with
    self._restorable = None  # after a matching set_state: the saved skip, for restore_iterator
    # Built now so a bad config or file fails here, not at the first batch. A
    # tf.data pipeline is only replayed exactly by a fresh build (shuffle seed
    # generators advance per iteration), hence the rebuild in set_state.
    self._ds, self._fresh = make_dataset(), True

  def get_state(self) -> dict:
    # `skip` pairs with an iterator checkpoint saved at the same time: it
    # restores only into a pipeline built with the same skip(n) node.
    return {"batches": self.batches, "fingerprint": self.fp,
            "skip": self._skip if self._it is not None else self.batches}

  def set_state(self, state: dict) -> None:
    matches = state.get("fingerprint") == self.fp
    if not matches:
      msg = (f"The checkpoint's data position (fingerprint {state.get('fingerprint')}) was "
             f"recorded for a different data pipeline (now {self.fp}: data config, seq_len, "
             f"batch, seed or host count changed), so resuming would not be exact.")
      if self.strict:
        raise ValueError(msg + " Resume with the original settings, or set "
                         "data.strict_resume=False to skip the same number of batches anyway.")
      log.warning("%s Skipping %d batches anyway.", msg, state["batches"])
    self.batches = int(state["batches"])
    self.exhausted = False
    self._it = None
    # An iterator checkpoint of another pipeline cannot be trusted; skip then.
    self._restorable = int(state.get("skip", 0)) if matches else None
    self.resumed_by, self.replayed = "skip", self.batches
    self._rebuild()

  def _rebuild(self) -> None:
    if not self._fresh:
      self._ds, self._fresh = self._make(), True

  def _start(self) -> None:
    """Builds the live tf iterator at the current position by skipping."""
    self._skip = self.batches
    self._it = iter(self._ds.skip(self.batches))
    self._fresh = False

  def save_iterator(self, prefix: str) -> bool:
    """Writes the live tf.data iterator to the tf.train.Checkpoint `prefix`
    (local or gs://). False when disabled, when the pipeline cannot be
    checkpointed (warned once, then disabled) or when the write failed (warned;
    resuming from this step then skips)."""
    if not self.checkpoint_iterator:
      return False
    if self._it is None:
      self._start()
    try:
      tf.train.Checkpoint(iterator=self._it).write(prefix)
    except tf.errors.OpError as e:
      if "SerializeIterator" not in str(e):  # storage trouble: this step only
        log.warning("data.checkpoint_iterator: writing %s failed (%s: %s); resuming from this "
                    "step will skip the batches read.", prefix, type(e).__name__, _first_line(e))
        return False
      # The pipeline itself cannot be serialized (e.g. "PyFunc is stateful").
      self.checkpoint_iterator = False
      log.warning("data.checkpoint_iterator: the input pipeline cannot be checkpointed (%s); "
                  "not saving iterator checkpoints any more, resume will skip the batches "
                  "read. Remove the Python stage (py_function / from_generator) from the "
                  "pipeline to get fast resume.", _first_line(e))
      return False
    return True

  def restore_iterator(self, prefix: str | None) -> bool:
    """After set_state: continues from the iterator checkpoint `prefix` instead
    of skipping. False (with a warning; the exact skip stays in place) when
    there is none, it is unreadable or does not fit this pipeline."""
    if self.resumed_by is None:
      raise RuntimeError("restore_iterator needs set_state(<the JSON state saved with it>) "
                         "first: the position and fingerprint come from there.")
    why = None
    if self._restorable is None:
      why = "the data pipeline changed (fingerprint mismatch)"
    elif not self.checkpoint_iterator:
      why = "data.checkpoint_iterator is off or the pipeline is not checkpointable"
    elif prefix is None:
      why = "the checkpoint has none (saved with data.checkpoint_iterator off, or before it)"
    elif not tf.io.gfile.exists(prefix + ".index"):
      why = f"{prefix}.index is missing (saved with another host count?)"
    if why is None:
      it = iter(self._ds.skip(self._restorable))
      self._fresh = False
      try:
        tf.train.Checkpoint(iterator=it).read(prefix).assert_consumed()
      except Exception as e:  # damaged files raise OpError, IndexError, ValueError, ...
        why = (f"{prefix} is unreadable, or of another pipeline or TF version "
               f"({type(e).__name__}: {_first_line(e)})")
        self._rebuild()  # the partly used dataset would not replay exactly
      else:
        self._it, self._skip, self._restorable = it, self._restorable, None
        self.resumed_by, self.replayed = "iterator_checkpoint", 0
        return True
    log.warning("No iterator checkpoint used: %s; resuming by skipping %d batches instead "
                "(exact, but it re-reads them).", why, self.batches)
    return False

  def __iter__(self):
    return self

  def _padding(self) -> dict[str, np.ndarray]:
    shape = (self.local_batch, self.seq_len)
    return {"inputs": np.zeros(shape, np.int32), "targets": np.zeros(shape, np.int32),
            "weights": np.zeros(shape, np.float32), "segment_ids": np.zeros(shape, np.int32),
            "positions": np.zeros(shape, np.int32)}

  def __next__(self) -> dict[str, np.ndarray]:
    if self._it is None and not self.exhausted:
      self._start()
    try:
      if self.exhausted:
        raise StopIteration
      batch = {k: v.numpy() for k, v in next(self._it).items()}
    except StopIteration:
      self.exhausted = True
      if self.pad_at_end:
        self.batches += 1
        return self._padding()
      names = ", ".join(self.never_repeat) or "(none)"
      raise DataExhausted(
          f"The training data ended after {self.batches} batches: never-repeated (synthetic) "
          f"task(s) {names} ran out; each synthetic document is used once. Lower "
          f"train.num_steps or add synthetic data.") from None
    self.batches += 1
    rows = len(batch["targets"])
    if rows < self.local_batch:  # last eval batch: pad with weight-0 rows
      pad = self._padding()
      for k in pad:
        pad[k][:rows] = batch[k]
      batch = pad
    return batch


def _first_line(e: Exception) -> str:
  msg = str(getattr(e, "message", "") or e).strip()
  return msg.splitlines()[0][:300] if msg else ""


def make_seqio_iterator(data_cfg, split: str, seq_len: int, global_batch: int, seed: int,
                        process_index: int = 0, process_count: int = 1) -> SeqioIterator:
  if split not in _SPLITS:
    raise ValueError(f"split={split!r}; choose 'train' or 'eval'.")
  if global_batch % process_count:
    raise ValueError(f"Global batch {global_batch} is not divisible by {process_count} hosts.")
  local = global_batch // process_count
  shard = seqio.ShardInfo(process_index, process_count) if process_count > 1 else None
  es = entries(data_cfg, split)  # fail fast on a bad config
  seed = seed if split == "train" else seed + 1
  fp = fingerprint(data_cfg, split, seq_len, local, seed, [process_index, process_count])
  return SeqioIterator(
      lambda: build_dataset(data_cfg, split, seq_len, local, seed, shard), local, seq_len, fp,
      pad_at_end=split == "eval", never_repeat=[e["name"] for e in es if e["synthetic"]],
      strict_resume=bool(data_cfg.get("strict_resume", True)),
      checkpoint_iterator=split == "train" and bool(data_cfg.get("checkpoint_iterator", True)))
