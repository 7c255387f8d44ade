"""Job `serve`: our sampler behind an OpenAI-compatible HTTP API.

Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models,
GET /health. Requests arriving together are batched onto the sampler by one
worker thread (the sampler is not thread-safe, and batching is what makes it
fast). Binds 127.0.0.1 unless `serve.host` says otherwise; when
`serve.api_key_env` names an environment variable, requests must carry
`Authorization: Bearer <its value>`. A chat request with
`"continue_final_message": true` continues its trailing assistant message
(prefill, as vLLM does) instead of opening a new turn.
"""

from __future__ import annotations

import concurrent.futures as cf
import http.server
import json
import logging
import os
import queue
import threading
import time
import uuid

from sbp_jax import fileio
from sbp_jax.generate.chat import CHAT_STOP, render_chat
from sbp_jax.generate.sampler import SamplingParams

log = logging.getLogger(__name__)

_FINISH = {"stop_token": "stop", "stop_string": "stop", "length": "length"}


class BadRequest(ValueError):
  pass


class BatchingEngine:
  """Groups queued prompts that share sampling settings into one sampler call."""

  def __init__(self, sampler, max_batch: int = 8, wait_s: float = 0.02):
    self.sampler, self.max_batch, self.wait_s = sampler, max_batch, wait_s
    self._q: queue.Queue = queue.Queue()
    self._seed = 0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True, name="sampler-batcher")
    self._thread.start()

  def submit(self, prompts: list[str], sp: SamplingParams, seed: int | None) -> cf.Future:
    """One future resolving to the completions of `prompts`, in order. Sampled
    requests with an explicit seed run alone, so the seed alone fixes their
    output (greedy ones need no seed and always share batches)."""
    fut: cf.Future = cf.Future()
    if sp.temperature == 0:
      seed = None
    self._q.put((prompts, sp, seed, fut))
    return fut

  def close(self):
    self._stop.set()
    self._q.put(None)
    self._thread.join(timeout=5)

  def _loop(self):
    pending = []
    while not self._stop.is_set():
      item = pending.pop(0) if pending else self._q.get()
      if item is None:
        break
      group = [item]
      n = len(item[0])
      deadline = time.monotonic() + self.wait_s
      while item[2] is None and n < self.max_batch:
        try:
          nxt = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
          break
        if nxt is None:
          self._stop.set()
          break
        if nxt[2] is None and nxt[1] == item[1] and n + len(nxt[0]) <= self.max_batch:
          group.append(nxt)
          n += len(nxt[0])
        else:
          pending.append(nxt)
      self._run(group)

  def _run(self, group):
    prompts = [p for g in group for p in g[0]]
    seed = group[0][2]
    if seed is None:
      seed, self._seed = self._seed, self._seed + 1
    try:
      outs = self.sampler.generate_text(prompts, group[0][1], seed=int(seed))
    except Exception as e:  # pylint: disable=broad-except
      for g in group:
        g[3].set_exception(e)
      return
    i = 0
    for g in group:
      g[3].set_result(outs[i:i + len(g[0])])
      i += len(g[0])


def _sampling(body: dict, defaults: dict, extra_stop=()) -> SamplingParams:
  stop = body.get("stop") or ()
  if isinstance(stop, str):
    stop = (stop,)
  if not all(isinstance(s, str) for s in stop):
    raise BadRequest("'stop' must be a string or a list of strings.")
  try:
    return SamplingParams(
        temperature=float(body.get("temperature", defaults["temperature"])),
        top_p=float(body.get("top_p", defaults["top_p"])),
        top_k=int(body.get("top_k", defaults["top_k"])),
        max_new_tokens=int(body.get("max_tokens", defaults["max_tokens"])),
        stop_strings=tuple(stop) + tuple(extra_stop))
  except (TypeError, ValueError) as e:
    raise BadRequest(str(e)) from None


def _count_prompt(tok, prompts) -> int:
  return sum(len(tok.encode(p)) for p in prompts) if tok is not None else 0


class OpenAIHandler(http.server.BaseHTTPRequestHandler):
  server_version = "sbp_jax-serve/0.1"
  protocol_version = "HTTP/1.1"

  def log_message(self, fmt, *args):  # route through logging, not stderr
    log.debug("%s - " + fmt, self.address_string(), *args)

  def _send(self, code: int, obj: dict):
    data = json.dumps(obj).encode("utf-8")
    self.send_response(code)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def _error(self, code: int, message: str, kind: str = "invalid_request_error"):
    self._send(code, {"error": {"message": message, "type": kind, "code": code}})

  def _authorized(self) -> bool:
    key = self.server.api_key
    if not key:
      return True
    if self.headers.get("Authorization", "") == f"Bearer {key}":
      return True
    self._error(401, "missing or wrong API key (send 'Authorization: Bearer <key>').",
                "authentication_error")
    return False

  def do_GET(self):  # pylint: disable=invalid-name
    if self.path in ("/health", "/v1/health"):
      return self._send(200, {"status": "ok"})
    if not self._authorized():
      return None
    if self.path == "/v1/models":
      return self._send(200, {"object": "list", "data": [
          {"id": self.server.model_name, "object": "model", "owned_by": "sbp_jax"}]})
    return self._error(404, f"no endpoint GET {self.path}")

  def do_POST(self):  # pylint: disable=invalid-name
    if not self._authorized():
      return None
    try:
      n = int(self.headers.get("Content-Length", "0"))
      body = json.loads(self.rfile.read(n) or b"{}")
      if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object.")
      if self.path == "/v1/completions":
        return self._send(200, self._completions(body))
      if self.path == "/v1/chat/completions":
        return self._send(200, self._chat(body))
      return self._error(404, f"no endpoint POST {self.path}")
    except json.JSONDecodeError as e:
      return self._error(400, f"request body is not valid JSON: {e.msg}")
    except BadRequest as e:
      return self._error(400, str(e))
    except Exception as e:  # pylint: disable=broad-except
      log.exception("request failed")
      return self._error(500, f"{type(e).__name__}: {e}", "server_error")

  def _generate(self, prompts, body, extra_stop=()):
    n = int(body.get("n", 1))
    if not 1 <= n <= 64:
      raise BadRequest("'n' must be between 1 and 64.")
    sp = _sampling(body, self.server.defaults, extra_stop)
    seed = body.get("seed")
    expanded = [p for p in prompts for _ in range(n)]
    outs = self.server.engine.submit(expanded, sp, seed).result()
    usage = dict(prompt_tokens=_count_prompt(self.server.tokenizer, prompts),
                 completion_tokens=sum(len(o.tokens) for o in outs))
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return outs, usage

  def _envelope(self, kind, choices, usage):
    return {"id": f"{kind}-{uuid.uuid4().hex[:12]}", "object": kind, "created": int(time.time()),
            "model": self.server.model_name, "choices": choices, "usage": usage}

  def _completions(self, body):
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
      raise BadRequest("'prompt' must be a non-empty string or a list of non-empty strings.")
    outs, usage = self._generate(prompts, body)
    choices = [{"index": i, "text": o.text, "logprobs": None,
                "finish_reason": _FINISH[o.finish_reason]} for i, o in enumerate(outs)]
    return self._envelope("text_completion", choices, usage)

  def _chat(self, body):
    messages = body.get("messages")
    if not isinstance(messages, list):
      raise BadRequest("'messages' must be a list of {'role', 'content'} objects.")
    try:
      if body.get("continue_final_message") and messages and isinstance(messages[-1], dict) \
          and messages[-1].get("role") == "assistant":
        # vLLM's prefill extension: the reply continues the trailing assistant message.
        prompt = render_chat(messages[:-1]) + str(messages[-1].get("content") or "")
      else:
        prompt = render_chat(messages)
    except ValueError as e:
      raise BadRequest(str(e)) from None
    outs, usage = self._generate([prompt], body, CHAT_STOP)
    choices = [{"index": i, "message": {"role": "assistant", "content": o.text},
                "finish_reason": _FINISH[o.finish_reason]} for i, o in enumerate(outs)]
    return self._envelope("chat.completion", choices, usage)


class OpenAIServer(http.server.ThreadingHTTPServer):
  daemon_threads = True

  def __init__(self, sampler, host: str = "127.0.0.1", port: int = 0, model_name: str = "sbp_jax",
               api_key: str = "", max_batch: int = 8, batch_wait_s: float = 0.02,
               defaults: dict | None = None):
    super().__init__((host, port), OpenAIHandler)
    self.engine = BatchingEngine(sampler, max_batch, batch_wait_s)
    self.tokenizer = getattr(sampler, "tokenizer", None)
    self.model_name, self.api_key = model_name, api_key
    self.defaults = {**dict(temperature=1.0, top_p=1.0, top_k=0, max_tokens=16), **(defaults or {})}

  @property
  def url(self) -> str:
    host, port = self.server_address[:2]
    return f"http://{host}:{port}/v1"

  def server_close(self):
    super().server_close()
    self.engine.close()


def run_serve(config, workdir: str) -> None:
  """Serves until interrupted (Ctrl-C or SIGTERM)."""
  import signal  # pylint: disable=g-import-not-at-top
  from sbp_jax.generate.generate_job import make_sampler  # pylint: disable=g-import-not-at-top
  s = config.serve
  key = ""
  if s.get("api_key_env"):
    key = os.environ.get(s.api_key_env, "")
    if not key:
      raise ValueError(f"serve.api_key_env={s.api_key_env!r} but that environment variable is "
                       "unset or empty; export it or set serve.api_key_env=''.")
  if s.host not in ("127.0.0.1", "localhost", "::1") and not key:
    log.warning("serve.host=%s exposes the model beyond this machine without an API key.", s.host)
  sampler = make_sampler(config)
  g = config.generate
  server = OpenAIServer(sampler, s.host, int(s.port), s.model_name, key, int(s.max_batch),
                        float(s.batch_wait_s),
                        dict(temperature=float(g.temperature), top_p=float(g.top_p),
                             top_k=int(g.top_k), max_tokens=int(g.max_new_tokens)))
  fileio.write_json(os.path.join(workdir, "server.json"), {"url": server.url, "model": s.model_name})
  signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
  print(f"Serving {s.model_name} at {server.url} (completions, chat/completions)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
