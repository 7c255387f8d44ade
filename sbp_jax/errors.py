"""Errors a user can fix, and one-paragraph explanations of the library errors we anticipate.

`InputError` (a ValueError, so older `except ValueError` still catch it) is
raised for bad config values, bad files and conflicting workdirs; its message
already names the key or file and the fix. `explain` turns it, and the library
errors that bad input causes (a corrupt checkpoint, tokenizer or weights file, a
misspelled override), into the paragraph `sbp_jax.main` prints instead of a
traceback; for anything else it returns None, so real bugs keep their traceback.
"""

from __future__ import annotations

import difflib
import json


class InputError(ValueError):
  """Bad input: the message names the config key or file, the value and the fix."""


def _first_line(exc: BaseException, limit: int = 300) -> str:
  text = str(exc).strip().splitlines()
  line = text[0] if text else type(exc).__name__
  return line if len(line) <= limit else line[:limit] + "..."


def _module(exc: BaseException) -> str:
  return type(exc).__module__ or ""


def override_typo(argv, keys) -> str | None:
  """The first `--config.a.b=v` in argv naming no key of the config (keys: its dotted
  keys), with the closest key as the suggestion; None when every override names one."""
  keys = list(keys)
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    name = arg.split("=")[0][len("--config."):]
    if name in keys or any(k.startswith(name + ".") for k in keys):
      continue
    close = difflib.get_close_matches(name, keys, n=1, cutoff=0.6)
    fix = f"did you mean --config.{close[0]}?" if close else (
        "check the spelling against the config file.")
    return f"--config.{name}: the config has no key {name!r}; {fix}"
  return None


def explain(exc: BaseException) -> str | None:
  """One paragraph for an anticipated error, or None for an unexpected one (a bug)."""
  mod, name = _module(exc), type(exc).__name__
  if isinstance(exc, InputError):
    return str(exc)
  if mod.startswith("sbp_jax"):  # the project's own error types (e.g. GenerationError)
    return str(exc)
  if isinstance(exc, json.JSONDecodeError):
    return (f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); fix or "
            "regenerate the file named above.")
  if "SafetensorError" in name or mod.startswith("safetensors"):
    return (f"a safetensors file could not be read ({_first_line(exc)}); it is truncated or "
            "not safetensors: download it again.")
  if isinstance(exc, RuntimeError) and ("modelproto" in str(exc).lower().replace("_", "")
                                        or "sentencepiece" in mod):
    return (f"not a SentencePiece model ({_first_line(exc)}); point tokenizer.path (and "
            "data.vocab) at a .model file written by SentencePiece training.")
  if mod.startswith(("orbax", "tensorstore")) or "tensorstore" in str(exc)[:2000].lower():
    return (f"a checkpoint could not be read ({_first_line(exc)}); it is damaged or from "
            "another run: use another --workdir or checkpoint path.")
  if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError,
                      PermissionError)):
    where = getattr(exc, "filename", None)
    return f"{where}: {exc.strerror}; check the path." if where and exc.strerror else str(exc)
  if isinstance(exc, OSError):
    return str(exc)
  if isinstance(exc, ValueError):  # the project raises ValueError with the key and fix
    return str(exc)
  return None
