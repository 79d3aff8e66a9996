"""Reading corpora (reliability.md catalog E): encodings, BOMs, odd files, streaming, splits."""

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm.data import text as data
from charlm.data.vocab import Vocab
from charlm.errors import CorpusError, UsageError

RICH = "héllo 世界 🙂\x00\r\nline two\rthree\n\ufeffend €"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Id cache files go under tmp_path, never into the real ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def text_of(corpus: data.Corpus) -> str:
    return corpus.vocab.decode(corpus.ids)


def whole_decode_ids(text: str) -> tuple[Vocab, np.ndarray]:
    vocab = Vocab(sorted({ord(ch) for ch in text}))
    return vocab, vocab.encode(text)[0]


def test_single_file_round_trip_keeps_crlf_nul_and_astral(tmp_path):
    path = write(tmp_path / "c.txt", RICH)
    corpus = data.read_corpus([path])
    assert text_of(corpus) == RICH                 # CR LF and lone CR kept; mid-file U+FEFF kept
    assert corpus.ids.dtype == corpus.vocab.id_dtype == np.uint8
    assert corpus.fingerprint == {"chars": len(RICH), "files": 1,
                                  "sha256": hashlib.sha256(RICH.encode()).hexdigest()}
    assert any("looks binary" in w for w in corpus.warnings)   # the NUL is read, with a warning


def test_a_plain_str_path_is_one_file_not_a_list_of_letters(tmp_path):
    path = write(tmp_path / "c.txt", "abab")
    assert text_of(data.read_corpus(str(path))) == "abab"


def test_several_files_concatenate_in_the_given_order(tmp_path):
    first = write(tmp_path / "z.txt", "zz\n")
    second = write(tmp_path / "a.txt", "ab")
    corpus = data.read_corpus([first, second])
    assert text_of(corpus) == "zz\nab"             # given order, no separator
    assert corpus.fingerprint["files"] == 2
    assert corpus.fingerprint["sha256"] == hashlib.sha256(b"zz\nab").hexdigest()


def test_directory_is_read_in_sorted_path_order_skipping_hidden_and_binary(tmp_path):
    root = tmp_path / "corpus"
    write(root / "b.txt", "B")
    write(root / "a.txt", "A")
    write(root / "a" / "x.txt", "X")               # ("a", "x.txt") sorts before ("a.txt",)
    write(root / "sub" / "c.txt", "C")
    write(root / ".hidden.txt", "H")
    write(root / ".git" / "config", "G")
    write(root / "image.bin", b"\x89PNG\x00\x00\x01")
    corpus = data.read_corpus([root])
    assert text_of(corpus) == "XABC"
    assert corpus.fingerprint["files"] == 4
    assert any("image.bin" in w and "binary" in w for w in corpus.warnings)


def test_directory_skips_non_utf8_files_unless_replacing(tmp_path):
    root = tmp_path / "corpus"
    write(root / "good.txt", "ok")
    write(root / "latin1.txt", "café".encode("latin-1"))
    strict = data.read_corpus([root])
    assert text_of(strict) == "ok"
    assert any("latin1.txt" in w and "--encoding-errors replace" in w for w in strict.warnings)
    assert text_of(data.read_corpus([root], encoding_errors="replace")) == "okcaf\ufffd"


def test_directory_without_text_files_is_refused(tmp_path):
    write(tmp_path / "d" / "x.bin", b"\x00\x01")
    with pytest.raises(CorpusError, match="no readable text files"):
        data.read_corpus([tmp_path / "d"])


@pytest.mark.parametrize("chunk", range(1, 18))
def test_chunk_boundaries_give_the_same_ids_as_one_decode(tmp_path, monkeypatch, chunk):
    text = "\ufeff" + RICH * 3                     # BOM, 2-, 3- and 4-byte characters, CR LF
    path = write(tmp_path / "c.txt", text)
    vocab, expected = whole_decode_ids(text[1:])
    monkeypatch.setattr(data, "CHUNK_BYTES", chunk)
    corpus = data.read_corpus([path])
    assert corpus.vocab == vocab
    np.testing.assert_array_equal(corpus.ids, expected)


@settings(max_examples=75, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])   # one file, rewritten
@given(pieces=st.lists(st.one_of(st.text(st.characters(exclude_categories=("Cs",))),
                                 st.sampled_from(["\r\n", "\r", "\ufeff", "🙂"])), min_size=1),
       chunk=st.integers(1, 17))
def test_streaming_equals_whole_decode_for_any_text(tmp_path, monkeypatch, pieces, chunk):
    text = "".join(pieces)
    path = write(tmp_path / "c.txt", "\ufeff" + text)
    monkeypatch.setattr(data, "CHUNK_BYTES", chunk)
    if len(set(text)) < 2:
        with pytest.raises(CorpusError):
            data.read_corpus([path])
        return
    corpus = data.read_corpus([path])
    vocab, expected = whole_decode_ids(text)
    assert corpus.vocab == vocab
    np.testing.assert_array_equal(corpus.ids, expected)


def test_character_split_exactly_at_a_chunk_boundary(tmp_path, monkeypatch):
    text = "abcdef€ab🙂"                             # € is bytes 6..8, so 7-byte chunks split it
    path = write(tmp_path / "c.txt", text)
    monkeypatch.setattr(data, "CHUNK_BYTES", 7)
    vocab, expected = whole_decode_ids(text)
    np.testing.assert_array_equal(data.read_corpus([path]).ids, expected)
    np.testing.assert_array_equal(data.encode_file(path, vocab)[0], expected)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 8192])
@pytest.mark.parametrize(("raw", "offset", "line", "shown"), [
    (b"hello\nwor\xe9ld\n", 9, 2, "E9"),
    (b"ab\xe2\x82x\n", 2, 1, "E2 82"),              # a 3-byte character cut short, mid-file
    (b"a\nb\nabc\xe2\x82", 7, 3, "E2 82"),          # ... and at the end of the file
])
def test_invalid_utf8_reports_file_offset_line_and_bytes(tmp_path, monkeypatch, chunk, raw,
                                                         offset, line, shown):
    path = write(tmp_path / "bad.txt", raw)
    monkeypatch.setattr(data, "CHUNK_BYTES", chunk)
    with pytest.raises(CorpusError) as info:
        data.read_corpus([path])
    message = str(info.value)
    assert str(path) in message
    assert f"byte offset {offset} (line {line})" in message
    assert f"bytes {shown}" in message
    assert "--encoding-errors replace" in message
    assert "\n" not in message


def test_replace_mode_yields_u_fffd_and_counts_only_real_replacements(tmp_path):
    path = write(tmp_path / "c.txt", b"ab\xffcd \xef\xbf\xbd")   # one bad byte, one genuine U+FFFD
    corpus = data.read_corpus([path], encoding_errors="replace")
    assert text_of(corpus) == "ab\ufffdcd \ufffd"
    assert corpus.vocab.index("\ufffd") is not None
    assert any("1 invalid UTF-8 sequence(s)" in w for w in corpus.warnings)


def test_bad_encoding_errors_value_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--encoding-errors"):
        data.read_corpus([write(tmp_path / "c.txt", "ab")], encoding_errors="ignore")


@pytest.mark.parametrize("chunk", [1, 2, 8192])
def test_one_leading_utf8_bom_per_file_is_stripped(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(data, "CHUNK_BYTES", chunk)
    first = write(tmp_path / "a.txt", b"\xef\xbb\xbfab")
    second = write(tmp_path / "b.txt", b"\xef\xbb\xbf\xef\xbb\xbfcd")   # the second BOM is text
    corpus = data.read_corpus([first, second])
    assert text_of(corpus) == "ab\ufeffcd"
    assert corpus.fingerprint["chars"] == 5


@pytest.mark.parametrize(("encoding", "name"), [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"),
                                                ("utf-32", "UTF-32")])
def test_utf16_and_utf32_boms_are_detected(tmp_path, encoding, name):
    raw = ("\ufeff" if encoding.endswith("be") else "") + "hello world"
    path = write(tmp_path / "wide.txt", raw.encode(encoding))
    for read in (lambda: data.read_corpus([path]), lambda: data.encode_file(path, Vocab([97, 98]))):
        with pytest.raises(CorpusError) as info:
            read()
        assert f"looks like {name}" in str(info.value)
        assert "convert it to UTF-8" in str(info.value)


@pytest.mark.parametrize(("content", "words"), [
    (b"", "is empty"),
    (b"\xef\xbb\xbf", "is empty"),                 # a BOM alone is no text
    (b"aaaa", "one symbol"),
    (b"\n\n\n", "one symbol"),
])
def test_corpus_without_anything_to_learn_is_refused(tmp_path, content, words):
    with pytest.raises(CorpusError) as info:
        data.read_corpus([write(tmp_path / "c.txt", content)])
    assert words in str(info.value)
    assert info.value.exit_code == 3


def test_missing_path_is_a_corpus_error(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        data.read_corpus([tmp_path / "nope.txt"])
    with pytest.raises(CorpusError, match="does not exist"):
        data.encode_file(tmp_path / "nope.txt", Vocab([97, 98]))


def run_promptly(fn, seconds: float = 10.0) -> BaseException | None:
    """fn()'s exception (or None), failing the test if fn blocks: a FIFO read must not hang."""
    outcome: list = []

    def target():
        try:
            fn()
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            outcome.append(e)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for fn in (lambda: data.read_corpus([fifo]), lambda: data.encode_file(fifo, Vocab([97, 98])),
               lambda: data.read_text_file(fifo)):
        error = run_promptly(fn)
        assert isinstance(error, CorpusError) and "FIFO" in str(error)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_inside_a_directory_is_skipped_without_blocking(tmp_path):
    write(tmp_path / "d" / "a.txt", "ab")
    os.mkfifo(tmp_path / "d" / "pipe")
    corpus: list = []
    assert run_promptly(lambda: corpus.append(data.read_corpus([tmp_path / "d"]))) is None
    assert text_of(corpus[0]) == "ab"
    assert any("pipe" in w and "not a regular file" in w for w in corpus[0].warnings)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_device_is_refused_before_reading():
    error = run_promptly(lambda: data.read_corpus(["/dev/zero"]))
    assert isinstance(error, CorpusError) and "not a regular file" in str(error)


def test_large_ids_are_memory_mapped_from_our_own_cache(tmp_path, monkeypatch, private_cache):
    path = write(tmp_path / "c.txt", RICH * 50)
    in_memory = data.read_corpus([path])
    monkeypatch.setattr(data, "MEMMAP_MIN_BYTES", 16)
    mapped = data.read_corpus([path])
    assert isinstance(mapped.ids, np.memmap)
    assert not mapped.ids.flags.writeable
    assert mapped.ids.dtype == in_memory.ids.dtype
    np.testing.assert_array_equal(mapped.ids, in_memory.ids)
    assert mapped.fingerprint == in_memory.fingerprint
    assert list(private_cache.joinpath("charlm").iterdir()) == []   # unlinked once mapped


def test_more_than_65536_distinct_characters_give_uint32_ids(tmp_path, monkeypatch):
    cps = [cp for cp in range(0x4E00, 0x4E00 + 70_000) if not 0xD800 <= cp <= 0xDFFF]
    text = "".join(map(chr, cps))
    monkeypatch.setattr(data, "MEMMAP_MIN_BYTES", 1024)   # through the cache file as well
    corpus = data.read_corpus([write(tmp_path / "cjk.txt", text)])
    assert corpus.vocab.size == len(cps) > 65536
    assert corpus.ids.dtype == np.uint32
    np.testing.assert_array_equal(corpus.ids, np.arange(len(cps)))   # no wrap at 65536
    assert text_of(corpus) == text
    assert any("vocabulary has" in w for w in corpus.warnings)


def test_corpus_changing_between_the_two_passes_is_reported(tmp_path, monkeypatch):
    path = write(tmp_path / "c.txt", "abcabc")
    scan = data._scan
    monkeypatch.setattr(data, "_scan", lambda *args: (scan(*args)[0], 5))   # pass 1 saw 5 chars
    with pytest.raises(CorpusError, match="changed while it was being read"):
        data.read_corpus([path])


def test_split_takes_the_contiguous_tail_as_validation():
    ids = np.arange(1000, dtype=np.uint16)
    train, val = data.split_train_val(ids, 0.1)
    np.testing.assert_array_equal(train, np.arange(900))
    np.testing.assert_array_equal(val, np.arange(900, 1000))
    assert np.shares_memory(train, ids) and np.shares_memory(val, ids)   # views, no copies


def test_split_with_zero_fraction_keeps_everything_for_training():
    ids = np.arange(7, dtype=np.uint8)
    train, val = data.split_train_val(ids, 0.0)
    assert len(train) == 7 and len(val) == 0


@pytest.mark.parametrize("frac", [1.0, -0.1, float("nan"), 1.5])
def test_split_rejects_fractions_outside_zero_to_one(frac):
    with pytest.raises(UsageError, match=r"\[0, 1\)"):
        data.split_train_val(np.arange(10), frac)


def test_encode_file_uses_the_vocab_and_reports_unknowns_with_the_file(tmp_path):
    vocab = Vocab(sorted(map(ord, "abc\r\n")))
    path = write(tmp_path / "eval.txt", b"\xef\xbb\xbfab\r\ncXa")
    with pytest.raises(CorpusError) as info:
        data.encode_file(path, vocab)
    assert str(path) in str(info.value) and "'X' U+0058 first at index 5" in str(info.value)
    ids, skipped = data.encode_file(path, vocab, unknown="skip")
    assert skipped == 1 and ids.dtype == vocab.id_dtype
    assert vocab.decode(ids) == "ab\r\nca"         # BOM dropped, CR LF kept


def test_encode_file_refuses_empty_and_all_unknown_texts(tmp_path):
    vocab = Vocab([97, 98])
    with pytest.raises(CorpusError, match="is empty"):
        data.encode_file(write(tmp_path / "e.txt", b""), vocab)
    with pytest.raises(CorpusError, match="outside the model's vocabulary"):
        data.encode_file(write(tmp_path / "x.txt", "xyz"), vocab, unknown="skip")


def test_read_text_file_keeps_newlines_and_drops_the_bom(tmp_path):
    path = write(tmp_path / "prime.txt", b"\xef\xbb\xbfOnce\r\nupon\r")
    assert data.read_text_file(path) == "Once\r\nupon\r"
