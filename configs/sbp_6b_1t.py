"""SBP at the thesis' 1T-scale with the 6B model (Table 3.2, third block): 1T
training tokens, 50B unique real tokens, 250B synthetic tokens (the 6B model
uses about twice the 3B model's best synthetic share, B.1.2). Oracle: the 482B
unique tokens. Override the data paths as in configs/sbp_3b_200b.py.
"""

from configs.sbp_3b_200b import scale
from configs.sbp_common import get_sbp_config


def get_config():
  c = get_sbp_config("6b")
  return scale(c, budget=1e12, unique=50e9, synthetic=250e9)
