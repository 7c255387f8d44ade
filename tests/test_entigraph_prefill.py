"""Reply prefill: the model continues a started reply (local, completion and HTTP paths)."""

import json
import os

import pytest

from configs import entigraph_generate
from sbp_jax.entigraph import prompts
from sbp_jax.entigraph import synth_corpus
from sbp_jax.entigraph.backends import (GenerationError, GenParams, HTTPGenerator,
                                        LocalGenerator, generate)
from sbp_jax.entigraph.parsing import parse_entities
from sbp_jax.generate.chat import ChatTemplate, render_chat
from sbp_jax.generate.sampler import Completion
from sbp_jax.generate.serve import OpenAIServer
from sbp_jax.generate.text_codec import ByteTokenizer
from tests.test_entigraph_http import sampler  # noqa: F401  (the one-layer byte-model fixture)

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nDefault system.<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
PREFIX = '{"entities": ["'


class FakeSampler:
  """Records the prompts it sees; extraction prompts get the rest of a JSON object
  (valid only after PREFIX), relation prompts a line of prose."""

  def __init__(self):
    self.tokenizer, self.prompts = ByteTokenizer(), []

  def generate_text(self, texts, sp, seed=0):
    self.prompts += texts
    return [Completion([], 'Ilse Varn", "Oskar Bay"], "summary": "A caravan trip."}'
                       if "single JSON object" in t else "Ilse Varn leads the caravan.", "stop_token")
            for t in texts]


def test_local_chat_prefill_follows_the_assistant_header():
  fake = FakeSampler()
  gen = LocalGenerator(fake, render=ChatTemplate(CHATML).render)
  out = generate(gen, "chat", [prompts.entity_extraction("Salt Road", "Ilse Varn ...")],
                 GenParams(), PREFIX)
  # The template opens the assistant turn and the prefix follows it, unclosed.
  assert fake.prompts[0].endswith("Ilse Varn ...<|im_end|>\n<|im_start|>assistant\n" + PREFIX)
  assert fake.prompts[0].count("<|im_start|>assistant") == 1
  assert out[0].startswith(PREFIX)  # the caller gets the whole reply, prefix included
  res = parse_entities(out[0])
  assert res.ok and res.method == "clean" and res.entities == ["Ilse Varn", "Oskar Bay"]
  # The default ChatML renderer too; no prefix leaves the prompt and reply alone.
  gen = LocalGenerator(fake)
  conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "{"}]
  gen.chat([conv], GenParams())
  assert fake.prompts[-1] == render_chat(conv[:1]) + "{"
  assert generate(gen, "chat", [("s", "u")], GenParams()) == ["Ilse Varn leads the caravan."]
  assert fake.prompts[-1] == render_chat([{"role": "system", "content": "s"},
                                          {"role": "user", "content": "u"}])
  # Completion style: the plain prompt, then the prefix; one prefix per item works too.
  generate(gen, "completion", [("s", "u"), ("s", "v")], GenParams(), ["A", "B"])
  assert fake.prompts[-2:] == [prompts.plain_prompt("s", "u") + "A",
                               prompts.plain_prompt("s", "v") + "B"]
  with pytest.raises(ValueError, match="2 reply prefixes for 1 prompts"):
    generate(gen, "chat", [("s", "u")], GenParams(), ["A", "B"])


def test_pipeline_parses_prefix_plus_reply_and_prefills_relation_leads(tmp_path):
  path = tmp_path / "docs.jsonl"
  path.write_text(json.dumps(dict(id="d0", title="The Salt Road",
                                  text="Ilse Varn led a caravan from Oskar Bay.")) + "\n")
  c = entigraph_generate.get_config()
  c.tokenizer.kind = "bytes"
  e = c.entigraph
  e.documents, e.progress, e.num_triples = str(path), False, 0
  work = str(tmp_path / "run")
  fake = FakeSampler()
  m = synth_corpus.run_pipeline(c, work, generator=LocalGenerator(fake))
  assert m["extraction"]["parsed"] == 0  # the reply alone is not JSON
  fails = [json.loads(l) for l in open(os.path.join(work, "failures.jsonl"))]
  assert fails[0]["raw"].startswith('Ilse Varn", ')

  e.extraction_reply_prefix, e.relation_prefill_lead = PREFIX, True
  work = str(tmp_path / "run2")
  m = synth_corpus.run_pipeline(c, work, generator=LocalGenerator(fake))
  x = m["extraction"]
  assert (x["parsed"], x["calls"], m["pairs"]) == (1, 1, 1)
  rows = [json.loads(l) for l in open(os.path.join(work, "shards", "doc-00000.jsonl"))]
  pair = next(r for r in rows if r["kind"] == "pair")
  head = 'In "The Salt Road", Ilse Varn'
  assert fake.prompts[-1].endswith("<|im_start|>assistant\n" + head)
  assert pair["text"] == head + "Ilse Varn leads the caravan."
  assert pair["num_tokens"] == len(pair["text"].encode())  # tokens count the whole text




def test_http_prefill_needs_the_endpoint_to_support_it(sampler):
  import threading  # pylint: disable=g-import-not-at-top
  server = OpenAIServer(sampler, port=0, model_name="tiny")
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    items, greedy = [("Be brief.", "Hi")], GenParams(temperature=0.0, max_tokens=6)
    with pytest.raises(GenerationError, match="extraction_reply_prefix.*generator.http.prefill"):
      generate(HTTPGenerator(server.url, "tiny"), "chat", items, greedy, "{")
    with pytest.raises(ValueError, match="prefill='yes'"):
      HTTPGenerator(server.url, "tiny", prefill="yes")
    # Our `serve` continues the trailing message (vLLM's field), as the local backend does.
    gen = HTTPGenerator(server.url, "tiny", prefill="continue_final_message")
    got = generate(gen, "chat", items, greedy, "{")
    assert got == generate(LocalGenerator(sampler), "chat", items, greedy, "{")
    assert got[0].startswith("{")
  finally:
    server.shutdown()
    server.server_close()
