"""Benchmarks through tensorflow-datasets, used only when a task names `tfds`.

TFDS (4.9) ships ai2_arc (ARC-Easy / ARC-Challenge), winogrande, lambada and
trivia_qa; a TPU VM with internet (download=True) or a pre-populated
data_dir serves them. SciQ, WebQS and MMLU are not in TFDS: convert their
release files with sbp_jax/eval/convert.py.
"""

from __future__ import annotations

from typing import Callable

from sbp_jax.eval.convert import arc_record, trivia_record, winogrande_record
from sbp_jax.eval.records import check_records


def _s(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


_ARC_LABELS = ["A", "B", "C", "D", "E"]  # the builder's ClassLabel names


def from_ai2_arc(ex: dict) -> dict:
  ch = ex["choices"]
  return arc_record(_s(ex["question"]), [_s(t) for t in ch["text"]],
                    [_ARC_LABELS[int(i)] for i in ch["label"]], _ARC_LABELS[int(ex["answerKey"])],
                    id=_s(ex["id"]))


def from_winogrande(ex: dict) -> dict:
  # ClassLabel names ['1', '2']; the unlabelled test split reads -1.
  label = int(ex["label"])
  return winogrande_record(_s(ex["sentence"]), _s(ex["option1"]), _s(ex["option2"]),
                           str(label + 1) if label >= 0 else "")


def from_lambada(ex: dict) -> dict:
  return {"text": _s(ex["passage"])}


def from_trivia_qa(ex: dict) -> dict:
  a = ex["answer"]
  return trivia_record(_s(ex["question"]), _s(a["value"]), [_s(x) for x in a["aliases"]],
                       id=_s(ex["question_id"]))


# builder name -> (our format, example -> record)
BUILDERS: dict[str, tuple[str, Callable[[dict], dict]]] = {
    "ai2_arc": ("multiple_choice", from_ai2_arc),
    "winogrande": ("winogrande", from_winogrande),
    "lambada": ("lambada", from_lambada),
    "trivia_qa": ("generative_qa", from_trivia_qa),
}


def load_tfds(name: str, split: str, fmt: str, data_dir: str = "", download: bool = False,
              limit: int = 0) -> list[dict]:
  """Records of format `fmt` from TFDS dataset `name` (e.g. 'ai2_arc/ARC-Easy')."""
  builder = name.split("/")[0].split(":")[0]
  if builder not in BUILDERS:
    raise ValueError(f"tfds name {name!r}: no mapping for builder {builder!r}; known: "
                     f"{sorted(BUILDERS)}. Use local files (sbp_jax/eval/convert.py) instead.")
  want, fn = BUILDERS[builder]
  if want != fmt:
    raise ValueError(f"tfds {name!r} gives {want} records but the task's format is {fmt!r}.")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  ds = tfds.load(name, split=split, data_dir=data_dir or None, download=download,
                 shuffle_files=False)
  if limit:
    ds = ds.take(limit)
  rows = []
  for i, ex in enumerate(tfds.as_numpy(ds)):
    try:
      rows.append(fn(ex))
    except (KeyError, ValueError) as e:
      raise ValueError(f"tfds {name} split {split}: example {i}: {e}") from None
  return check_records(rows, fmt, f"tfds {name} split {split}")
