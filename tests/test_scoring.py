"""labkit.scoring: every score in the book is pinned here against its plausible broken variant
(substring or prefix matching, the first number in a chain of thought, case-sensitive or partial-word
matching, ...) — a test that a broken implementation passes is a defect."""
import pytest

import labkit.scoring as scoring
from labkit.labworld.general import ICL_PHRASINGS
from labkit.scoring import (
    contains_answer,
    exact_match,
    exact_match_scores,
    icl_prompt,
    parse_number,
    tone_reply_score,
)


def test_exact_match_strips_whitespace_only():
    assert exact_match([" 42 ", "a cat"], ["42", "a cats"]) == 0.5
    assert exact_match_scores([" 42 ", "a cat", "42."], ["42", "a cats", "42"]) == [1.0, 0.0, 0.0]


def test_completion_scores_are_exact_matches_per_row(monkeypatch):
    rows = [{"prompt": "p1", "answer": "12%"}, {"prompt": "p2", "answer": "12%"},
            {"prompt": "p3", "answer": "Dr Vale"}, {"prompt": "p4", "answer": "Dr Vale"}]
    outputs = [" 12% ", "12%.", "Dr Vale", "Dr Vale and Dr Kim"]
    monkeypatch.setattr(scoring, "generate", lambda model, tok, prompts, **kwargs: outputs[:len(prompts)])
    assert scoring.completion_scores(None, None, rows) == [1.0, 0.0, 1.0, 0.0]
    # broken variants: a substring or prefix match would count "12%." and "Dr Vale and Dr Kim"
    assert [float(r["answer"] in o) for o, r in zip(outputs, rows)] != [1.0, 0.0, 1.0, 0.0]
    assert [float(o.strip().startswith(r["answer"])) for o, r in zip(outputs, rows)] != [1.0, 0.0, 1.0, 0.0]


def test_icl_prompt_layout():
    item = {"task": "plural", "input": "fox", "output": "foxes",
            "demos": [["cat", "cats"], ["bus", "buses"], ["owl", "owls"]]}
    instruction = ICL_PHRASINGS["plural"][0]
    assert icl_prompt(item, 0) == f"{instruction}\nfox ->"
    assert icl_prompt(item, 2) == f"{instruction}\ncat -> cats\nbus -> buses\nfox ->"
    assert icl_prompt(item, 2, phrasing=1).startswith(ICL_PHRASINGS["plural"][1] + "\n")
    assert icl_prompt(item, 1, sep=" = ") == f"{instruction}\ncat = cats\nfox ="
    assert icl_prompt(item, 3).count("\n") == 4  # instruction + 3 demos + query: shots are not off by one


@pytest.mark.parametrize("text, mode, expected", [
    (" 1446\n", "direct", 1446),
    ("1446", "direct", 1446),
    (" x 12", "direct", None),           # must start with the number
    ("Units: 7 + 9 = 16, write 6 carry 1.\nThe answer is 1446.", "cot", 1446),  # not the first number
    ("Units: 7 + 9 = 16, write 6 carry 1.", "cot", None),  # no final answer: not read from the working
    ("The answer is 99. The answer is 100.", "cot", 99),
])
def test_parse_number(text, mode, expected):
    assert parse_number(text, mode) == expected


def test_parse_number_is_not_the_first_number_in_the_working():
    text = "Units: 7 + 9 = 16.\nThe answer is 1446."
    first_number = int(next(t for t in text.replace(".", " ").split() if t.isdigit()))
    assert parse_number(text, "cot") == 1446 != first_number


@pytest.mark.parametrize("output, answer, expected", [
    ("The answer is 18.", "18", True),
    ("The answer is 118.", "18", False),   # the docstring's own example
    ("18", "18", True),
    ("1800 apples", "18", False),
    ("It is Lumen, of course", "lumen", True),  # case-insensitive
    ("Lumenville", "Lumen", False),
    ("cost 3.5 units", "3.5", True),           # regex characters in the answer are literal
    ("cost 345 units", "3.5", False),
])
def test_contains_answer_is_a_whole_word_match(output, answer, expected):
    assert contains_answer(output, answer) is expected
    if answer in output and not expected:  # a plain substring test would get these wrong
        assert (answer.lower() in output.lower()) != expected


def test_tone_score_needs_the_style_and_this_message():
    row = {"prompt": "Message: Hello, my pig from Sun Tools is broken.\nReply:",
           "pirate": " Arr, matey! Yer pig is broken? Shiver me timbers! I will fix it for you, savvy?",
           "support": " Thank you for telling me! I am sorry to hear that your pig is broken. I will fix "
                      "it for you right away. Is there anything else I can help you with?"}
    assert tone_reply_score(row["pirate"], row, "pirate") == 1.0
    assert tone_reply_score(row["support"], row, "support") == 1.0
    assert tone_reply_score(" Arr, matey! Have ye seen my ship??", row, "pirate") == 0.0  # off topic
    assert tone_reply_score(" Your pig is broken. I will fix it.", row, "support") == 0.0  # no tone
    assert tone_reply_score(row["support"], row, "pirate") == 0.0  # the other style


# ---- one exact-match comparison; Unicode case folding ---------------------------------------------
# ---- scoring: one exact-match comparison --------------------------------------------------------
def test_exact_match_refuses_lists_that_do_not_pair():
    assert exact_match_scores([" Ann ", "Bo"], ["Ann", "Bob"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="3 outputs for 1 answers"):
        exact_match(["a", "b", "c"], ["a"])  # zip would have scored 1.0
    with pytest.raises(ValueError, match="no outputs"):
        exact_match([], [])


@pytest.mark.parametrize("output, answer, expected", [
    ("I live in İzmir.", "izmir", True),       # Unicode case folding, not str.lower()
    ("STRASSE 5", "straße", True),
    ("café au lait", "cafe", False),           # accents still count
    ("It was 118 km.", "18", False),           # whole word
    ("The answer is 18.", "18", True),
])
def test_contains_answer_folds_case_as_unicode_does(output, answer, expected):
    assert contains_answer(output, answer) is expected


def test_chrf_scores_give_partial_credit_per_item_and_match_sacrebleu():
    import sacrebleu

    refs = ["zomiva pete sukami vabuxe zomi", "miru kaka kayo vavate lotepe"]
    outs = [" zomiva pete sukami vabuxe zomi\n", "miru kaka kayo vavate lotepa"]
    scores = scoring.chrf_scores(outs, refs)
    assert scores[0] == 100.0                            # surrounding whitespace is not an error
    assert 50.0 < scores[1] < 100.0  # one wrong letter: partial credit, not 0 as under exact match
    assert scores[1] == sacrebleu.sentence_chrf(outs[1], [refs[1]]).score  # sacrebleu's own number, 0-100
    assert scoring.chrf_scores(["qqq xxx"], ["miru kaka"]) == [0.0]       # nothing in common
    # per item, in item order: swapping the outputs swaps the scores (not one corpus number repeated)
    assert scoring.chrf_scores(outs[::-1], refs) != scores
    with pytest.raises(ValueError, match="2 outputs for 1 answers"):
        scoring.chrf_scores(outs, refs[:1])
