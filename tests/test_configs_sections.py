"""Config sections live in configs/sections/: the paper configs import no demo file,
carry the thesis's pairing settings and name their tokenizer once."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = ("sbp_3b_200b", "sbp_3b_1t", "sbp_6b_1t", "s1_sft_qwen32b")
DEMOS = ("sbp_pair_demo", "eval_demo", "sbp_synthesize_tiny", "s1_sft_tiny", "demo_realtext_cpu",
         "demo_cpu", "generate_tiny")


@pytest.mark.parametrize("mod", PAPER)
def test_paper_configs_import_no_demo_file(mod):
  code = (f"import sys; import configs.{mod} as m; m.get_config(); "
          "print(' '.join(n for n in sys.modules if n.startswith('configs.')))")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=ROOT)).stdout.split()
  assert not set(out) & {f"configs.{d}" for d in DEMOS}, out


def test_paper_pairing_is_the_thesis_with_the_qwen3_embedder():
  from configs import sbp_3b_200b
  p = sbp_3b_200b.get_config().pair
  assert (p.search.k, p.select.alpha, p.select.cap) == (200, 0.75, 0)
  assert p.search.num_leaves == 0 and p.search.leaves_frac == 0.06  # sqrt(N) leaves, 6% searched
  e = p.embedder
  assert (e.kind, e.pooling, e.layer, e.max_len) == ("lm", "last", -1, 0)  # whole documents
  assert "qwen3_embedding" in e.import_dir


def test_one_tokenizer_setting_drives_data_and_shingles():
  from configs import sbp_3b_200b
  from sbp_jax.data import vocab
  from sbp_jax.sbp.pair import shingle_tokenizer
  c = sbp_3b_200b.get_config()
  c.tokenizer.path = "gs://b/spm_bpe_49152.model"
  c.data.train = [dict(name="t", format="text", files="x")]
  assert vocab.with_job_tokenizer(c).data.tokenizer.to_dict() == dict(
      kind="sentencepiece", path="gs://b/spm_bpe_49152.model", pad_id=-1, mask_pad=False)
  assert shingle_tokenizer(c).path == c.tokenizer.path
  assert "vocab" not in c.data


def test_s1_budget_sweep_can_extrapolate():
  from configs import s1_budget_eval
  e = s1_budget_eval.get_config().budget_eval
  maxes = [int(s.split("=")[1]) for s in e.sequential.settings if s.startswith("max=")]
  assert e.thinking_cap > max(maxes)  # Wait rows are not capped below the largest max
  assert any(s.startswith("wait=") for s in e.sequential.settings)
  boxed = "The answer is therefore \\boxed{\\frac{3\\sqrt{2}}{4} + 12\\pi}."
  assert len(boxed.encode()) <= e.max_answer_tokens  # even one token per byte fits


def test_quality_generation_and_evaluation_share_the_265_articles():
  from configs import entigraph_generate, entigraph_qa
  docs = entigraph_generate.get_config("quality").entigraph.documents
  assert tuple(entigraph_qa.get_config("quality").qa.questions) == tuple(docs)
  assert [d.rsplit(".", 1)[1] for d in docs] == ["train", "dev"]
  demo = entigraph_qa.get_config()
  assert demo.entigraph.documents.startswith("data/entigraph_demo")  # the default is unchanged
