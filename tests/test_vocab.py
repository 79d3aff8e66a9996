"""Vocab: id dtype choice, encode/decode round trips, unknown characters, array validation."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charlm.data.vocab import Vocab
from charlm.errors import CorpusError, UsageError

MIXED = "héllo 世界 🙂\x00\r\nnext line\r\n\ufeff末尾"


def vocab_of(text: str) -> Vocab:
    return Vocab(sorted({ord(ch) for ch in text}))


def test_round_trip_cjk_emoji_nul_crlf():
    vocab = vocab_of(MIXED)
    ids, skipped = vocab.encode(MIXED)
    assert skipped == 0
    assert len(ids) == len(MIXED)                # code points, not bytes or UTF-16 units
    assert vocab.decode(ids) == MIXED
    assert vocab.index("\x00") is not None and vocab.index("\r") is not None


def test_ids_are_indices_into_the_sorted_code_points():
    vocab = Vocab([ord("a"), ord("b"), 0x1F642])
    ids, _ = vocab.encode("b🙂a")
    assert ids.tolist() == [1, 2, 0]
    assert vocab.char(2) == "🙂"
    assert vocab.index("b") == 1
    assert vocab.index("z") is None


@pytest.mark.parametrize(("size", "dtype"), [(1, np.uint8), (256, np.uint8), (257, np.uint16),
                                             (65536, np.uint16), (65537, np.uint32)])
def test_id_dtype_is_the_smallest_that_fits(size, dtype):
    cps = [cp for cp in range(size + 2048) if not 0xD800 <= cp <= 0xDFFF][:size]
    vocab = Vocab(cps)
    assert vocab.size == size
    assert vocab.id_dtype is dtype
    ids, _ = vocab.encode(chr(cps[-1]))
    assert ids.dtype == dtype
    assert int(ids[0]) == size - 1             # the largest id survives the dtype


def test_more_than_65536_code_points_gives_uint32_without_wrapping():
    cps = [cp for cp in range(0x4E00, 0x4E00 + 80_000) if not 0xD800 <= cp <= 0xDFFF]
    text = "".join(map(chr, reversed(cps)))
    vocab = vocab_of(text)
    assert vocab.size == len(cps) > 65536
    ids, _ = vocab.encode(text)
    assert ids.dtype == np.uint32
    np.testing.assert_array_equal(ids, np.arange(len(cps) - 1, -1, -1))
    assert vocab.decode(ids) == text


def test_unknown_characters_are_named_with_code_point_and_first_position():
    vocab = vocab_of("abc ")
    with pytest.raises(CorpusError) as info:
        vocab.encode("abc Ω abc é Ω")
    message = str(info.value)
    assert "'Ω' U+03A9 first at index 4" in message
    assert "'é' U+00E9 first at index 10" in message
    assert "--unknown skip" in message
    assert "3 character(s)" in message and "2 distinct" in message
    assert "\n" not in message


def test_unknown_error_names_at_most_five_characters():
    vocab = vocab_of("a")
    with pytest.raises(CorpusError) as info:
        vocab.encode("a" + "".join(chr(0x3B1 + k) for k in range(8)))
    message = str(info.value)
    assert "U+03B5" in message and "U+03B6" not in message
    assert ", ..." in message


def test_unknown_skip_drops_and_counts():
    vocab = vocab_of("abc")
    ids, skipped = vocab.encode("aΩbΩ\x00c", unknown="skip")
    assert skipped == 3
    assert vocab.decode(ids) == "abc"


def test_lone_surrogate_is_an_unknown_character_not_a_crash():
    vocab = vocab_of("ab")
    with pytest.raises(CorpusError) as info:
        vocab.encode("a\udc80b")
    assert "U+DC80 first at index 1" in str(info.value)
    ids, skipped = vocab.encode("a\udc80b", unknown="skip")
    assert (vocab.decode(ids), skipped) == ("ab", 1)


def test_bad_unknown_mode_is_a_usage_error():
    with pytest.raises(UsageError, match="--unknown"):
        vocab_of("ab").encode("a", unknown="ignore")


def test_empty_text_encodes_to_nothing():
    ids, skipped = vocab_of("ab").encode("")
    assert ids.shape == (0,) and skipped == 0


def test_decode_rejects_out_of_range_ids():
    vocab = vocab_of("ab")
    with pytest.raises(ValueError):
        vocab.decode([0, 2])
    with pytest.raises(ValueError):
        vocab.decode(np.array([-1]))


def test_array_round_trip_keeps_nul_and_astral():
    vocab = vocab_of("\x00a\ufeff🙂")
    arr = vocab.to_array()
    assert arr.dtype == np.int32
    assert arr.tolist() == [0, ord("a"), 0xFEFF, 0x1F642]
    assert Vocab.from_array(arr) == vocab
    assert not vocab.codepoints.flags.writeable


def test_a_frequency_ranked_vocabulary_keeps_every_character_and_its_text():
    text = "bccaaa\nccc"
    vocab = vocab_of(text)
    ids, _ = vocab.encode(text)
    ranked, new_id = vocab.by_frequency(ids)
    assert [ranked.char(i) for i in range(ranked.size)] == ["c", "a", "\n", "b"]  # ties: by cp
    assert ranked.decode(new_id[ids]) == text
    assert ranked.encode(text)[0].tolist() == new_id[ids].tolist()
    assert ranked.index("b") == 3 and ranked.index("z") is None
    assert Vocab.from_array(ranked.to_array()) == ranked != vocab   # order is part of it


@pytest.mark.parametrize(("arr", "reason"), [
    (np.array([97, 98, 97], np.int32), "twice"),
    (np.array([97, 97, 98], np.int32), "twice"),
    (np.array([97, 0xD800], np.int32), "surrogate"),
    (np.array([97, 0x110000], np.int64), "Unicode range"),
    (np.array([-1, 97], np.int32), "Unicode range"),
    (np.array([2**40 + 97], np.uint64), "Unicode range"),     # would wrap to 97 as int32
    (np.array([], np.int32), "empty"),
    (np.array([[97, 98]], np.int32), "1-D"),
    (np.array([97.0, 98.0]), "integers"),
])
def test_from_array_rejects_invalid_vocabularies(arr, reason):
    with pytest.raises(ValueError, match=reason):
        Vocab.from_array(arr)


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1))
def test_any_text_round_trips_through_its_own_vocab(text):
    vocab = vocab_of(text)
    ids, skipped = vocab.encode(text)
    assert skipped == 0
    assert int(ids.max()) < vocab.size
    assert vocab.decode(ids) == text
