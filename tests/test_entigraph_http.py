"""The HTTP generator backend against our `serve` endpoint on loopback (tiny model)."""

import http.server
import json
import threading
import time

import jax
import jax.numpy as jnp
import pytest

from sbp_jax.entigraph.backends import GenerationError, GenParams, HTTPGenerator, LocalGenerator
from sbp_jax.generate.chat import render_chat
from sbp_jax.generate.sampler import Sampler, SamplingParams
from sbp_jax.generate.serve import OpenAIServer
from sbp_jax.generate.text_codec import ByteTokenizer
from sbp_jax.model import ModelConfig, Transformer


@pytest.fixture(scope="module")
def sampler():
  cfg = ModelConfig(vocab_size=272, num_layers=1, d_model=32, d_ffn=64, num_heads=4,
                    num_kv_heads=2, dtype="float32", remat_policy="none", scan_layers=False)
  params = jax.jit(Transformer(cfg).init)(jax.random.key(1), jnp.zeros((1, 8), jnp.int32))
  return Sampler(cfg, params["params"], tokenizer=ByteTokenizer())


class Recording:
  """Wraps the sampler to record how many prompts each batched call held."""

  def __init__(self, s):
    self.s, self.tokenizer, self.batches = s, s.tokenizer, []

  def generate_text(self, prompts, sp, seed=0):
    self.batches.append(len(prompts))
    return self.s.generate_text(prompts, sp, seed=seed)


def _serve(server):
  t = threading.Thread(target=server.serve_forever, daemon=True)
  t.start()
  return server


def test_http_backend_matches_local_sampler(sampler):
  rec = Recording(sampler)
  server = _serve(OpenAIServer(rec, port=0, model_name="tiny", api_key="k3y", max_batch=8,
                               batch_wait_s=0.2))
  try:
    assert server.server_address[0] == "127.0.0.1"
    gen = HTTPGenerator(server.url, "tiny", api_key="k3y", max_concurrency=4)
    greedy = GenParams(temperature=0.0, max_tokens=6)
    prompts = ["The mill", "A river runs", "Glass apples", "Noor"]
    got = gen.complete(prompts, greedy)
    local = LocalGenerator(sampler, batch_size=1).complete(prompts, greedy)
    assert got == local and all(isinstance(t, str) for t in got)
    assert max(rec.batches) > 1  # concurrent requests were batched onto one sampler call
    assert gen.stats["requests"] == 4 and gen.stats["completion_tokens"] > 0
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    chat = gen.chat([conv], greedy)[0]
    want = sampler.generate_text([render_chat(conv)], SamplingParams(
        temperature=0.0, max_new_tokens=6, stop_strings=("<|im_end|>",)))[0].text
    assert chat == want
    assert LocalGenerator(sampler, batch_size=1).chat([conv], greedy) == [want]
    # Seeded sampling is reproducible through the server.
    hot = GenParams(temperature=1.0, max_tokens=6, seed=5)
    assert gen.complete(["The mill"], hot) == gen.complete(["The mill"], hot)
    # Wrong key: 401 is not retried; a bad request names the problem.
    with pytest.raises(GenerationError, match="HTTP 401"):
      HTTPGenerator(server.url, "tiny", api_key="nope", max_retries=3).complete(["x"], greedy)
    with pytest.raises(GenerationError, match="HTTP 400.*temperature"):
      gen.complete(["x"], GenParams(temperature=-1.0))
  finally:
    server.shutdown()
    server.server_close()


class Flaky(http.server.BaseHTTPRequestHandler):
  """Fails the first `fails` requests with 503, then answers."""
  count = 0
  fails = 2

  def log_message(self, *a):
    pass

  def do_POST(self):  # pylint: disable=invalid-name
    type(self).count += 1
    self.rfile.read(int(self.headers["Content-Length"]))
    if type(self).count <= type(self).fails:
      self.send_response(503)
      self.send_header("Retry-After", "0")
      self.send_header("Content-Length", "4")
      self.end_headers()
      self.wfile.write(b"busy")
      return
    body = json.dumps({"choices": [{"text": "ok"}]}).encode()
    self.send_response(200)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)


def test_retries_backoff_and_rate_limit():
  server = _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky))
  url = f"http://127.0.0.1:{server.server_address[1]}/v1"
  try:
    gen = HTTPGenerator(url, "m", max_retries=3, backoff_s=0.01, max_concurrency=1)
    assert gen.complete(["a"], GenParams()) == ["ok"]
    assert gen.stats["retries"] == 2 and Flaky.count == 3
    Flaky.count, Flaky.fails = 0, 10
    with pytest.raises(GenerationError, match="after 2 attempts.*503"):
      HTTPGenerator(url, "m", max_retries=1, backoff_s=0.01).complete(["a"], GenParams())
    Flaky.count, Flaky.fails = 0, 0
    gen = HTTPGenerator(url, "m", max_concurrency=4, requests_per_second=20)
    t0 = time.monotonic()
    assert gen.complete(["a"] * 8, GenParams()) == ["ok"] * 8
    assert time.monotonic() - t0 >= 7 / 20 - 0.02  # 8 starts, 1/20 s apart
  finally:
    server.shutdown()
    server.server_close()
  with pytest.raises(GenerationError, match="after 1 attempts"):  # nothing listens there now
    HTTPGenerator(url, "m", max_retries=0).complete(["a"], GenParams())


@pytest.mark.slow  # starts the real job (model from config) in a subprocess
def test_serve_job_from_config(tmp_path):
  import os
  import signal
  import subprocess
  import sys
  port = 18000 + os.getpid() % 1000
  env = {**os.environ, "SBP_TEST_KEY": "s3cret", "JAX_PLATFORMS": "cpu"}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.Popen(
      [sys.executable, "-m", "sbp_jax.main", "--config=configs/serve_tiny.py",
       f"--workdir={tmp_path}", f"--config.serve.port={port}",
       "--config.serve.api_key_env=SBP_TEST_KEY"], cwd=root, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    lines = [""]
    while "Serving" not in lines[-1]:
      lines.append(proc.stdout.readline())
      assert lines[-1] or proc.poll() is None, "serve job exited early:\n" + "".join(lines)
    gen = HTTPGenerator(f"http://127.0.0.1:{port}/v1", "sbp_jax", api_key="s3cret")
    out = gen.complete(["Hello", "World"], GenParams(temperature=0.0, max_tokens=4))
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
  finally:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
