"""The thesis's pairing embedder: an imported Qwen3 checkpoint with its own tokenizer,
last-token pooled and L2-normalised as Qwen3-Embedding is, equals transformers."""

import ml_collections
import numpy as np
import pytest

from configs.base import get_base
from sbp_jax.convert.safetensors_import import import_hf
from sbp_jax.sbp.pairing.embed import make_embedder
from tests import hf_fixtures as hx

TEXTS = hx.PROBES + ["a", "cat " * 40, "Qwen3 pools the <|endoftext|> it appends."]


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
  d = tmp_path_factory.mktemp("qwen3")
  tok = hx.qwen_tokenizer(d / "tok", embedding=True)
  src = hx.tiny_checkpoint(d / "hf", "qwen3", tok, seed=3)
  import_hf(src, str(d / "import"), dtype="float32")
  return {"src": src, "import": str(d / "import")}


def _config(imp, max_len=0):
  c = get_base("tiny")
  c.model.dtype = "float32"
  c.tokenizer = ml_collections.ConfigDict(dict(kind="bytes", path=""))  # not the embedder's
  c.pair = ml_collections.ConfigDict(dict(embedder=dict(
      kind="lm", import_dir=imp, pooling="last", layer=-1, batch_size=4, max_len=max_len)))
  return c


def test_embeddings_equal_transformers_last_token_pooling(qwen3):
  import torch
  import transformers
  ours = make_embedder(_config(qwen3["import"])).embed(TEXTS)
  tok = transformers.AutoTokenizer.from_pretrained(qwen3["src"], padding_side="left")
  model = transformers.AutoModel.from_pretrained(qwen3["src"], dtype=torch.float32).eval()
  batch = tok(TEXTS, padding=True, return_tensors="pt")
  assert all(row[-1] == tok.convert_tokens_to_ids("<|endoftext|>") for row in batch["input_ids"])
  with torch.no_grad():
    hidden = model(**batch).last_hidden_state[:, -1]
  want = torch.nn.functional.normalize(hidden, p=2, dim=-1).numpy()
  diff = float(np.max(np.abs(ours - want)))
  print(f"Qwen3 last-token embedding max abs diff vs transformers: {diff:.2e}")
  assert diff < 1e-5
  assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_long_documents_are_cut_to_the_context_keeping_the_closing_token(qwen3):
  e = make_embedder(_config(qwen3["import"], max_len=16))
  ids = e.tokenizer.encode_for_model("cat " * 100, e.max_len)
  assert len(ids) == 16 and ids[-1] == e.tokenizer.token_to_id("<|endoftext|>")
  assert make_embedder(_config(qwen3["import"])).max_len == 256  # 0 = the model's context


def test_a_missing_import_dir_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="pair.embedder.import_dir"):
    make_embedder(_config(str(tmp_path)))
