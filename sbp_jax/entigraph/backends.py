"""Text generators behind one interface: our own sampler, or any OpenAI-compatible
HTTP endpoint (a hosted API, vLLM, or our `serve` job).

    gen = make_generator(config)
    texts = gen.complete(["prompt", ...], GenParams(max_tokens=256))
    texts = gen.chat([[{"role": "user", "content": "..."}], ...], GenParams())

Prefill: a conversation whose last message is an assistant turn asks the model to
continue that turn (the reply is the continuation only). Small chat models follow
a format far more reliably when their reply is already started, e.g. with '{"'.
LocalGenerator always can; an HTTP endpoint only where `prefill` names how.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from typing import Mapping, Protocol, Sequence

from sbp_jax.generate.chat import CHAT_STOP, render_chat

log = logging.getLogger(__name__)

Messages = Sequence[Mapping[str, str]]


@dataclasses.dataclass(frozen=True)
class GenParams:
  temperature: float = 1.0
  top_p: float = 1.0
  max_tokens: int = 256
  stop: tuple[str, ...] = ()
  seed: int = 0  # call-level seed; row i of a call gets its own stream


class Generator(Protocol):

  def complete(self, prompts: Sequence[str], params: GenParams) -> list[str]:
    ...

  def chat(self, conversations: Sequence[Messages], params: GenParams) -> list[str]:
    ...


class GenerationError(RuntimeError):
  pass


def split_prefill(messages: Messages) -> tuple[list, str]:
  """(messages before the reply, the reply's start): a trailing assistant message is
  the start of the reply the model should continue ("" when there is none)."""
  msgs = list(messages)
  if msgs and msgs[-1].get("role") == "assistant":
    return msgs[:-1], msgs[-1].get("content") or ""
  return msgs, ""


# -- local -------------------------------------------------------------------------------


class LocalGenerator:
  """Our Sampler (an sbp_jax or imported checkpoint), in batches of `batch_size`.
  Chat conversations are rendered with the ChatML template (or the model's own) and
  stop at its end token; a trailing assistant message is appended after the
  assistant header, so the model continues it (prefill)."""

  def __init__(self, sampler, batch_size: int = 8, top_k: int = 0, render=render_chat):
    self.sampler, self.batch_size, self.top_k = sampler, batch_size, top_k
    self.tokenizer = sampler.tokenizer
    self.render = render  # messages -> prompt text (a model's own chat template, if it has one)

  def complete(self, prompts: Sequence[str], params: GenParams) -> list[str]:
    from sbp_jax.generate.sampler import SamplingParams  # pylint: disable=g-import-not-at-top
    sp = SamplingParams(temperature=params.temperature, top_p=params.top_p, top_k=self.top_k,
                        max_new_tokens=params.max_tokens, stop_strings=tuple(params.stop))
    out = []
    for b in range(0, len(prompts), self.batch_size):
      chunk = list(prompts[b:b + self.batch_size])
      out += [c.text for c in self.sampler.generate_text(chunk, sp, seed=params.seed * 100003 + b)]
    return out

  def chat(self, conversations: Sequence[Messages], params: GenParams) -> list[str]:
    params = dataclasses.replace(params, stop=tuple(params.stop) + CHAT_STOP)
    prompts = []
    for m in conversations:
      msgs, start = split_prefill(m)
      # The template opens the assistant turn; rendering the partial reply as a
      # message would close it with an end-of-turn token instead.
      prompts.append(self.render(msgs) + start)
    return self.complete(prompts, params)


# -- HTTP --------------------------------------------------------------------------------


class RateLimiter:
  """At most `rate` request starts per second across threads (0 = unlimited)."""

  def __init__(self, rate: float):
    self.interval = 1.0 / rate if rate > 0 else 0.0
    self._next = 0.0
    self._lock = threading.Lock()

  def wait(self) -> None:
    if not self.interval:
      return
    with self._lock:
      now = time.monotonic()
      start = max(now, self._next)
      self._next = start + self.interval
    if start > now:
      time.sleep(start - now)


PREFILL_MODES = ("", "message", "continue_final_message")
# How an endpoint is called, not what it is asked: outside the jobs' run identities.
HTTP_CALL_SETTINGS = tuple(f"generator.http.{k}" for k in (
    "max_concurrency", "requests_per_second", "max_retries", "backoff_s", "max_backoff_s",
    "timeout_s"))
_RETRY_CODES = (408, 409, 429, 500, 502, 503, 504)



def _json_reply(url: str, body: bytes) -> dict:
  """An OpenAI-compatible reply as a dict; an HTML page, other non-JSON or an
  `{"error": ...}` body is a GenerationError naming the URL and what came back."""
  text = body.decode("utf-8", "replace")
  try:
    out = json.loads(text)
  except json.JSONDecodeError:
    raise GenerationError(f"POST {url} answered with non-JSON ({text[:200].strip()!r}); is "
                          "generator.http.base_url the API root (e.g. http://host:8000/v1)?"
                          ) from None
  if not isinstance(out, dict) or "error" in out or "choices" not in out:
    err = out.get("error") if isinstance(out, dict) else out
    raise GenerationError(f"POST {url} answered without choices: {str(err)[:300]}; check "
                          "generator.http.model and the server's log.")
  return out


class HTTPGenerator:
  """An OpenAI-compatible endpoint: POST {base_url}/completions and /chat/completions.

  One request per prompt, `max_concurrency` in flight, at most
  `requests_per_second` started; 429 / 5xx / connection errors are retried with
  exponential backoff and jitter (Retry-After is honoured), other errors fail
  at once with the server's message.

  prefill: how the server continues a trailing assistant message. "" (default:
  OpenAI's own API has no prefill and would answer after it as a new turn) refuses
  such conversations with an error; "message" sends it as is (servers that
  continue it, e.g. Anthropic-style APIs); "continue_final_message" also sends
  vLLM's continue_final_message / add_generation_prompt fields (vLLM, our `serve`).
  """

  def __init__(self, base_url: str, model: str, api_key: str = "", max_concurrency: int = 8,
               requests_per_second: float = 0.0, max_retries: int = 5, backoff_s: float = 1.0,
               max_backoff_s: float = 60.0, timeout_s: float = 300.0, seed: int = 0,
               send_seed: bool = True, prefill: str = ""):
    self.base_url = base_url.rstrip("/")
    self.model, self.api_key = model, api_key
    self.max_concurrency, self.max_retries = max(1, max_concurrency), max_retries
    self.backoff_s, self.max_backoff_s, self.timeout_s = backoff_s, max_backoff_s, timeout_s
    self.limiter = RateLimiter(requests_per_second)
    # Seeds make replies reproducible where servers honour them; our `serve`
    # runs a seeded sampled request alone, so send_seed=False batches better there.
    self.send_seed = send_seed
    if prefill not in PREFILL_MODES:
      raise ValueError(f"generator.http.prefill={prefill!r}; choose one of {PREFILL_MODES}.")
    self.prefill = prefill
    self._rng = random.Random(seed)
    self._lock = threading.Lock()
    self.stats = dict(requests=0, retries=0, prompt_tokens=0, completion_tokens=0)

  def _post(self, path: str, payload: dict) -> dict:
    data = json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if self.api_key:
      headers["Authorization"] = f"Bearer {self.api_key}"
    url = self.base_url + path
    for attempt in range(self.max_retries + 1):
      self.limiter.wait()
      wait = None
      try:
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
          out = _json_reply(url, resp.read())
        with self._lock:
          self.stats["requests"] += 1
          usage = out.get("usage") or {}
          self.stats["prompt_tokens"] += int(usage.get("prompt_tokens", 0) or 0)
          self.stats["completion_tokens"] += int(usage.get("completion_tokens", 0) or 0)
        return out
      except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace")[:500]
        if e.code not in _RETRY_CODES:
          raise GenerationError(f"POST {url} failed with HTTP {e.code}: {body}") from None
        err = f"HTTP {e.code}: {body}"
        ra = e.headers.get("Retry-After") if e.headers else None
        wait = float(ra) if ra and ra.replace(".", "", 1).isdigit() else None
      except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
        err = f"{type(e).__name__}: {e}"
      if attempt == self.max_retries:
        raise GenerationError(f"POST {url} failed after {attempt + 1} attempts; last error: "
                              f"{err}")
      with self._lock:
        self.stats["retries"] += 1
        jitter = 1.0 + self._rng.random()
      delay = wait if wait is not None else min(self.max_backoff_s,
                                                self.backoff_s * 2 ** attempt) * jitter
      log.warning("POST %s: %s; retry %d in %.1fs", url, err, attempt + 1, delay)
      time.sleep(delay)
    raise AssertionError("unreachable")

  def _payload(self, params: GenParams, i: int) -> dict:
    p = dict(model=self.model, max_tokens=params.max_tokens, temperature=params.temperature,
             top_p=params.top_p)
    if self.send_seed:
      p["seed"] = params.seed * 100003 + i
    if params.stop:
      p["stop"] = list(params.stop)
    return p

  def _map(self, fn, items) -> list:
    if len(items) <= 1 or self.max_concurrency == 1:
      return [fn(i, x) for i, x in enumerate(items)]
    with cf.ThreadPoolExecutor(min(self.max_concurrency, len(items))) as ex:
      return list(ex.map(fn, range(len(items)), items))

  def complete(self, prompts: Sequence[str], params: GenParams) -> list[str]:
    def one(i, prompt):
      out = self._post("/completions", {**self._payload(params, i), "prompt": prompt})
      return out["choices"][0]["text"]
    return self._map(one, list(prompts))

  def chat(self, conversations: Sequence[Messages], params: GenParams) -> list[str]:
    extra = {}
    if any(split_prefill(m)[1] for m in conversations):
      if not self.prefill:
        raise GenerationError(
            "a reply prefix (e.g. entigraph.extraction_reply_prefix) needs an endpoint that "
            "continues a trailing assistant message; set generator.http.prefill to 'message' or "
            "'continue_final_message' if yours does, or clear the prefix (OpenAI's API has "
            "no prefill).")
      if self.prefill == "continue_final_message":
        extra = dict(continue_final_message=True, add_generation_prompt=False)

    def one(i, messages):
      out = self._post("/chat/completions", {**self._payload(params, i), **extra,
                                             "messages": [dict(m) for m in messages]})
      return out["choices"][0]["message"]["content"] or ""
    return self._map(one, list(conversations))


# -- from a config -----------------------------------------------------------------------


def make_generator(config) -> Generator:
  """`config.generator.kind`: 'local' (config.generate / model / tokenizer pick
  the checkpoint) or 'http' (config.generator.http)."""
  g = config.generator
  if g.kind == "local":
    from sbp_jax.generate.generate_job import make_sampler  # pylint: disable=g-import-not-at-top
    render = render_chat
    if config.generate.get("chat", False):  # an imported chat model: its own template
      from sbp_jax.generate.chat import ChatTemplate  # pylint: disable=g-import-not-at-top
      render = ChatTemplate.load(config.generate.get("chat_template") or config.tokenizer.path,
                                 config.generate.get("system_prompt") or None).render
    return LocalGenerator(make_sampler(config), int(g.get("batch_size", 8)),
                          int(g.get("top_k", 0)), render)
  if g.kind == "http":
    h = g.http
    key = ""
    if h.get("api_key_env"):
      key = os.environ.get(h.api_key_env, "")
      if not key:
        raise ValueError(f"generator.http.api_key_env={h.api_key_env!r} is unset or empty; "
                         "export the key under that name (keys never go in configs).")
    if not h.get("base_url") or not h.get("model"):
      raise ValueError("generator.http needs base_url (e.g. http://127.0.0.1:8000/v1) and model.")
    return HTTPGenerator(h.base_url, h.model, key, int(h.max_concurrency),
                         float(h.requests_per_second), int(h.max_retries), float(h.backoff_s),
                         float(h.get("max_backoff_s", 60.0)), float(h.timeout_s), config.seed,
                         bool(h.get("send_seed", True)), str(h.get("prefill", "")))
  raise ValueError(f"generator.kind={g.kind!r}; choose 'local' or 'http'.")


def generate(gen: Generator, style: str, items: Sequence, params: GenParams,
             prefixes: Sequence[str] | str = "") -> list[str]:
  """items: (system, user) pairs. style 'chat' sends them as chat messages;
  'completion' renders one plain prompt (for base models without a chat turn).
  prefixes (one, or one per item): the start of each reply, prefilled; the
  returned texts include it, so they read as whole replies."""
  from sbp_jax.entigraph.prompts import plain_prompt  # pylint: disable=g-import-not-at-top
  pre = [prefixes] * len(items) if isinstance(prefixes, str) else list(prefixes)
  if len(pre) != len(items):
    raise ValueError(f"{len(pre)} reply prefixes for {len(items)} prompts.")
  if style == "chat":
    out = gen.chat([[{"role": "system", "content": s}, {"role": "user", "content": u}] +
                    ([{"role": "assistant", "content": p}] if p else [])
                    for (s, u), p in zip(items, pre)], params)
  elif style == "completion":
    out = gen.complete([plain_prompt(s, u) + p for (s, u), p in zip(items, pre)], params)
  else:
    raise ValueError(f"generator.style={style!r}; choose 'chat' or 'completion'.")
  return [p + t for p, t in zip(pre, out)]
