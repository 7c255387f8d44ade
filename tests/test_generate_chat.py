"""Chat templates rendered with jinja2, and the generation jobs' use of them."""

import json
import os

import ml_collections
import pytest

from sbp_jax.generate import chat

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nDefault system.<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def test_chatml_user_turn_and_system_prompt():
  t = chat.ChatTemplate(CHATML)
  assert t.user_prompt("Hi {there}") == ("<|im_start|>system\nDefault system.<|im_end|>\n"
                                         "<|im_start|>user\nHi {there}<|im_end|>\n"
                                         "<|im_start|>assistant\n")
  t = chat.ChatTemplate(CHATML, system="Be brief.")
  assert t.user_prompt("Hi").startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user")
  assert not t.render([{"role": "user", "content": "x"}], add_generation_prompt=False).endswith(
      "assistant\n")


def test_template_features_hf_templates_use():
  src = ("{{ bos_token }}{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}"
         "{{ raise_exception('bad role ' + m.role) }}{% endif %}"
         "{{ m.content | tojson }}{% if loop.index == 1 %}{% continue %}{% endif %}|"
         "{% endfor %}{{ eos_token }}")
  t = chat.ChatTemplate(src, bos_token="<s>", eos_token="</s>")
  msgs = [{"role": "user", "content": "é\"<"}, {"role": "assistant", "content": "b"}]
  assert t.render(msgs) == '<s>"é\\"<""b"|</s>'  # tojson neither escapes nor ASCII-fies
  with pytest.raises(Exception, match="bad role tool"):
    t.render([{"role": "tool", "content": "x"}])
  with pytest.raises(ValueError, match="message 0"):
    t.render([{"role": "user"}])
  with pytest.raises(ValueError, match="line 1"):
    chat.ChatTemplate("{% for %}")


def test_load_from_tokenizer_dir(tmp_path):
  d = tmp_path / "tok"
  d.mkdir()
  with pytest.raises(FileNotFoundError, match="chat_template"):
    chat.ChatTemplate.load(str(d))
  with open(d / "tokenizer_config.json", "w") as f:
    json.dump({"chat_template": "{{ bos_token }}{{ messages[0].content }}",
               "bos_token": {"content": "<B>"}}, f)
  assert chat.ChatTemplate.load(str(d)).user_prompt("q") == "<B>q"
  (d / "chat_template.jinja").write_text("[{{ messages[-1].content }}]")  # takes precedence
  assert chat.ChatTemplate.load(str(d)).user_prompt("q") == "[q]"


def test_prompt_formatter_from_config(tmp_path):
  file = tmp_path / "t.jinja"
  file.write_text(CHATML)
  c = ml_collections.ConfigDict(dict(
      tokenizer=dict(kind="hf", path=str(tmp_path / "missing")),
      generate=dict(chat=False, chat_template=str(file), system_prompt="S")))
  assert chat.prompt_formatter(c)("q") == "q"
  c.generate.chat = True
  assert chat.prompt_formatter(c)("q") == chat.ChatTemplate(CHATML, system="S").user_prompt("q")


def test_generate_job_samples_from_rendered_prompts(tmp_path):
  """generate.chat: the job's completion is the sampler's on the rendered prompt."""
  from configs import generate_tiny  # pylint: disable=g-import-not-at-top
  from sbp_jax.generate import generate_job  # pylint: disable=g-import-not-at-top
  c = generate_tiny.get_config()
  (tmp_path / "t.jinja").write_text(CHATML)
  c.generate.chat, c.generate.chat_template = True, str(tmp_path / "t.jinja")
  c.generate.temperature, c.generate.max_new_tokens = 0.0, 8
  c.generate.prompts = str(tmp_path / "p.jsonl")
  (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "Why?"}) + "\n")
  generate_job.run_generate(c, str(tmp_path / "out"))
  with open(os.path.join(tmp_path, "out", "outputs", "part-00000.jsonl")) as f:
    row = json.loads(f.readline())
  assert row["prompt"] == "Why?"  # the record keeps the raw prompt
  sampler, sp = generate_job.make_sampler(c), generate_job.sampling_params(c.generate)
  rendered = chat.ChatTemplate(CHATML).user_prompt("Why?")
  assert row["completion"] == sampler.generate_text([rendered], sp, seed=c.seed)[0].text
  assert row["completion"] != sampler.generate_text(["Why?"], sp, seed=c.seed)[0].text
