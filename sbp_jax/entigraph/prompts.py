"""Prompts for EntiGraph, the rephrase baseline and closed-book QA.

Written for this project; they follow the structure of thesis Appendix A.6 / A.7.1
(what each step asks for and in which format), not its wording. Each builder
returns a (system, user) pair; `plain_prompt` flattens one for base models.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

ENTITY_SYSTEM = """You read an article and map out what it is about.
Do two things:
1. Write a short summary of the whole article (its main events, claims and themes).
2. List every important named thing in it. Include:
   - people and groups, by the names or descriptions the article uses;
   - places, real or imagined, concrete or abstract;
   - objects, tools and artefacts the text refers to;
   - ideas, concepts and themes the article relies on.
Be exhaustive: more entities is better than fewer, as long as each one matters to the text.
Name things, not the layout: no section headings, no title, no version numbers or dates, and
spell each entity exactly as the article does.

Reply with a single JSON object and nothing else, shaped like this:
{"summary": "<short summary>", "entities": ["<entity 1>", "<entity 2>", "..."]}"""

# One system prompt for pairs and triples, and the entities after the article: every
# relation prompt about a document then starts with the same tokens, which the sampler
# prefills once per batch (sampler.share_plan); likewise the rephrase style comes last.
# One short passage per prompt: SmolLM2-135M given a layout of one section per entity
# (the earlier prompt) wandered off the article; asked for one passage, led by the first
# entity, at temperature 0.3, its texts in the cpu study held 48 of the 119 niche
# questions' facts against 22 (docs/usage.md, EntiGraph).
RELATION_SYSTEM = ("You are a careful technical writer. Use only what the article the user gives "
                   "you says, and keep its exact option names.")

REPHRASE_SYSTEM = ("The user gives you an article (its title, possibly its author or year, and "
                   "its text) and a style. Rewrite the whole article in that style. Every fact "
                   "must survive the rewrite, and so must the title, the author and any dates. "
                   "Reply with the rewrite only.")

REPHRASE_STYLES = {
    "easy": "for a small child: only short, plain sentences and the most common words",
    "medium": "in fluent, varied, encyclopedic English, the way a good reference article reads",
    "hard": ("in dense, formal, highly technical prose with rare words and long sentences, the "
             "way a specialist writes for other specialists"),
}


def _article(title: str, text: str, author: str = "") -> str:
  by = f"\nAuthor: {author}" if author else ""
  return f"Title: {title}{by}\n\nArticle:\n{text}"


def entity_extraction(title: str, text: str, author: str = "") -> tuple[str, str]:
  return ENTITY_SYSTEM, _article(title, text, author)


def relation(title: str, text: str, entities: Sequence[str], author: str = "") -> tuple[str, str]:
  """A pair or a triple: one passage on what each entity is in the article and how they
  relate (the thesis's relation step, A.6)."""
  if len(entities) not in (2, 3):
    raise ValueError(f"relation prompts take 2 or 3 entities, got {len(entities)}.")
  both = ", ".join(entities[:-1]) + " and " + entities[-1]
  return RELATION_SYSTEM, (f"{_article(title, text, author)}\n\nWrite a short passage about "
                           f'{both} in "{title}". Say what each one does, in the article\'s '
                           "words, and how they differ or work together.")


def relation_lead(title: str, entities: Sequence[str]) -> str:
  """The start of a relation reply, prefilled for small models so that the passage names
  the article and begins with its first entity."""
  return f'In "{title}", {entities[0]}'


def rephrase(style: str, title: str, text: str, author: str = "") -> tuple[str, str]:
  if style not in REPHRASE_STYLES:
    raise ValueError(f"rephrase style {style!r}; choose from {sorted(REPHRASE_STYLES)}.")
  return REPHRASE_SYSTEM, f"{_article(title, text, author)}\n\nStyle: {REPHRASE_STYLES[style]}."


def plain_prompt(system: str, user: str) -> str:
  """One prompt for a base (non-chat) model: instructions, input, then an open answer."""
  return f"{system}\n\n{user}\n\n### Answer\n"


# -- closed-book QA (format of A.7.1; examples our own, about public-domain books) ---------

QA_SHOTS = (
    dict(title="Frankenstein", author="Mary Shelley", year="1818",
         question="who brings the creature to life?",
         choices=("Robert Walton", "Victor Frankenstein", "Henry Clerval", "Elizabeth Lavenza"),
         answer="B",
         reasoning="The novel's student of natural philosophy, Victor Frankenstein, builds and "
                   "animates the creature. Walton is the explorer who hears the story, Clerval is "
                   "Victor's friend and Elizabeth his adopted sister and later wife."),
    dict(title="The Time Machine", author="H. G. Wells", year="1895",
         question="what are the two descendant peoples the traveller meets in the far future?",
         choices=("Houyhnhnms and Yahoos", "Lilliputians and Blefuscudians",
                  "Eloi and Morlocks", "Martians and Selenites"),
         answer="C",
         reasoning="The traveller finds the gentle Eloi above ground and the Morlocks below. "
                   "Houyhnhnms, Yahoos and Lilliputians come from Gulliver's Travels, and the "
                   "Martians and Selenites from other Wells stories."),
    dict(title="Pride and Prejudice", author="Jane Austen", year="1813",
         question="which estate belongs to Mr. Darcy?",
         choices=("Pemberley", "Thornfield Hall", "Netherfield Park", "Mansfield Park"),
         answer="A",
         reasoning="Darcy's estate in Derbyshire is Pemberley. Netherfield is the house Bingley "
                   "rents, Thornfield belongs to Jane Eyre and Mansfield Park is another Austen "
                   "novel."),
    dict(title="Dracula", author="Bram Stoker", year="1897",
         question="which town on the English coast does the count's ship reach?",
         choices=("Dover", "Brighton", "Plymouth", "Whitby"),
         answer="D",
         reasoning="The ship carrying the count runs aground at Whitby in Yorkshire. Dover, "
                   "Brighton and Plymouth play no such part in the novel."),
    dict(title="The Adventures of Tom Sawyer", author="Mark Twain", year="1876",
         question="what chore does Tom trick other boys into doing for him?",
         choices=("Whitewashing a fence", "Chopping firewood", "Weeding a garden",
                  "Painting a boat"),
         answer="A",
         reasoning="Aunt Polly sets Tom to whitewash the fence, and he convinces his friends the "
                   "job is a privilege worth paying for. The other chores do not appear."),
)

LETTERS = "ABCD"


def qa_question(title: str, author: str, question: str, year: str = "") -> str:
  """The question made answerable without the article (A.7.1 / 2.3): it names
  the title and the author."""
  when = f" ({year})" if year else ""
  q = question.strip()
  q = q[0].lower() + q[1:] if q[:1].isupper() and not q[:2].isupper() else q
  return f'About "{title}" by {author}{when}: {q} Exactly one choice is right.'


def qa_block(n: int, question: str, choices: Sequence[str], reasoning: bool = True) -> str:
  opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
  head = "Reasoning and Answer" if reasoning else "Answer"
  return f"## Example {n}\n### Question\n{question}\n### Choices\n{opts}\n### {head}\n"


def qa_prompt(question: str, choices: Sequence[str], shots: int = 5, reasoning: bool = True
              ) -> str:
  """Few-shot prompt. With reasoning (chain of thought, the thesis's protocol) the model
  continues after 'Reasoning:' and should end with 'Answer: X.'; without, the examples
  show only 'Answer: X.' and the model continues after 'Answer:' (a reply of a few
  tokens, for runs that cannot afford a reasoning's worth of decoding)."""
  if not 0 <= shots <= len(QA_SHOTS):
    raise ValueError(f"qa.shots={shots}; at most {len(QA_SHOTS)} worked examples exist.")
  parts = []
  for i, s in enumerate(QA_SHOTS[:shots]):
    q = qa_question(s["title"], s["author"], s["question"], s["year"])
    why = f"Reasoning: {s['reasoning']} Only one choice fits.\n" if reasoning else ""
    parts.append(qa_block(i + 1, q, s["choices"], reasoning) +
                 f"{why}Answer: {s['answer']}.\n\n")
  parts.append(qa_block(shots + 1, question, choices, reasoning) +
               ("Reasoning:" if reasoning else "Answer:"))
  return "".join(parts)


def qa_loglik_prompt(question: str, shots: int = 0) -> str:
  """Prompt whose continuation is scored per choice (no reasoning, no letters)."""
  parts = []
  for s in QA_SHOTS[:shots]:
    q = qa_question(s["title"], s["author"], s["question"], s["year"])
    parts.append(f"Question: {q}\nAnswer: {s['choices'][LETTERS.index(s['answer'])]}\n\n")
  parts.append(f"Question: {question}\nAnswer:")
  return "".join(parts)


def fingerprint() -> str:
  """A short hash of every prompt above, rendered on a fixed probe. The EntiGraph jobs keep
  it in their run identity, so a workdir written with other wording is refused, not reused."""
  probe = [entity_extraction("T", "X", "A"), relation("T", "X", ["a", "b"], "A"),
           relation("T", "X", ["a", "b", "c"]), relation_lead("T", ["a"]),
           *[rephrase(s, "T", "X", "A") for s in sorted(REPHRASE_STYLES)],
           plain_prompt("S", "U"), qa_question("T", "A", "Q?", "1900"),
           *[qa_prompt("q", "abcd", len(QA_SHOTS), r) for r in (True, False)],
           qa_loglik_prompt("q", len(QA_SHOTS))]
  return hashlib.sha256(json.dumps(probe).encode()).hexdigest()[:16]
