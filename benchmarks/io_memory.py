"""Peak memory of drawing synthesis seeds and quality samples as the corpus grows.

  python benchmarks/io_memory.py [--docs 20000,200000] [--doc_bytes 2000]

For each corpus size, writes D_pretrain (plain JSON lines, 4 shards) and a set of
synthetic shards of the same size into a temporary directory, then, in a fresh
process per measurement, reports the peak resident memory (ru_maxrss) above the
process's footprint after imports for:
  seeds    synthesize_shard over SeedDocs: 8 batches of 64 uniform draws
           (the synthesis job's path), with a stand-in generator
  quality  experiment.sample_records: 200 of the synthetic documents
  load     the old way, every D_pretrain document read into a list (for contrast)
The first two should stay flat while the corpus grows; they grow only by the offset
index (12 bytes a document). Figures vary with what else runs on the machine.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _write_corpus(d: str, n: int, doc_bytes: int, prefix: str, shards: int = 4) -> str:
  word = "lorem ipsum dolor sit amet consectetur ".encode()
  body = (word * (doc_bytes // len(word) + 1))[:doc_bytes].decode()
  per = -(-n // shards)
  for s in range(shards):
    with open(os.path.join(d, f"{prefix}-{s:05d}.jsonl"), "w") as f:
      for i in range(s * per, min(n, (s + 1) * per)):
        f.write(json.dumps({"id": f"{prefix}{i}", "seed_id": f"d{i}", "text": f"{i} {body}"})
                + "\n")
  return os.path.join(d, f"{prefix}-*.jsonl")


def _peak_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _measure(what: str, pattern: str) -> None:
  """Runs in the child: prints peak RSS growth (MiB) of one measurement."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from sbp_jax.sbp import experiment, synthesize  # pylint: disable=g-import-not-at-top
  base = _peak_mib()
  if what == "seeds":
    docs = synthesize.SeedDocs(pattern)
    fake = lambda texts, seed: [synthesize.Sample([len(t) % 97] * 8, t[:40], "stop_token")
                                for t in texts]
    recs, _ = synthesize.synthesize_shard(docs, 0, fake, seed=0, tokens_per_shard=10**9,
                                          batch_size=64, max_batches=8, shingle=13)
    n = len(recs)
  elif what == "quality":
    n = len(experiment.sample_records(pattern, 200, np.random.default_rng(0)))
  else:
    from sbp_jax import fileio  # pylint: disable=g-import-not-at-top
    n = len([r for p in fileio.glob(pattern) for r in fileio.read_jsonl(p)])
  print(json.dumps({"peak_mib": _peak_mib() - base, "n": n}))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--docs", default="20000,200000")
  ap.add_argument("--doc_bytes", type=int, default=2000)
  ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args._child:
    _measure(*args._child)
    return
  print(f"{'docs':>8}{'corpus MiB':>12}{'seeds MiB':>11}{'quality MiB':>13}{'load-all MiB':>14}")
  for n in [int(x) for x in args.docs.split(",")]:
    with tempfile.TemporaryDirectory() as d:
      real = _write_corpus(d, n, args.doc_bytes, "d")
      syn = _write_corpus(d, n, args.doc_bytes, "synthetic")
      size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f[0] == "d")
      row = {}
      for what, pat in (("seeds", real), ("quality", syn), ("load", real)):
        out = subprocess.run([sys.executable, __file__, "--_child", what, pat], check=True,
                             capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
        row[what] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    print(f"{n:>8}{size / 2**20:>12.0f}{row['seeds']:>11.1f}{row['quality']:>13.1f}"
          f"{row['load']:>14.1f}")


if __name__ == "__main__":
  main()
