"""EntiGraph synthetic corpus from a small source corpus (thesis 2.2.2, A.1, A.6).

Default: QuALITY articles (released JSONL, path below) through an
OpenAI-compatible endpoint, e.g. our own `serve` job or a hosted model:
  export OPENAI_API_KEY=...
  launch/tpu_run.sh --config=configs/entigraph_generate.py:quality \
      --config.generator.http.base_url=https://api.openai.com/v1 \
      --config.generator.http.model=gpt-4-turbo
":quality" reads QUALITY_ARTICLES: all 265 articles of QuALITY v1.0.1 (train + dev), the set
the thesis synthesizes from and evaluates on (configs/entigraph_qa.py:quality asks the
questions of the same files).
The rephrase baseline is the same job with --config.entigraph.mode=rephrase.
For a local checkpoint: --config.generator.kind=local --config.generate.checkpoint=DIR.
"""

import ml_collections

from configs.base import get_base
from configs.generate_tiny import generation_section


def entigraph_section(documents="data/entigraph_demo/articles.jsonl") -> ml_collections.ConfigDict:
  e = ml_collections.ConfigDict()
  e.documents = documents         # our layout or QuALITY's; a glob or a list of them
  e.mode = "entigraph"            # or "rephrase" (the baseline of A.6.2)
  e.max_docs = 0                  # 0 = all
  e.max_entities = 0              # cap on entities per document (0 = all extracted)
  e.max_pairs = 0                 # pairs per document (0 = all C(n, 2)); fewer name the first 2x
  e.num_triples = 64              # sampled triples per document (-1 = all C(n, 3))
  e.extraction_retries = 2        # extra extraction calls when the JSON cannot be parsed
  e.extraction_fallback = "record"  # record | raw_doc | heuristic (see synth_corpus.py)
  e.entity_source = "model"       # or "heuristic": rule-based names, no extraction call
  e.include_summary = True        # the extracted summary is also a training text
  e.entity_filter = False         # drop headings, versions, names not in the text (entity_filter.py)
  # Prefill: the start of the extraction reply, e.g. '{"entities": ["' for small chat
  # models that drift into prose; "" for API models (OpenAI's has no prefill; an
  # HTTP endpoint needs generator.http.prefill).
  e.extraction_reply_prefix = ""
  e.relation_prefill_lead = False  # start relation replies with 'In "<title>", <entity 1>'
  e.balance_leads = False         # with the lead: rotate which entity opens (synth_corpus.balance_leads)
  # What a relation prompt shows: the whole "document" (the thesis), or "entity_paragraphs",
  # the paragraphs that define and mention its entities (for small writers that drift).
  e.relation_context = "document"
  e.rephrase_styles = ("easy", "medium", "hard")
  e.rephrase_rounds = 1           # rewrites per style per document
  e.temperature = 1.0
  e.top_p = 1.0
  e.extraction_max_tokens = 1024
  e.relation_max_tokens = 1024
  e.batch_size = 16               # prompts per generator call (HTTP: >= max_concurrency)
  e.target_tokens = 0             # stop once the synthetic corpus holds this many tokens
  e.progress = True
  return e


def generator_section() -> ml_collections.ConfigDict:
  g = ml_collections.ConfigDict()
  g.kind = "http"                 # or "local" (config.generate picks the checkpoint)
  g.style = "chat"                # chat | completion (plain prompt, for base models)
  g.batch_size = 8                # local backend: sampler batch
  g.top_k = 0
  g.http = ml_collections.ConfigDict(dict(
      base_url="http://127.0.0.1:8000/v1", model="sbp_jax", api_key_env="",
      max_concurrency=8, requests_per_second=0.0, max_retries=5, backoff_s=1.0,
      max_backoff_s=60.0, timeout_s=600.0,
      send_seed=True,  # False batches better on our own `serve` at temperature > 0
      prefill=""))  # "" | "message" | "continue_final_message" (see backends.HTTPGenerator)
  return g


# QuALITY v1.0.1 (htmlstripped JSON lines): train + dev = the thesis's 265 articles.
QUALITY_ARTICLES = ("/data/QuALITY.v1.0.1.htmlstripped.train",
                    "/data/QuALITY.v1.0.1.htmlstripped.dev")


def get_config(articles: str = "demo"):
  """articles: "demo" (data/entigraph_demo) or "quality" (QUALITY_ARTICLES)."""
  if articles not in ("demo", "quality"):
    raise ValueError(f"configs/entigraph_generate.py:{articles}: choose 'demo' or 'quality'.")
  c = get_base("tiny")
  c.job = "entigraph"
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.model.vocab_size = 4096
  # Counts the corpus's tokens (and is the local backend's tokenizer): use the
  # tokenizer the CPT run will train with (configs/entigraph_cpt.py uses this one).
  c.tokenizer = ml_collections.ConfigDict(dict(kind="sentencepiece",
                                               path="data/demo_corpus/spm_bpe_4096.model"))
  c.generate = generation_section()  # local backend only
  c.generator = generator_section()
  c.entigraph = entigraph_section(QUALITY_ARTICLES) if articles == "quality" else \
      entigraph_section()
  return c
