"""SBP at the thesis' 1T-scale with the 3B model (Table 3.2, second block): 1T
training tokens, 50B unique real tokens, 125B synthetic tokens. Oracle: all
482B unique tokens of the pool (repeated about twice, thesis B.3.1).
Override the data paths as in configs/sbp_3b_200b.py.
"""

from configs.sbp_3b_200b import scale
from configs.sbp_common import get_sbp_config


def get_config():
  c = get_sbp_config("3b")
  return scale(c, budget=1e12, unique=50e9, synthetic=125e9)
