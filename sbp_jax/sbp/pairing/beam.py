"""The pairing stage as an Apache Beam pipeline (same stage functions as job.run_local).

  docs shards --Embed (one element per shard)--> embeddings/
  (value shard v, salt s) --Search, after every embedding exists (side input)-->
      neighbors/ for the key shards q with q % num_salts == s
  GroupByKey(q): all value shards of q searched
  d2 texts: join (CoGroupByKey on gid) of each shard's needed neighbours with the docs
  CoGroupByKey(q) --Select--> pairs/pairs-q.jsonl + stats-q.json;  then stats.json.

Each DoFn skips outputs that already exist, so a killed run resumes from
finished shards. Runner flags come from config.pair.beam_options:
  local (default): --runner=DirectRunner --direct_num_workers=2
                   --direct_running_mode=multi_processing
  Dataflow: --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp
            --setup_file=./setup.py (or --sdk_container_image=IMAGE with sbp_jax installed)
            --num_workers=N --max_num_workers=M --experiments=use_runner_v2
  Flink:    --runner=FlinkRunner --flink_master=HOST:8081 --environment_type=DOCKER
            --parallelism=N
The workdir must be a path every worker sees (NFS / Filestore, or a GCS FUSE
mount): the stages use plain file I/O.
"""

from __future__ import annotations

import logging

import apache_beam as beam
import ml_collections
from apache_beam.options.pipeline_options import PipelineOptions

from sbp_jax.sbp.pairing import docs as docs_lib
from sbp_jax.sbp.pairing import stages

log = logging.getLogger(__name__)


class _Stage(beam.DoFn):
  """Holds the config as a plain dict (picklable for any runner) and the layout."""

  def __init__(self, cfg: dict, workdir: str):
    super().__init__()
    self.cfg_dict, self.workdir = cfg, workdir

  def setup(self):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    self.config = ml_collections.ConfigDict(self.cfg_dict)
    self.p = self.config.pair
    self.lay = stages.Layout(self.workdir)


class EmbedFn(_Stage):

  def setup(self):
    super().setup()
    self._embedder = None

  def _get(self):
    if self._embedder is None:
      from sbp_jax.sbp.pairing.embed import make_embedder  # pylint: disable=g-import-not-at-top
      self._embedder = make_embedder(self.config)
    return self._embedder

  def process(self, s):
    if stages.embed_shard(self._get, self.lay, s):
      beam.metrics.Metrics.counter("pair", "embedded_shards").inc()
    yield s


class SearchFn(_Stage):

  def __init__(self, cfg, workdir, num_shards):
    super().__init__(cfg, workdir)
    self.num_shards = num_shards

  def process(self, element, embedded):
    del embedded  # a side input only to wait for every embedding shard
    v, salt = element
    for q in stages.search_salt(self.p, self.lay, self.num_shards, v, salt):
      beam.metrics.Metrics.counter("pair", "searched_key_value_shards").inc()
      yield q, v


class NeededFn(_Stage):
  """q -> (d2 gid, q) for each neighbour text key shard q's selection needs."""

  def process(self, q):
    for gid in stages.needed_gids(self.p, self.lay, q):
      yield gid, q


class SelectFn(_Stage):

  def setup(self):
    super().setup()
    from sbp_jax.sbp.pair import make_rule  # pylint: disable=g-import-not-at-top
    self.rule = make_rule(self.config)

  def process(self, element):
    q, groups = element
    docs = {d["gid"]: d for d in groups["docs"]}
    if stages.select_shard(self.p, self.lay, q, self.rule, docs):
      beam.metrics.Metrics.counter("pair", "selected_shards").inc()
    yield q


def _route(element):
  """(gid, {"doc": [doc], "req": [q, ...]}) -> (q, doc) for each requesting shard."""
  _, g = element
  if g["req"] and g["doc"]:
    doc = g["doc"][0]
    for q in sorted(set(g["req"])):
      yield q, doc


def build(pipeline, config, workdir: str, num_shards: int):
  cfg = config.to_dict()
  p = config.pair
  nv, ns = stages.shard_counts(p, num_shards)
  lay = stages.Layout(workdir)
  shards = pipeline | "Shards" >> beam.Create(list(range(num_shards)))
  embedded = shards | "Embed" >> beam.ParDo(EmbedFn(cfg, workdir))
  ready = (pipeline
           | "ValueShardSalts" >> beam.Create([(v, s) for v in range(nv) for s in range(ns)])
           | "Search" >> beam.ParDo(SearchFn(cfg, workdir, num_shards),
                                    beam.pvalue.AsList(embedded))
           | "AllValueShards" >> beam.GroupByKey()
           | "KeyShard" >> beam.Keys())
  requests = ready | "Needed" >> beam.ParDo(NeededFn(cfg, workdir))
  docs = shards | "ReadDocs" >> beam.FlatMap(
      lambda s: [(d["gid"], d) for d in docs_lib.read_shard(lay.docs, s)])
  routed = ({"doc": docs, "req": requests} | "JoinTexts" >> beam.CoGroupByKey()
            | "Route" >> beam.FlatMap(_route))
  return ({"docs": routed, "ready": ready | "Mark" >> beam.Map(lambda q: (q, None))}
          | "PerKeyShard" >> beam.CoGroupByKey()
          | "Select" >> beam.ParDo(SelectFn(cfg, workdir)))


def run_beam(config, workdir: str) -> dict:
  p = config.pair
  lay = stages.Layout(workdir)
  man = stages.split(p, lay)
  opts = PipelineOptions(list(p.beam_options))
  nv, ns = stages.shard_counts(p, man["num_shards"], announce=True)
  log.info("Beam pipeline: %d key shards, %d value shards x %d salts, options %s",
           man["num_shards"], nv, ns, list(p.beam_options))
  with beam.Pipeline(options=opts) as pipeline:
    build(pipeline, config, workdir, man["num_shards"])
  return stages.finalize(p, lay, man["num_shards"], int(config.seed))
