"""Small Hugging Face tokenizers and checkpoints that the tests write themselves.

`llama3_tokenizer` and `qwen_tokenizer` train byte-level BPE models with the
`tokenizers` library, shaped like the originals: Llama 3's split regex, a bos
post-processor, <|begin_of_text|>/<|end_of_text|>/<|eot_id|> and reserved
special tokens, no pad token; Qwen's split regex, NFC normalisation, ChatML
markers, no bos, pad <|endoftext|>. `tiny_checkpoint` saves a random
transformers model of a family with safetensors beside such a tokenizer.
"""

import json
import os

from tests.seqio_helpers import make_docs

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
                r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
              r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = make_docs(300, 11) + [
    "def add(a, b):\n    return a + b  # sum\n", "for i in range(10):\n\tprint(f'{i:03d}')\n",
    "Grüße aus Zürich, naïve café, 東京 und 😀 emoji.", "x = {'k': [1, 2, 3]}; y = x['k'][0]\n",
]

# Mixed English, code, Unicode and chat-formatted text for the parity tests.
PROBES = [
    "The quick brown fox jumps over the lazy dog. It's 2024!",
    "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass",
    "Grüße, naïve café — 東京タワー 😀🚀 ﬁ ligature, e\u0301 combining, Ω≈ç√",
    "  leading spaces,\ttabs\r\nand CRLF   trailing   ",
    "123456789 3.14159 -42 1e-9 0x1F",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\nIt is 4.<|im_end|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "!!! !? ! 0 00 000",
]


def _train(specials, split, normalizer, vocab_size):
  from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
  tok = Tokenizer(models.BPE(byte_fallback=False))
  if normalizer:
    tok.normalizer = normalizers.NFC()
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  tok.train_from_iterator(CORPUS, trainer)
  from tokenizers import AddedToken
  tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
  return tok


def _write(tok, out, config):
  os.makedirs(out, exist_ok=True)
  tok.save(os.path.join(out, "tokenizer.json"))
  with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", **config}, f)
  return str(out)


def llama3_tokenizer(out, vocab_size: int = 400, eos: bool = True) -> str:
  from tokenizers import processors
  specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
              "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
  tok = _train(specials, LLAMA3_SPLIT, False, vocab_size)
  bos = tok.token_to_id("<|begin_of_text|>")
  tok.post_processor = processors.TemplateProcessing(
      single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
      special_tokens=[("<|begin_of_text|>", bos)])
  conf = {"bos_token": "<|begin_of_text|>", "model_max_length": 8192}
  if eos:
    conf["eos_token"] = "<|end_of_text|>"
  return _write(tok, out, conf)


def qwen_tokenizer(out, vocab_size: int = 400, embedding: bool = False) -> str:
  """embedding=True: as Qwen3-Embedding, the post-processor appends <|endoftext|>."""
  from tokenizers import processors
  specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
  tok = _train(specials, QWEN_SPLIT, True, vocab_size)
  if embedding:
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", pair="$A <|endoftext|> $B <|endoftext|>",
        special_tokens=[("<|endoftext|>", eot)])
  return _write(tok, out, {"bos_token": None, "eos_token": "<|im_end|>",
                           "pad_token": "<|endoftext|>", "model_max_length": 32768})


def tiny_checkpoint(out, family: str, tokenizer_dir: str, seed: int = 0, **over) -> str:
  """A random transformers `family` ("llama" | "qwen3") model saved as safetensors in
  `out`, with the tokenizer files of `tokenizer_dir` and ids in config.json."""
  import shutil
  import torch
  import transformers
  from tokenizers import Tokenizer
  tok = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
  with open(os.path.join(tokenizer_dir, "tokenizer_config.json")) as f:
    tconf = json.load(f)
  ids = {f"{k}_token_id": tok.token_to_id(tconf[f"{k}_token"])
         for k in ("bos", "eos", "pad") if tconf.get(f"{k}_token")}
  kw = dict(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
            max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0,
            tie_word_embeddings=family == "qwen3", **ids)
  kw.update(over)
  cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
         "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM)}[family]
  torch.manual_seed(seed)
  model = cls[1](cls[0](**kw)).eval()
  model.save_pretrained(out, safe_serialization=True)
  for name in os.listdir(tokenizer_dir):
    shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(out, name))
  return str(out)
