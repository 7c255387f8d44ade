"""The README's main command on CPU.

For now: pretrain the tiny model on embedded text and report held-out
perplexity. (It grows into the whole SBP pipeline as the SBP issues land.)
"""

from configs import tiny_train


def get_config():
  return tiny_train.get_config()
