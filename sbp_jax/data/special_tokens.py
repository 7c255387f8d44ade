"""Special tokens every sbp_jax tokenizer reserves (names are the contract
between the data layer, the sampler, SBP pairs and budget forcing)."""

DOC_SEP = "<|doc_sep|>"          # between d1 and d2 in synthesizer-tuning pairs
THINK_START = "<|think_start|>"  # opens the thinking phase (budget forcing)
THINK_END = "<|think_end|>"      # closes it; the sampler forces or suppresses this
ANSWER = "<|answer|>"            # opens the answer phase
IM_START = "<|im_start|>"        # chat turns (ChatML), for s1 SFT and chat models
IM_END = "<|im_end|>"

REQUIRED = (DOC_SEP, THINK_START, THINK_END, ANSWER, IM_START, IM_END)

# Id conventions of our SentencePiece models (seqio's defaults).
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
