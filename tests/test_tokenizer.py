import json

import numpy as np
import pytest

from textgen.data.tokenizer import CharTokenizer, WordTokenizer, tokenizer_from_dict
from textgen.errors import TextgenError

MIXED = "床前明月光，疑是地上霜。\nA cat 🐈 sat; the 猫 sat too! 👩‍👩‍👧\n"


@pytest.mark.parametrize("cls", [CharTokenizer, WordTokenizer])
def test_round_trip_chinese_and_emoji(cls):
    tokenizer = cls.fit(MIXED)
    ids = tokenizer.encode(MIXED)
    assert ids.dtype == np.int32
    assert tokenizer.decode(ids) == MIXED


def test_char_tokens_are_code_points():
    tokenizer = CharTokenizer.fit("床前明月光🐈")
    assert tokenizer.vocabulary_size == 6
    assert len(tokenizer.encode("光🐈")) == 2


def test_char_fast_path_matches_dict_path(text):
    long_text = text * 5
    tokenizer = CharTokenizer.fit(long_text)
    fast = tokenizer.encode(long_text)
    slow = np.array([tokenizer._ids[c] for c in long_text], dtype=np.int32)
    assert len(long_text) > 10_000 and np.array_equal(fast, slow)


def test_word_tokens_keep_whitespace_and_punctuation():
    assert WordTokenizer.split("Hi,  there!\n\nBye.") == ["Hi", ",", "  ", "there", "!", "\n\n", "Bye", "."]


def test_unknown_char_fails_naming_it():
    tokenizer = CharTokenizer.fit("abc")
    with pytest.raises(TextgenError, match="characters not in the model's vocabulary: 'x', 'z'"):
        tokenizer.encode("axbz")


def test_unknown_word_maps_to_unk():
    tokenizer = WordTokenizer.fit("the cat sat")
    ids = tokenizer.encode("the dog sat")
    assert tokenizer.decode(ids) == "the <unk> sat"
    assert tokenizer.unknown_tokens("the dog sat") == ["dog"]


def test_max_vocab_and_min_count_cap_the_vocabulary():
    text = "a a a a b b b c c d"
    capped = WordTokenizer.fit(text, max_vocab=3)  # <unk>, then the two most frequent: " " and "a"
    assert capped.vocabulary == ["<unk>", " ", "a"]
    frequent = WordTokenizer.fit(text, min_count=3)
    assert set(frequent.vocabulary) == {"<unk>", " ", "a", "b"}
    char = CharTokenizer.fit("aaab", min_count=2)
    assert char.vocabulary == ["<unk>", "a"] and char.decode(char.encode("ab")) == "a<unk>"


def test_lowercase():
    tokenizer = WordTokenizer.fit("The Cat", lowercase=True)
    assert "The" not in tokenizer.vocabulary
    assert tokenizer.decode(tokenizer.encode("THE CAT")) == "the cat"


@pytest.mark.parametrize("cls", [CharTokenizer, WordTokenizer])
def test_json_round_trip(cls):
    tokenizer = cls.fit(MIXED, lowercase=True)
    again = tokenizer_from_dict(json.loads(json.dumps(tokenizer.to_dict())))
    assert type(again) is cls
    assert again.vocabulary == tokenizer.vocabulary and again.lowercase
    assert again.encode(MIXED.lower()).tolist() == tokenizer.encode(MIXED.lower()).tolist()


@pytest.mark.parametrize(
    "payload, message",
    [
        (["not", "a", "dict"], "kind None"),
        ({"kind": "byte", "vocabulary": ["a"]}, "kind 'byte'"),
        ({"kind": "char", "vocabulary": []}, "no valid vocabulary"),
        ({"kind": "char", "vocabulary": ["a", 7]}, "no valid vocabulary"),
        ({"kind": "char", "vocabulary": ["a", "a"]}, "duplicate"),
        ({"kind": "char", "vocabulary": ["a", "bc"]}, "not single characters"),
        ({"kind": "word", "vocabulary": ["<unk>", "a"], "unknown_token": 3}, "malformed unknown_token"),
        ({"kind": "word", "vocabulary": ["a", "<unk>"], "unknown_token": "<unk>"}, "entry 0"),
    ],
)
def test_bad_tokenizer_json_is_refused(payload, message):
    with pytest.raises(TextgenError, match=message):
        tokenizer_from_dict(payload)
