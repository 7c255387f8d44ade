"""A latent-concept corpus: the testbed of thesis 3.6, generated reproducibly.

Thesis 3.6 reads SBP as posterior inference over latent concepts: documents are
drawn as c ~ P(c), d ~ P(d | c), and the synthesizer p(d2 | d1) must infer c
from d1 to write another document of it. Here that model is explicit:

  concept   an invented name, a kind, and one value for each of ATTRIBUTES
  document  the name, its kind, and a random subset of the concept's facts, each
            rendered with a random template, in random order

Splits: D_pretrain has a few documents per concept, the oracle many, and the
held-out split new documents of the same concepts, so what a model can learn
about held-out text is the concepts' facts. The control corpus has no shared
concepts (every document describes its own concept), where pairing finds no
related documents and SBP should not help.

Every record is {"id", "text", "concept"}; "concept" is for analysis (pair
purity), never read by training.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from sbp_jax.fileio import write_jsonl

ATTRIBUTES = {
    "color": ("red", "blue", "green", "yellow", "black", "white", "purple", "orange", "grey",
              "brown", "pink", "silver"),
    "home": ("desert", "forest", "river", "mountain", "island", "swamp", "city", "cave",
             "valley", "coast", "meadow", "glacier"),
    "food": ("apples", "fish", "seeds", "honey", "grass", "bread", "cheese", "beans", "rice",
             "nuts", "mushrooms", "berries"),
    "sound": ("whistle", "roar", "hum", "click", "song", "growl", "chirp", "bark", "hiss",
              "drum", "bell", "sigh"),
    "friend": ("otter", "crow", "horse", "spider", "whale", "goat", "rabbit", "eagle",
               "turtle", "wolf", "bee", "snake"),
    "season": ("spring", "summer", "autumn", "winter", "dawn", "dusk", "night", "noon",
               "harvest", "rain", "storm", "frost"),
}
KINDS = ("bird", "beast", "fish", "insect", "plant", "spirit", "machine", "giant")
TEMPLATES = (
    "The {attr} of {name} is {value}.",
    "{name} has {value} as its {attr}.",
    "People say the {attr} of {name} is {value}.",
    "As for its {attr}, {name} is known for {value}.",
    "Ask anyone about the {attr} of {name}: it is {value}.",
    "Everyone knows that the {attr} of {name} is {value}.",
)
SYLLABLES = ("ka", "lo", "mi", "zu", "ren", "tor", "vi", "sha", "pel", "dro", "nu", "qui",
             "bar", "fen", "gal", "hok", "jin", "wex", "yor", "tam")


def make_concepts(n: int, seed: int) -> list[dict]:
  """n concepts with distinct three-syllable names and one value per attribute."""
  rng = np.random.default_rng([seed, 0xC0C])
  names: set[str] = set()
  out = []
  while len(out) < n:
    name = "".join(rng.choice(SYLLABLES, 3)).capitalize()
    if name in names:
      continue
    names.add(name)
    facts = {a: str(rng.choice(v)) for a, v in ATTRIBUTES.items()}
    out.append(dict(name=name, kind=str(rng.choice(KINDS)), facts=facts))
  return out


def render(concept: dict, rng: np.random.Generator, facts_per_doc: int) -> str:
  """One document: the concept's name and kind, then facts_per_doc of its facts."""
  attrs = list(concept["facts"])
  chosen = rng.choice(len(attrs), size=min(facts_per_doc, len(attrs)), replace=False)
  parts = [f"{concept['name']} is a {concept['kind']}."]
  for i in chosen:
    a = attrs[i]
    t = TEMPLATES[rng.integers(len(TEMPLATES))]
    parts.append(t.format(attr=a, name=concept["name"], value=concept["facts"][a]))
  return " ".join(parts)


def documents(concepts: Sequence[dict], per_concept: int, seed: int, split: str,
              facts_per_doc: int, offset: int = 0) -> list[dict]:
  """per_concept documents of each concept, shuffled; ids are unique across splits."""
  rng = np.random.default_rng([seed, 0xD0C, sum(map(ord, split))])
  rows = [dict(id=f"{split}-{ci + offset}-{j}", concept=ci + offset,
               text=render(c, rng, facts_per_doc))
          for ci, c in enumerate(concepts) for j in range(per_concept)]
  return [rows[i] for i in rng.permutation(len(rows))]


def write_corpus(out_dir: str, *, num_concepts: int, pretrain_per_concept: int,
                 oracle_per_concept: int, heldout_per_concept: int, facts_per_doc: int,
                 seed: int, shared_concepts: bool = True) -> dict:
  """Writes d_pretrain.jsonl, oracle.jsonl and heldout.jsonl; returns their paths.

  shared_concepts=False is the control: each document gets a concept of its own
  (fresh names and facts), so documents share templates but no facts.
  """
  counts = dict(d_pretrain=pretrain_per_concept, oracle=oracle_per_concept,
                heldout=heldout_per_concept)
  paths = {}
  if shared_concepts:
    concepts = make_concepts(num_concepts, seed)
    for split, k in counts.items():
      paths[split] = os.path.join(out_dir, f"{split}.jsonl")
      write_jsonl(paths[split], documents(concepts, k, seed, split, facts_per_doc))
  else:
    total = num_concepts * sum(counts.values())
    concepts = make_concepts(total, seed)
    start = 0
    for split, k in counts.items():
      n = num_concepts * k
      paths[split] = os.path.join(out_dir, f"{split}.jsonl")
      write_jsonl(paths[split], documents(concepts[start:start + n], 1, seed, split,
                                          facts_per_doc, offset=start))
      start += n
  return paths


def statements(text: str) -> list[tuple[str, str, str]]:
  """(name, attribute, value) of every sentence that states one fact in a template's words."""
  import re  # pylint: disable=g-import-not-at-top
  out = []
  for sent in re.split(r"(?<=\.)\s+", text):
    attrs = [a for a in ATTRIBUTES if re.search(rf"\b{a}\b", sent)]
    if len(attrs) != 1:
      continue
    vals = [v for v in ATTRIBUTES[attrs[0]] if re.search(rf"\b{v}\b", sent)]
    names = re.findall(r"\b[A-Z][a-z]+\b", sent)
    names = [n for n in names if n not in ("The", "People", "As", "Ask", "Everyone")]
    if len(vals) == 1 and names:
      out.append((names[0], attrs[0], vals[0]))
  return out


def fact_accuracy(texts: Sequence[str], seed_concepts: Sequence[dict]) -> dict:
  """How faithful synthetic documents are to their seed's concept: the share that name it,
  and the share of stated facts that are the seed concept's (chance: 1/12)."""
  named = stated = right = 0
  for t, c in zip(texts, seed_concepts):
    named += t.split(" is a ")[0].strip() == c["name"]
    for _, a, v in statements(t):
      stated += 1
      right += c["facts"][a] == v
  return dict(docs=len(texts), names_seed=named / max(len(texts), 1),
              facts_stated=stated, facts_right=right / max(stated, 1))
