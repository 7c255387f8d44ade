"""EntiGraph CPT end to end on SmolLM2-135M-Instruct (thesis chapter 2 at CPU scale):
the model writes its own EntiGraph and Rephrase corpora about a niche corpus, is
continually pretrained on each (and on the raw documents), and answers closed-book
four-choice questions about it; a sweep over EntiGraph subsamples is fitted with the
mixture-of-exponential curve.

  launch/tpu_run.sh --config=configs/entigraph_smollm2_cpt.py          # size "cpu"
  launch/tpu_run.sh --config=configs/entigraph_smollm2_cpt.py:smoke    # minutes; the test's size

Writes WORKDIR/qa_report.json and WORKDIR/scaling.png (job entigraph_cpt_study,
sbp_jax/entigraph/cpt_study.py). Every stage resumes, so a run can be stopped
and restarted with the same command; train.run_steps caps one invocation's steps.

Niche corpus: the command-line option sections of the Python 3.11 manual shipped in
data/demo_corpus (PSF License), questions made and checked by niche_corpus.py.

Thesis settings (A.2) kept at every size: replay of generic text at rate 0.1 (one
coin per batch), linear warmup over 5% of the steps then cosine decay to 0, Raw CPT
4 passes, EntiGraph and Rephrase CPT 2 passes with Rephrase token-matched to
EntiGraph, the model's own tokenizer. QA: few-shot (chain of thought at size full),
k sampled replies, the strictly parsed ones kept, one picked. Scaled down for CPU (sizes):
  cpu:   all 17 documents / 118 questions (at least 100 are needed to separate the arms),
         each question's distractors the flags of its document's other facts;
         <= 8 entities per document, 6 pairs naming all 8 + 2 triples (8 texts, as 4
         entities with every pair gave), 128-token relation texts, one
         rewrite per style; context 512, batch 4, peak lr 1e-4 (the thesis's 5e-6 moves a
         model over hundreds of thousands of tokens; these runs see tens of thousands);
         QA answer-only (the reply is " B.", so 4 new tokens parse), 3 shots, k=4 at
         temperature 1.0, random pick. Measured from a fresh clone on 2 idle cores (set-up
         included): 51.5 minutes, peak RSS 14.6 GB, about 8 GB of checkpoints (EntiGraph
         texts about 7 min, rewrites 3, a 22-24-step arm's CPT about 6 min with compile,
         QA plus log-likelihood about 3 min an arm). By the sampled letters every arm is
         near chance; by log-likelihood EntiGraph CPT leads (0.458, Raw 0.398, base 0.339)
         but by less than the 95% interval, and by length-normalised log-likelihood Raw
         leads (docs/usage.md, EntiGraph).
         The first 4 documents / 26 questions: --config.niche.max_docs=4.
  smoke: 2 documents, 8 questions, 2 entities (names and flags when the 48-token
         extraction fails), 16-token texts, context 128, batch 8, k=2,
         1 shot answer-only (qa.reasoning=False: the reply is " B.", so 8 new tokens
         parse; a chain of thought needs ~50): checks the plumbing only.
  full:  what an accelerator should run: all 17 documents, all entities, 64 triples per
         document, 1,024-token texts, 3 rewrite rounds, context 2,048, batch 16, lr 5e-6, QA 5 shots,
         k=64, random pick (A.7.1).
"""

import ml_collections

from configs import entigraph_smollm2

SIZES = ("cpu", "smoke", "full")


def get_config(size: str = "cpu"):
  if size not in SIZES:
    raise ValueError(f"configs/entigraph_smollm2_cpt.py:{size}: choose one of {SIZES}.")
  c = entigraph_smollm2.get_config()
  c.job = "entigraph_cpt_study"
  c.model.dtype = "float32"       # CPU compute; the params are float32 in every case
  c.tokenizer.mask_pad = True     # SmolLM2 pads with its eos <|im_end|>: padding found by position
  c.niche = ml_collections.ConfigDict(dict(
      source="data/demo_corpus/train.jsonl.gz", min_facts=4, max_docs=0, seed=0,
      distractors="same_document"))
  c.replay_text = ml_collections.ConfigDict(dict(
      source="data/demo_corpus/train.jsonl.gz", max_docs=400))
  e = c.entigraph
  e.documents = ""                # set by the job: WORKDIR/niche/documents.jsonl
  e.max_docs = 0
  # 8 entities, 6 pairs that name all 8, 2 triples: the 8 texts a document had with 4 entities
  # (every pair), spread over twice the options; each text opens with an entity that has led
  # fewest so far (balance_leads). Facts held (a text names the flag and half the words of
  # its description): 49 of 118 questions, 38 without the balanced leads, 48 of 119 at 4.
  e.max_entities = 8
  e.max_pairs = 6
  e.num_triples = 2
  e.balance_leads = True
  # relation_context stays "document" (the whole section in each relation prompt). Showing
  # only the entities' own paragraphs ("entity_paragraphs") raised the facts held to 62 of
  # 118 (share of entity mentions 0.42, against 0.23), yet its EntiGraph CPT scored lower by
  # log-likelihood, 0.415 against 0.458 at seed 0, within the noise (docs/usage.md).
  # At temperature 0.1 it held 58; with 12 texts a document (10 pairs), 65, for 1.5x tokens.
  e.relation_context = "document"
  e.relation_max_tokens = 128
  e.rephrase_rounds = 1
  e.extraction_retries = 1
  # Measured on all 17 documents (2 tries each): no list of the 135M model keeps 2 entities
  # after the filter (sentences, section numbers, invented names), so a document takes the
  # rule-based names instead: its option lines, then identifiers, then capitalised names
  # (synth_corpus.heuristic_entities; 121 of 128 judged real at 8 per document, the 7 others
  # example values and "Python", docs/entigraph_entity_quality.json). At size cpu the extraction call (524 s on one core,
  # every list discarded) is skipped; sizes smoke and full ask the model first.
  e.extraction_fallback = "heuristic"
  e.entity_source = "heuristic" if size == "cpu" else "model"
  e.progress = False
  c.arms = ml_collections.ConfigDict(dict(
      raw_epochs=4.0, synthetic_epochs=2.0, match_rephrase=True, replay_rate=0.1,
      scaling_fractions=(0.25, 0.5)))   # + the full corpus and 0 tokens (the base model)
  t = c.train
  t.seq_len, t.global_batch_size = 512, 4
  t.schedule, t.warmup_frac, t.lr, t.end_lr = "cosine", 0.05, 1e-4, 0.0
  t.log_every, t.eval_every, t.checkpoint_every, t.async_checkpoint = 10, 0, 50, False
  # Answer-only: a chain of thought costs ~64 decode steps per reply and parsed 0.5 of them;
  # answer-only replies parse 0.90 (base model, 119 questions) at 4 steps, so the cost is
  # the prompts' prefill. The sampler prefills the shared 3-shot examples once per batch and
  # each question once for its k replies: 8 questions x k=4 = 32 rows a batch take 10.7 s
  # per 16 questions on one core, against 120 s with every row prefilled in full.
  # loglik: every arm is also scored by choice log-likelihood (0 shots, ~100 s an arm at
  # cpu), which shows what CPT taught a model too small to answer with a letter.
  c.qa = ml_collections.ConfigDict(dict(
      k=4, shots=3, reasoning=False, pick="random", temperature=1.0, top_p=1.0,
      max_new_tokens=4, batch_questions=8, max_questions=0, loglik=True, score_batch=16))
  if size == "smoke":
    c.niche.max_docs = 2
    c.replay_text.max_docs = 20
    e.max_entities, e.num_triples = 2, 0
    e.extraction_max_tokens, e.relation_max_tokens = 48, 16
    c.arms.scaling_fractions = (0.34, 0.67)
    # batch 8: the test session's 8 emulated devices each take one row (same tokens, fewer steps)
    t.seq_len, t.global_batch_size, t.log_every, t.checkpoint_every = 128, 8, 1, 1000
    c.qa.update(k=2, shots=1, reasoning=False, temperature=1.0, max_new_tokens=8,
                batch_questions=4, max_questions=8)
  elif size == "full":
    c.niche.max_docs = 0
    e.max_entities, e.num_triples, e.rephrase_rounds, e.extraction_retries = 0, 64, 3, 2
    e.max_pairs = 0                 # every pair, as the thesis
    e.extraction_max_tokens, e.relation_max_tokens = 1024, 1024
    c.model.dtype = "bfloat16"
    t.seq_len, t.global_batch_size, t.lr, t.checkpoint_every = 2048, 16, 5e-6, 200
    c.arms.scaling_fractions = (0.0625, 0.125, 0.25, 0.5)
    c.qa.update(k=64, shots=5, reasoning=True, pick="random", temperature=1.0,
                max_new_tokens=256, batch_questions=1)
  return c
