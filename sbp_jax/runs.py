"""Run identity: what a job's outputs were made from, recorded next to them.

A job calls `claim(workdir, job, config, keys, outputs)` after validating its
config and before any compute. The identity is the config fields under `keys`
(minus IGNORED: settings that change how, not what, a job computes) plus the
identity of every input file the config names (a path with its size and mtime;
a directory by its entries; a glob by its matches). It lives in
`<workdir>/identity-<job>.json`:
- no record: it is written, and so is the whole config, for people, in
  `<workdir>/config.json` (or `config-<job>.json` when config.json records another job);
- the same identity: the job resumes or skips finished parts, as before;
- another identity: InputError naming the changed fields, offering a new
  --workdir or --overwrite (which deletes `outputs` first, then claims);
- outputs but no record (written before run identities existed): nothing proves
  which settings made them, so the same InputError, unless the job runs as a
  stage of a claimed parent job (`stage_of`), whose identity covers them.
The config record is only written once the claim holds, so a mistyped re-run never
replaces the record of the run that owns the outputs, and a second job in the same
workdir never replaces the first one's. A job checks its inputs fully (every record
of the files it reads) before it claims, so nothing is written for a bad input.

File access goes through the project's file layer (sbp_jax.fileio).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from typing import Any, Iterable, Mapping, Sequence

from sbp_jax import fileio

from sbp_jax.errors import InputError

log = logging.getLogger("sbp_jax")

# Settings that change how a job runs (placement, logging, checkpoint cadence),
# not what it writes; a resume may change them.
IGNORED = (
    "mesh", "env", "compile_cache", "distributed", "job",
    "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
    "train.async_checkpoint", "train.peak_flops_per_device", "train.eval_every", "train.run_steps",
    "train.eval_steps", "train.eval_batch_size", "data.checkpoint_iterator",
    "budget_eval.plot", "budget_eval.title",
)
# Paths a job writes (outputs outside the workdir): part of the identity as settings, but
# never read as inputs.
OUTPUT_FIELDS = ("train.checkpoint_dir", "synthesize.output_dir")
_MAX_DIR_ENTRIES = 256  # a directory input is identified by at most this many entries

_OVERWRITE = contextvars.ContextVar("sbp_jax_overwrite", default=False)
_PARENT = contextvars.ContextVar("sbp_jax_parent_job", default="")


@contextlib.contextmanager
def overwriting(on: bool):
  """Within it, a conflicting claim deletes the job's outputs instead of stopping."""
  token = _OVERWRITE.set(bool(on))
  try:
    yield
  finally:
    _OVERWRITE.reset(token)


@contextlib.contextmanager
def stage_of(parent: str):
  """Within it, jobs run as stages of `parent`, which has claimed the same settings for
  all of its workdir: a stage's outputs without a record of their own are the parent's."""
  token = _PARENT.set(parent)
  try:
    yield
  finally:
    _PARENT.reset(token)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """{'a.b': leaf}; sequences are leaves (as lists)."""
  if hasattr(tree, "to_dict"):
    tree = tree.to_dict()
  if isinstance(tree, Mapping):
    out = {}
    for k, v in tree.items():
      out.update(flatten(v, f"{prefix}{k}."))
    return out
  if isinstance(tree, tuple):
    tree = list(tree)
  return {prefix[:-1]: tree}


def _ignored(key: str) -> bool:
  return _under(key, IGNORED)


def _under(key: str, prefixes: Sequence[str]) -> bool:
  return any(key == p or key.startswith(p + ".") for p in prefixes)


def config_fields(config, keys: Sequence[str], ignore: Sequence[str] = ()) -> dict[str, Any]:
  """The flattened config under `keys` (top-level sections or dotted fields), without
  IGNORED and the job's own `ignore` (fields that change how it runs, not what it writes)."""
  flat = flatten(config)
  return {k: _jsonable(v) for k, v in sorted(flat.items())
          if _under(k, keys) and not _ignored(k) and not _under(k, ignore)}


def _jsonable(v):
  try:
    json.dumps(v)
    return v
  except TypeError:
    return repr(v)


def _looks_like_path(v: Any) -> bool:
  return (isinstance(v, str) and 0 < len(v) < 4096 and "\n" not in v and
          ("/" in v or v.endswith((".json", ".jsonl", ".gz", ".model", ".gguf", ".txt"))) and
          not v.startswith(("http://", "https://", "package:")))


def input_identity(path: str) -> Any:
  """size+mtime of a file; a directory's entries with theirs; a glob's matches; None if absent."""
  if any(c in path for c in "*?["):
    return {m: _stat(m) for m in _glob(path)} or None
  p = fileio.as_path(path)
  try:
    if not p.exists():
      return None
    if p.is_dir():
      names = sorted(x.name for x in p.iterdir())[:_MAX_DIR_ENTRIES]
      return {"dir": {n: _stat(str(p / n)) for n in names}}
    return _stat(path)
  except OSError:
    return None


def _inside(path: str, workdir: str) -> bool:
  try:
    return fileio.as_path(path).resolve().is_relative_to(fileio.as_path(workdir).resolve())
  except (OSError, ValueError):
    return False


def inputs_of(config, keys: Sequence[str], workdir: str = "",
              ignore: Sequence[str] = ()) -> dict[str, Any]:
  """Identities of the existing files and directories named by string fields under `keys`;
  paths inside `workdir` are the job's own outputs (e.g. a tokenizer it trains), not inputs."""
  out = {}
  for k, v in config_fields(config, keys, ignore).items():
    for i, s in enumerate(v if isinstance(v, list) else [v]):
      if k in OUTPUT_FIELDS:
        continue
      if _looks_like_path(s) and not (workdir and _inside(s, workdir)):
        ident = input_identity(s)
        if ident is not None:
          out[k if not isinstance(v, list) else f"{k}[{i}]"] = {"path": s, "id": ident}
  return out


def identity(job: str, config, keys: Sequence[str], extra: Mapping | None = None,
             workdir: str = "", ignore: Sequence[str] = ()) -> dict:
  return {"job": job, "config": config_fields(config, keys, ignore),
          "inputs": inputs_of(config, keys, workdir, ignore),
          **({"extra": dict(extra)} if extra else {})}


def differences(old: Mapping, new: Mapping) -> list[str]:
  """'field: old -> new' for each field that differs (config fields, inputs, extra)."""
  out = []
  for part in ("config", "inputs", "extra"):
    a, b = old.get(part, {}) or {}, new.get(part, {}) or {}
    for k in sorted(set(a) | set(b)):
      if a.get(k) != b.get(k):
        if part == "inputs":
          out.append(f"input {k} ({(b.get(k) or a.get(k))['path']}) "
                     f"{'changed' if k in a and k in b else 'added' if k in b else 'removed'}")
        else:
          out.append(f"{k}: {_short(a.get(k, '<unset>'))} -> {_short(b.get(k, '<unset>'))}")
  return out


def _short(v) -> str:
  """v in at most 60 characters; a long string keeps its end (where two paths differ)."""
  if isinstance(v, str):
    return repr(v) if len(v) <= 58 else repr("..." + v[-55:])
  s = json.dumps(v)
  return s if len(s) <= 60 else s[:57] + "..."


def identity_path(workdir: str, job: str) -> str:
  return str(fileio.as_path(workdir) / f"identity-{job}.json")


def claim(workdir: str, job: str, config, keys: Sequence[str],
          outputs: Iterable[str] = (), extra: Mapping | None = None,
          write_config: bool = True, ignore: Sequence[str] = ()) -> dict:
  """Checks `workdir` against this run's identity (module docstring); returns the identity.

  outputs: paths the job writes, relative to workdir or absolute (deleted by --overwrite).
  extra: identities computed by the job itself (e.g. an import's source file).
  ignore: the job's fields that change how it runs, not what it writes (beyond IGNORED).
  """
  outputs = list(outputs)
  new = identity(job, config, keys, extra, workdir, ignore)
  path = identity_path(workdir, job)
  try:
    old = _read_json(path)
  except InputError:
    if not _OVERWRITE.get():
      raise
    old = {"unreadable": path}  # matches no identity: --overwrite clears the outputs
  if old is not None and _comparable(old, ignore) == new:
    old = new  # it differed only in fields now known to change how, not what
  existing = [o for o in outputs if _exists(str(fileio.as_path(workdir) / o))]
  if old is not None and old != new and not existing:
    old = None  # a run that stopped before writing anything: nothing can be stale
  if old is not None and old != new:
    _conflict(workdir, job, outputs, f"outputs made with other settings "
              f"({'; '.join(differences(old, new))})")
  elif old is None and existing:
    if _PARENT.get():
      log.info("%s: %s outputs without a record of their own (%s) belong to the %s run "
               "that claimed this workdir.", workdir, job, ", ".join(existing), _PARENT.get())
    else:
      _conflict(workdir, job, outputs, f"outputs ({', '.join(existing)}) written before run "
                "identities were recorded, so nothing says which settings made them")
  if old != new:
    _write_json(path, new)
  if write_config:
    record_config(workdir, config)
  return new


def _comparable(ident: Mapping, ignore: Sequence[str]) -> dict:
  """A recorded identity without the fields IGNORED and `ignore` leave out today, so that
  declaring a field how-not-what later does not invalidate a finished run's record."""
  keep = lambda k: not _ignored(k) and not _under(k.split("[")[0], ignore)
  return {**ident, **{part: {k: v for k, v in (ident.get(part) or {}).items() if keep(k)}
                      for part in ("config", "inputs") if part in ident}}


def _conflict(workdir: str, job: str, outputs: Sequence[str], what: str) -> None:
  """Stops naming the two fixes; under --overwrite deletes the job's outputs instead."""
  if _OVERWRITE.get():
    log.warning("--overwrite: deleting %s's outputs in %s (%s).", job, workdir, what)
    for o in outputs:
      _remove(str(fileio.as_path(workdir) / o))
    return
  raise InputError(f"{workdir} holds {job} {what}. Use a new --workdir, or pass --overwrite "
                   f"to delete this job's outputs there ({', '.join(outputs) or 'none'}) and "
                   "recompute.")


def config_record_path(workdir: str, config) -> str:
  """Where a job records its whole config: <workdir>/config.json, unless that file records
  another job (or cannot be read), which is never replaced; then config-<job>.json."""
  path = str(fileio.as_path(workdir) / "config.json")
  if not _exists(path):
    return path
  try:
    owner = json.loads(fileio.read_text(path)).get("job")
  except (ValueError, AttributeError):
    owner = None
  job = (config.get("job") if hasattr(config, "get") else None) or "run"
  if owner == job:
    return path
  log.info("%s records another job (%s); this %s job's config goes to config-%s.json.",
           path, owner or "unknown", job, job)
  return str(fileio.as_path(workdir) / f"config-{job}.json")


def record_config(workdir: str, config, only_if_absent: bool = False) -> None:
  """Writes the whole config, for people, at config_record_path."""
  path = config_record_path(workdir, config)
  if only_if_absent and _exists(path):
    return
  fileio.write_text(path, config.to_json_best_effort(indent=1) if hasattr(config, "to_json_best_effort")
              else json.dumps(config, indent=1))


# -- file access: the project's file layer, under the names this module uses -----------------

_glob, _exists, _remove = fileio.glob, fileio.exists, fileio.remove_tree


def _stat(path: str) -> dict:
  st = fileio.as_path(path).stat()
  return {"size": int(st.length), "mtime": int(st.mtime)} if not st.is_directory else {"dir": 1}


def _read_json(path: str):
  if not fileio.exists(path):
    return None
  try:
    return json.loads(fileio.read_text(path))
  except json.JSONDecodeError as e:
    raise InputError(f"{path} is not valid JSON ({e.msg}); it records this job's run identity: "
                     "restore it, or pass --overwrite to recompute.") from None


def _write_json(path: str, obj) -> None:
  fileio.write_json(path, obj, sort_keys=True)
