"""Answer extraction / normalisation and majority voting for reasoning evals."""

import pytest

from sbp_jax.reasoning import answers

# (model answer, gold, correct?)
TABLE = [
    ("42", "42", True),
    ("The answer is 42.", "42", True),
    ("so we get 1,234 apples", "1234", True),
    ("1,234", "1,234", True),
    ("about 1234.0", "1,234", True),
    ("x = 0.50", "1/2", True),
    ("x = 0.5", "\\frac{1}{2}", True),
    ("\\boxed{\\frac{3}{4}}", "0.75", True),
    ("$\\boxed{-2}$ is it, not 5", "-2", True),
    ("first 7, then \\boxed{12} and later 3", "12", True),
    ("Final Answer: 17 and then 9 more", "17", True),
    ("Final Answer: 17 and then 9 more", "9", False),
    ("3 + 4 = 7 so 7", "7", True),
    ("3/4 of 12 is 9", "9", True),
    ("Final Answer: -3.5", "-7/2", True),
    ("no number here", "5", False),
    ("12.", "12", True),
    ("12", "13", False),
    ("Answer: (C)", "C", True),
    ("I think B is right", "B", True),
    ("**D**", "(D)", True),
    ("A looks wrong, so C", "C", True),
    ("Final Answer: A. Because C fails", "A", True),
    ("\\boxed{B}", "b", True),
    ("none of them", "A", False),
    ("Paris.", "paris", True),
]


@pytest.mark.parametrize("text,gold,ok", TABLE)
def test_extraction_table(text, gold, ok):
  assert answers.is_correct(text, gold) is ok


def test_kinds_and_normal_forms():
  assert answers.kind_of("B") == "choice" and answers.kind_of("(a)") == "choice"
  assert answers.kind_of("-1,000.25") == "numeric" and answers.kind_of("E") == "text"
  assert answers.extract("it is 2/4", "numeric") == "1/2"
  assert answers.extract("it is 1,000", "numeric") == answers.extract("1000.00", "numeric")
  assert answers.parse_number("1,23") is None  # not a thousands grouping


def test_majority_vote_ties_go_to_the_first_seen():
  assert answers.majority_vote(["3", "4", "4", "3"]) == "3"
  assert answers.majority_vote(["4", "3", "3", "4"]) == "4"
  assert answers.majority_vote([None, "5", None, "6", "6"]) == "6"
  assert answers.majority_vote([None, "9", "8"]) == "9"
  assert answers.majority_vote([None, None]) is None
  # Independent of hash order: the same answers in the same order, many times.
  votes = [str(i % 7) for i in range(70)]
  assert all(answers.majority_vote(votes) == "0" for _ in range(5))
  # Equal numbers in different forms vote together.
  texts = ["0.5", "1/2", "3", "\\frac{1}{2}", "3", "3"]
  assert answers.majority_vote([answers.extract(t, "numeric") for t in texts]) == "1/2"
