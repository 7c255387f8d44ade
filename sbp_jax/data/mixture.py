"""Mixtures of real and synthetic data under a token budget.

The thesis' rule (section 3.5.1): synthetic documents are never repeated; real
documents may be. `plan_mixture` turns a budget into token shares and epoch
counts under that rule; `register_mixture` builds a seqio Mixture whose
never-repeated tasks are read exactly once (no .repeat()). The Mixture samples
with stop_on_empty_dataset=True, so when a never-repeated task runs out the
whole stream ENDS (it does not fall back to repeating real data): the iterator
raises DataExhausted and the trainer saves a checkpoint and stops.

seqio rates weigh examples, the plan weighs tokens; `example_rates` converts
token shares to example rates with each task's mean example length.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class MixturePlan:
  token_budget: float
  real_tokens: float        # real tokens seen over the run
  synthetic_tokens: float   # synthetic tokens seen (each seen once)
  real_rate: float          # share of the budget's tokens
  synthetic_rate: float
  real_epochs: float        # passes over the unique real tokens
  synthetic_epochs: float   # 1 (or 0 without synthetic data)


def plan_mixture(token_budget: float, real_unique_tokens: float,
                 synthetic_tokens: float) -> MixturePlan:
  """All synthetic tokens once; the rest of the budget from real data, repeated.

  200B budget, 10B real, 75B synthetic -> real 125B seen (12.5 epochs, rate
  0.625), synthetic once (rate 0.375)."""
  if token_budget <= 0 or real_unique_tokens <= 0 or synthetic_tokens < 0:
    raise ValueError(f"plan_mixture: need token_budget > 0, real_unique_tokens > 0 and "
                     f"synthetic_tokens >= 0; got {token_budget}, {real_unique_tokens}, "
                     f"{synthetic_tokens}.")
  if synthetic_tokens > token_budget:
    raise ValueError(f"plan_mixture: {synthetic_tokens:.4g} synthetic tokens exceed the "
                     f"{token_budget:.4g}-token budget; synthetic documents are never repeated, "
                     f"so use at most the budget's worth of them (or raise the budget).")
  real = token_budget - synthetic_tokens
  return MixturePlan(token_budget=token_budget, real_tokens=real, synthetic_tokens=synthetic_tokens,
                     real_rate=real / token_budget, synthetic_rate=synthetic_tokens / token_budget,
                     real_epochs=real / real_unique_tokens,
                     synthetic_epochs=1.0 if synthetic_tokens else 0.0)


def example_rates(token_shares: Mapping[str, float],
                  tokens_per_example: Mapping[str, float]) -> dict[str, float]:
  """seqio example rates (summing to 1) giving each task its token share."""
  for name, share in token_shares.items():
    if share < 0 or tokens_per_example[name] <= 0:
      raise ValueError(f"Task {name!r}: weight {share} and mean example length "
                       f"{tokens_per_example[name]} must be positive.")
  raw = {k: w / tokens_per_example[k] for k, w in token_shares.items()}
  total = sum(raw.values())
  return {k: v / total for k, v in raw.items()}


@functools.cache
def _no_repeat_mixture_cls():
  from sbp_jax.data.sources import seqio

  class NoRepeatMixture(seqio.Mixture):
    """A seqio Mixture whose `never_repeat` tasks are read for one epoch only."""

    def __init__(self, name, tasks, never_repeat: Sequence[str] = (), **kwargs):
      super().__init__(name, tasks, **kwargs)
      self.never_repeat = frozenset(never_repeat)
      unknown = self.never_repeat - {t.name for t in self.tasks}
      if unknown:
        raise ValueError(f"Mixture {name!r}: never_repeat names unknown tasks {sorted(unknown)}.")

    def get_task_dataset(self, task, output_feature_keys, sequence_length=None, split="train",
                         use_cached=False, shuffle=True, seed=None, shard_info=None,
                         num_epochs=None, trim_output_features=True, try_in_mem_cache=True):
      if task.name in self.never_repeat:
        num_epochs = 1
      return super().get_task_dataset(task, output_feature_keys, sequence_length, split,
                                      use_cached, shuffle, seed, shard_info, num_epochs,
                                      trim_output_features, try_in_mem_cache)

  return NoRepeatMixture


def register_mixture(name: str, tasks_and_rates: Sequence[tuple], never_repeat: Sequence[str] = ()):
  """Registers (replacing any of that name) a seqio Mixture; tasks named in
  `never_repeat` are never repeated, the others repeat indefinitely."""
  from sbp_jax.data.sources import seqio
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, list(tasks_and_rates),
                                   mixture_cls=_no_repeat_mixture_cls(),
                                   never_repeat=tuple(never_repeat))
