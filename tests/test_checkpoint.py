"""charlm.io.npz (the hardened container) and charlm.fs (its atomic write): round trip,
atomic saves under injected OS failures, and the loader's rejection matrix (reliability.md
catalog A and B), plus a mutation fuzz of valid files.

The toy schema below stands in for the model's: the loader is generic, so every rule it enforces can
be shown on four small arrays. tests/fuzz_checkpoint.py reuses mutate() and load_outcome() for
longer fuzz runs outside pytest.
"""

import errno
import io
import json
import os
import pickle
import stat
import struct
import threading
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm import fs
from charlm.errors import CheckpointError, OutputError
from charlm.fs import remove_stale_temps
from charlm.io.npz import (
    META_CONFIG,
    META_FORMAT_VERSION,
    Checkpoint,
    NonFiniteStateError,
    json_to_array,
    load_checkpoint,
    save_checkpoint,
)

TOY_VERSION = 1
TOY_CONFIG = {"kind": "toy", "n": 3}


def toy_schema(config: dict, format_version: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """What a model's schema does: refuse what it cannot read, else give every member exactly."""
    if format_version > TOY_VERSION:
        raise CheckpointError(f"format_version {format_version} needs a newer charlm "
                              f"(this one reads up to {TOY_VERSION})")
    if config.get("kind") != "toy":
        raise CheckpointError(f"not a toy checkpoint (kind {config.get('kind')!r})")
    n = config["n"]
    return {"params/w": ("<f4", (n, 4)), "params/b": ("<f8", (4,)),
            "meta/vocab": ("<i4", (5,)), "state/t": ("<i8", ())}


def toy_arrays(n: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"params/w": rng.standard_normal((n, 4)).astype("<f4"),
            "params/b": rng.standard_normal(4),
            "meta/vocab": np.array([0, 10, 65, 97, 0x1F600], dtype="<i4"),   # NUL and an emoji
            "state/t": np.array(7, dtype="<i8")}


def npy(arr: np.ndarray) -> bytes:
    """arr as .npy bytes, whatever its dtype (allow_pickle only so bad members can be built)."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, arr, allow_pickle=True)
    return buffer.getvalue()


def raw_npy(header: str, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """An .npy member with a hand-written header, for headers numpy itself would not write."""
    encoded = header.encode("latin1")
    length = struct.pack("<H" if version == (1, 0) else "<I", len(encoded))
    return b"\x93NUMPY" + bytes(version) + length + encoded + data


def toy_members(**replace: bytes | None) -> list[tuple[str, bytes]]:
    """(member name, bytes) of a valid toy checkpoint; replace={key: bytes or None to drop}.

    Keys use "__" for "/" so they can be keyword arguments: params__w means params/w.
    """
    arrays = toy_arrays() | {META_CONFIG: json_to_array(TOY_CONFIG),
                             META_FORMAT_VERSION: np.array(TOY_VERSION, dtype="<i8")}
    members = {key: npy(arr) for key, arr in arrays.items()}
    for key, data in replace.items():
        members[key.replace("__", "/")] = data
    return [(f"{key}.npy", data) for key, data in members.items() if data is not None]


def write_zip(path: Path, members: list[tuple[str, bytes]],
              compression: int = zipfile.ZIP_STORED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # zipfile warns of the duplicate names some tests want
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def patch_central_entry(data: bytes, name: str, offset: int, fmt: str, value: int) -> bytes:
    """data with one field of name's central directory entry (offset from its signature) set."""
    start = data.index(b"PK\x01\x02")
    while True:
        name_len = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46:start + 46 + name_len] == name.encode():
            break
        start = data.index(b"PK\x01\x02", start + 4)
    patched = bytearray(data)
    struct.pack_into(fmt, patched, start + offset, value)
    return bytes(patched)


def member_data_offset(data: bytes, name: str) -> int:
    """Where name's (possibly compressed) bytes start, read from its local header."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len


def load_error(path: Path, **kwargs) -> str:
    """The loader's message for path, checked to be one line that starts with the path."""
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, toy_schema, **kwargs)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert caught.value.exit_code == 4
    return message


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "last.npz"
    save_checkpoint(path, toy_arrays(), TOY_CONFIG, TOY_VERSION)
    return path


def temp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".charlm-*.tmp"))


# ---- round trip and atomic save ----------------------------------------------------------------

def test_round_trip_is_bitwise(saved):
    ckpt = load_checkpoint(saved, toy_schema)
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.path == saved and ckpt.config == TOY_CONFIG and ckpt.format_version == TOY_VERSION
    expected = toy_arrays()
    assert ckpt.arrays.keys() == expected.keys()
    for key, arr in expected.items():
        assert ckpt.arrays[key].dtype == arr.dtype and ckpt.arrays[key].shape == arr.shape, key
        assert ckpt.arrays[key].tobytes() == arr.tobytes(), key


def test_archive_layout_matches_the_product_format(saved):
    with zipfile.ZipFile(saved) as zf:
        names = sorted(zf.namelist())
        config = np.lib.format.read_array(io.BytesIO(zf.read("meta/config.npy")))
        version = np.lib.format.read_array(io.BytesIO(zf.read("meta/format_version.npy")))
    keys = [*toy_arrays(), META_CONFIG, META_FORMAT_VERSION]
    assert names == sorted(f"{key}.npy" for key in keys)
    assert config.dtype == np.uint8 and json.loads(config.tobytes()) == TOY_CONFIG
    assert version.dtype == np.dtype("<i8") and version.shape == () and int(version) == TOY_VERSION


def test_fortran_ordered_input_is_saved_in_c_order(tmp_path):
    arrays = toy_arrays()
    arrays["params/w"] = np.asfortranarray(arrays["params/w"])
    save_checkpoint(tmp_path / "f.npz", arrays, TOY_CONFIG, TOY_VERSION)
    loaded = load_checkpoint(tmp_path / "f.npz", toy_schema).arrays["params/w"]
    assert np.array_equal(loaded, arrays["params/w"]) and loaded.flags.c_contiguous


def test_save_leaves_no_temp_files_and_gets_the_usual_file_mode(saved):
    assert sorted(p.name for p in saved.parent.iterdir()) == ["last.npz"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o666 & ~umask


def test_save_replaces_the_previous_checkpoint(saved):
    save_checkpoint(saved, toy_arrays(seed=1), TOY_CONFIG | {"note": "second"}, TOY_VERSION)
    ckpt = load_checkpoint(saved, toy_schema)
    assert ckpt.config["note"] == "second"
    assert np.array_equal(ckpt.arrays["params/w"], toy_arrays(seed=1)["params/w"])


def test_non_finite_state_is_refused_before_anything_is_written(tmp_path):
    arrays = toy_arrays()
    arrays["params/b"][[0, 2]] = [np.nan, -np.inf]
    with pytest.raises(NonFiniteStateError, match="params/b has 2 non-finite values") as caught:
        save_checkpoint(tmp_path / "x.npz", arrays, TOY_CONFIG, TOY_VERSION)
    assert isinstance(caught.value, ValueError)
    assert (caught.value.key, caught.value.count) == ("params/b", 2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key, value, fragment", [
    ("params/o", np.array([{"a": 1}], dtype=object), "dtype |O"),
    ("params/s", np.array(["abc"]), "dtype <U3"),
    ("params/c", np.zeros(2, np.complex64), "dtype <c8"),
    ("params/be", np.zeros(2, ">f4"), "dtype >f4"),
    (META_CONFIG, np.zeros(2, np.uint8), "reserved"),
    ("", np.zeros(2), "non-empty"),
])
def test_arrays_the_loader_would_refuse_are_refused_at_save(tmp_path, key, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        save_checkpoint(tmp_path / "x.npz", {key: value}, TOY_CONFIG, TOY_VERSION)
    assert list(tmp_path.iterdir()) == []


def test_config_that_is_not_strict_json_is_refused_at_save(tmp_path):
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "x.npz", toy_arrays(), {"lr": float("nan")}, TOY_VERSION)
    with pytest.raises(ValueError, match="config is"):
        save_checkpoint(tmp_path / "x.npz", toy_arrays(), {"pad": "x" * 70_000}, TOY_VERSION)


def _assert_previous_intact(path: Path, previous: bytes) -> None:
    assert path.read_bytes() == previous
    assert load_checkpoint(path, toy_schema).arrays["params/w"].tobytes() == \
        toy_arrays()["params/w"].tobytes()
    assert temp_files(path.parent) == []


def test_disk_full_during_write_keeps_the_previous_checkpoint(saved, monkeypatch):
    previous = saved.read_bytes()

    def half_then_full(fd, data):
        os.write(fd, data[:len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fs, "_write_bytes", half_then_full)
    with pytest.raises(OutputError) as caught:
        save_checkpoint(saved, toy_arrays(seed=1), TOY_CONFIG, TOY_VERSION)
    message = str(caught.value)
    assert message.startswith(f"could not write checkpoint {saved}: No space left on device")
    assert "needed about" in message and caught.value.exit_code == 5
    _assert_previous_intact(saved, previous)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_failed_fsync_is_a_failed_save_and_is_not_retried(saved, monkeypatch, code):
    previous = saved.read_bytes()
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fs.os, "fsync", failing_fsync)
    with pytest.raises(OutputError, match=os.strerror(code)):
        save_checkpoint(saved, toy_arrays(seed=1), TOY_CONFIG, TOY_VERSION)
    assert len(calls) == 1
    monkeypatch.undo()
    _assert_previous_intact(saved, previous)


def test_failed_directory_fsync_is_reported_and_the_file_is_whole(saved, monkeypatch):
    real_fsync, calls = os.fsync, []

    def second_call_fails(fd):
        calls.append(fd)
        if len(calls) == 2:         # the first fsync is the file's, the second the directory's
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(fs.os, "fsync", second_call_fails)
    with pytest.raises(OutputError, match="Input/output error"):
        save_checkpoint(saved, toy_arrays(seed=1), TOY_CONFIG, TOY_VERSION)
    monkeypatch.undo()
    assert load_checkpoint(saved, toy_schema).arrays["params/w"].tobytes() == \
        toy_arrays(seed=1)["params/w"].tobytes()
    assert temp_files(saved.parent) == []


def test_failed_rename_keeps_the_previous_checkpoint(saved, monkeypatch):
    previous = saved.read_bytes()

    def refuse(src, dst):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(fs.os, "replace", refuse)
    with pytest.raises(OutputError, match="Permission denied"):
        save_checkpoint(saved, toy_arrays(seed=1), TOY_CONFIG, TOY_VERSION)
    monkeypatch.undo()
    _assert_previous_intact(saved, previous)


def test_interrupt_during_write_removes_the_temp_and_propagates(saved, monkeypatch):
    previous = saved.read_bytes()

    def interrupted(fd, data):
        os.write(fd, data[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(fs, "_write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(saved, toy_arrays(seed=1), TOY_CONFIG, TOY_VERSION)
    _assert_previous_intact(saved, previous)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_is_an_output_error(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="Permission denied"):
            save_checkpoint(tmp_path / "x.npz", toy_arrays(), TOY_CONFIG, TOY_VERSION)
    finally:
        tmp_path.chmod(0o755)
    assert list(tmp_path.iterdir()) == []


def test_read_only_filesystem_is_an_output_error(tmp_path, monkeypatch):
    # runs as root too, where the chmod test above cannot: the OS answer is injected instead
    def read_only(**kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(fs.tempfile, "mkstemp", read_only)
    target = tmp_path / "x.npz"
    with pytest.raises(OutputError, match=f"could not write checkpoint {target}: Read-only"):
        save_checkpoint(target, toy_arrays(), TOY_CONFIG, TOY_VERSION)


def test_missing_directory_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="No such file or directory"):
        save_checkpoint(tmp_path / "nope" / "x.npz", toy_arrays(), TOY_CONFIG, TOY_VERSION)


def test_remove_stale_temps_removes_only_charlm_temps(saved):
    for name in (".charlm-abc.tmp", ".charlm-def.tmp", "keep.tmp", ".charlm-keep.npz"):
        (saved.parent / name).write_bytes(b"x")
    assert remove_stale_temps(saved.parent) == 2
    assert sorted(p.name for p in saved.parent.iterdir()) == [".charlm-keep.npz", "keep.tmp",
                                                              "last.npz"]
    assert remove_stale_temps(saved.parent / "missing") == 0


# ---- loader: file level (A1, A3, A4, A5, A20, A21, A22) ---------------------------------------

class _Payload:
    """Unpickling this creates the sentinel file: proof that code ran."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (str(self.sentinel), "w"))


def test_pickle_renamed_npz_is_refused_without_running_it(tmp_path):
    sentinel, path = tmp_path / "pwned", tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(_Payload(sentinel), protocol=4))
    assert "pickle data, refusing" in load_error(path)
    assert not sentinel.exists()


def test_object_member_is_refused_from_its_header(tmp_path):
    sentinel = tmp_path / "pwned"
    evil = np.array([_Payload(sentinel)], dtype=object)
    path = write_zip(tmp_path / "x.npz", toy_members(params__w=npy(evil)))
    assert "params/w has dtype |O, expected <f4" in load_error(path)
    assert not sentinel.exists()


def test_bare_npy_is_refused(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(npy(np.zeros((3, 4), "<f4")))
    assert "expected a .npz archive, got .npy" in load_error(path)


@pytest.mark.parametrize("content, fragment", [
    (b"", "file is empty (0 bytes)"),
    (b"\x00" * 10, "not a .npz archive (starts with bytes 00 00 00 00)"),
    (b"PK\x03\x04" + b"\x00" * 6, "truncated or corrupt (only 10 bytes)"),
    ("step,loss\n1,4.2\nüber\n".encode(), "a text file, not a .npz archive"),
    (b"PK\x05\x06" + b"\x00" * 18, "an empty zip archive"),
])
def test_small_and_foreign_files_are_refused(tmp_path, content, fragment):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    message = load_error(path)
    assert fragment in message
    if "corrupt" not in fragment and "zip" not in fragment:   # not a checkpoint at all: say what is
        assert message.endswith("such as RUN_DIR/best.npz or RUN_DIR/last.npz")


def test_truncated_checkpoint_is_refused(saved):
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    assert "truncated or corrupt" in load_error(saved)


def test_directory_and_missing_path_are_refused(tmp_path):
    assert "not a regular file (a directory)" in load_error(tmp_path)
    missing = load_error(tmp_path / "missing.npz")
    assert "cannot read: No such file or directory" in missing and "best.npz" in missing
    if Path("/dev/zero").exists():
        assert "not a regular file (a device)" in load_error(Path("/dev/zero"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file_is_refused(saved):
    saved.chmod(0)
    assert "cannot read: Permission denied" in load_error(saved)


def test_permission_error_is_refused_even_as_root(saved, monkeypatch):
    # root reads a chmod 0 file anyway, so the OS answer is injected for this one path
    real_open = os.open

    def denying_open(path, flags, *args):
        if os.fspath(path) == os.fspath(saved):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(fs.os, "open", denying_open)
    assert load_error(saved) == f"{saved}: cannot read: Permission denied"


def test_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "x.npz"
    os.mkfifo(fifo)
    outcome = []

    def load():     # in a thread, so a regression fails the test instead of hanging the run
        try:
            load_checkpoint(fifo, toy_schema)
        except CheckpointError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=load, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "load_checkpoint blocked on a FIFO"
    assert time.monotonic() - started < 1
    assert outcome == [f"{fifo}: not a regular file (a FIFO); give a checkpoint that charlm "
                       "train wrote, such as RUN_DIR/best.npz or RUN_DIR/last.npz"]


def test_file_over_max_bytes_is_refused_with_its_size(saved):
    message = load_error(saved, max_bytes=1000)
    assert f"file is {saved.stat().st_size / 1024:.1f} KiB, over the 1000 bytes limit" in message


# ---- loader: zip level (A6, A7, A11, A12, A13, A23) -------------------------------------------

def test_bit_flip_in_stored_member_is_a_crc_mismatch(saved):
    data = bytearray(saved.read_bytes())
    data[member_data_offset(bytes(data), "params/w.npy") + 140] ^= 0x10     # in the float data
    saved.write_bytes(data)
    assert "truncated or corrupt (CRC mismatch in member params/w)" in load_error(saved)


def test_bit_flip_in_deflated_member_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    arrays = toy_arrays(n=64)
    with path.open("wb") as f:
        np.savez_compressed(f, **arrays, **{META_CONFIG: json_to_array({"kind": "toy", "n": 64}),
                                            META_FORMAT_VERSION: np.array(1, dtype="<i8")})
    assert load_checkpoint(path, toy_schema).arrays["params/w"].shape == (64, 4)
    data = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo("params/w.npy")
    data[member_data_offset(bytes(data), "params/w.npy") + info.compress_size // 2] ^= 0x04
    path.write_bytes(data)
    message = load_error(path)
    # depending on the bit, zlib or the CRC notices first; either way the member is named
    assert "truncated or corrupt" in message and "params/w" in message


def _deflated_toy(tmp_path: Path) -> bytes:
    return write_zip(tmp_path / "d.npz", toy_members(), zipfile.ZIP_DEFLATED).read_bytes()


def test_member_declaring_3_gb_is_refused_before_decompressing(tmp_path):
    data = patch_central_entry(_deflated_toy(tmp_path), "params/w.npy", 24, "<I", 3 * 10**9)
    path = tmp_path / "bomb.npz"
    path.write_bytes(data)
    assert "members declare 2.8 GiB uncompressed, over the 2.0 GiB limit" in load_error(path)


def test_member_expanding_over_1000_times_is_refused(tmp_path):
    data = patch_central_entry(_deflated_toy(tmp_path), "params/w.npy", 24, "<I", 100 * 2**20)
    path = tmp_path / "bomb.npz"
    path.write_bytes(data)
    message = load_error(path)
    assert "member params/w.npy expands" in message and "likely zip bomb" in message


def test_member_claiming_more_bytes_than_the_file_has_is_refused(saved):
    # a stored member whose sizes agree but lie: without the check, reading would allocate 1 GB
    data = patch_central_entry(saved.read_bytes(), "params/w.npy", 20, "<I", 10**9)
    saved.write_bytes(patch_central_entry(data, "params/w.npy", 24, "<I", 10**9))
    assert "truncated or corrupt (members claim 1000000" in load_error(saved)


def test_real_deflated_zeros_bomb_is_refused(tmp_path):
    zeros = raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 4), }\n",
                    bytes(16 * 2**20))
    path = write_zip(tmp_path / "bomb.npz", toy_members(params__w=zeros), zipfile.ZIP_DEFLATED)
    assert "likely zip bomb" in load_error(path)


def test_duplicate_member_names_are_refused(tmp_path):
    members = toy_members()
    members.append(("params/w.npy", npy(np.ones((3, 4), "<f4"))))
    path = write_zip(tmp_path / "dup.npz", members)
    assert "duplicate member params/w.npy" in load_error(path)


@pytest.mark.parametrize("name, data, fragment", [
    ("../../x.npy", npy(np.zeros(1)), "unexpected members: ../../x"),
    ("evil.py", b"import os", "member evil.py is not a .npy array"),
    ("__MACOSX/", b"", "directory entry __MACOSX/"),
    ("params/w\n.npy", npy(np.zeros(1)), "unexpected members: 'params/w\\n'"),
])
def test_extra_members_are_refused_and_named(tmp_path, name, data, fragment):
    path = write_zip(tmp_path / "x.npz", [*toy_members(), (name, data)])
    assert fragment in load_error(path)


def test_missing_members_are_listed(tmp_path):
    path = write_zip(tmp_path / "x.npz", toy_members(meta__vocab=None, params__b=None))
    assert "missing members: meta/vocab, params/b" in load_error(path)


def test_long_listings_are_capped(tmp_path):
    extra = [(f"junk/{i:02}.npy", npy(np.zeros(1))) for i in range(15)]
    message = load_error(write_zip(tmp_path / "x.npz", [*toy_members(), *extra]))
    assert "unexpected members: junk/00, junk/01" in message and "junk/10" not in message
    assert message.endswith("junk/09 and 5 more")


def test_too_many_members_are_refused(tmp_path):
    extra = [(f"junk/{i}.npy", b"") for i in range(300)]
    assert "306 members; a checkpoint has at most 256" in load_error(
        write_zip(tmp_path / "x.npz", [*toy_members(), *extra]))


def test_missing_format_version_is_not_a_charlm_checkpoint(tmp_path):
    path = write_zip(tmp_path / "x.npz", toy_members(meta__format_version=None))
    assert "not a charlm checkpoint (no meta/format_version member)" in load_error(path)


def test_encrypted_member_is_refused(saved):
    saved.write_bytes(patch_central_entry(saved.read_bytes(), "params/w.npy", 8, "<H", 1))
    assert "member params/w.npy is encrypted" in load_error(saved)


def test_bzip2_member_is_refused(tmp_path):
    path = write_zip(tmp_path / "x.npz", toy_members(), zipfile.ZIP_BZIP2)
    assert "uses compression method 12" in load_error(path)


def test_stored_member_with_disagreeing_sizes_is_refused(saved):
    size = zipfile.ZipFile(saved).getinfo("params/b.npy").file_size
    saved.write_bytes(patch_central_entry(saved.read_bytes(), "params/b.npy", 24, "<I", size + 8))
    assert "sizes of stored member params/b.npy disagree" in load_error(saved)


# ---- loader: npy headers, dtypes, shapes, values (A2, A8-A10, A14-A18) ------------------------

HEADER = "{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n"


@pytest.mark.parametrize("member, fragment", [
    (raw_npy(HEADER.format(descr="<f4", fortran=False, shape="(10**12,)"), bytes(200)),
     "unsupported header in params/w"),       # not a literal: numpy refuses to evaluate it
    (raw_npy(HEADER.format(descr="<f4", fortran=False, shape="(1000000000000,)"), bytes(200)),
     "params/w has shape (1000000000000,), expected (3, 4)"),
    (raw_npy(HEADER.format(descr="<f4", fortran=False, shape="(-3, 4)"), bytes(48)),
     "params/w has shape (-3, 4), expected (3, 4)"),
    (raw_npy(HEADER.format(descr="<f4", fortran=False, shape="(3.0, 4)"), bytes(48)),
     "unsupported header in params/w"),
    (raw_npy(HEADER.format(descr="<f4", fortran=False, shape="(True, 4)"), bytes(16)),
     "params/w has an invalid shape (True, 4)"),
    (raw_npy(HEADER.format(descr="<f4", fortran=True, shape="(3, 4)"), bytes(48)),
     "params/w is stored in Fortran order"),
    (raw_npy(HEADER.format(descr="<f4", fortran=False, shape="(3, 4)"), bytes(48), (2, 0)),
     "unsupported header in params/w (npy format 2.0"),
    (raw_npy(HEADER.format(descr="<f4", fortran=False, shape="(3, 4)"), bytes(48), (3, 0)),
     "npy format 3.0"),
    (raw_npy(HEADER.format(descr="<f4", fortran=False, shape="(3, 4)") + " " * 2000, bytes(48)),
     "unsupported header in params/w"),
    (raw_npy(HEADER.format(descr="<f4", fortran=False, shape="(3, 4)"), bytes(40)),
     "params/w declares"),
    (b"not an npy member at all", "member params/w is not a .npy array"),
])
def test_bad_npy_headers_are_refused(tmp_path, member, fragment):
    path = write_zip(tmp_path / "x.npz", toy_members(params__w=member))
    assert fragment in load_error(path)


def test_shape_from_a_huge_config_is_refused_before_reading(tmp_path):
    config = json_to_array({"kind": "toy", "n": 10**12})
    path = write_zip(tmp_path / "x.npz", toy_members(meta__config=npy(config)))
    assert "config implies 14.6 TiB of arrays, over the 2.0 GiB limit" in load_error(path)


@pytest.mark.parametrize("dtype", [">f4", "<f8", "<f2", "<c8", "<U3", "<i8"])
def test_wrong_dtype_is_refused_naming_both(tmp_path, dtype):
    member = npy(np.zeros((3, 4), dtype=dtype))
    path = write_zip(tmp_path / "x.npz", toy_members(params__w=member))
    assert f"params/w has dtype {dtype}, expected <f4" in load_error(path)


def test_wrong_shape_is_refused_naming_both(tmp_path):
    path = write_zip(tmp_path / "x.npz", toy_members(params__w=npy(np.zeros((3, 5), "<f4"))))
    assert "params/w has shape (3, 5), expected (3, 4)" in load_error(path)


def test_non_finite_weights_are_refused_with_a_count(tmp_path):
    w = np.zeros((3, 4), "<f4")
    w[0, 1], w[1, 2], w[2, 3] = np.nan, np.inf, -np.inf
    path = write_zip(tmp_path / "x.npz", toy_members(params__w=npy(w)))
    assert load_error(path).endswith(": params/w has 3 non-finite values")


def test_newer_format_version_is_refused_by_the_schema(tmp_path):
    version = npy(np.array(TOY_VERSION + 1, dtype="<i8"))
    path = write_zip(tmp_path / "x.npz", toy_members(meta__format_version=version))
    expected = "format_version 2 needs a newer charlm (this one reads up to 1)"
    assert load_error(path) == f"{path}: {expected}"


@pytest.mark.parametrize("config, fragment", [
    (b"{not json", "meta/config is not valid JSON"),
    (b"\xff\xfe{}", "meta/config is not valid JSON"),
    (b'{"n": NaN, "kind": "toy"}', "meta/config is not valid JSON (NaN is not valid JSON)"),
    (b'{"n": 3, "n": 4, "kind": "toy"}', "duplicate JSON key n"),
    (b"[1, 2]", "meta/config must be a JSON object, not list"),
    (b'{"kind": "transformer", "n": 3}', "not a toy checkpoint (kind 'transformer')"),
    (b'{"kind": "toy"}', "unusable config (KeyError: 'n')"),
    (b'{"kind": "toy", "n": "3"}', "config gives an invalid shape for params/w: ('3', 4)"),
    (b'{"kind": "toy", "n": -3}', "config gives an invalid shape for params/w: (-3, 4)"),
    (b"[" * 70_000, "meta/config has shape (70000,)"),
])
def test_bad_configs_are_refused(tmp_path, config, fragment):
    member = npy(np.frombuffer(config, dtype=np.uint8))
    path = write_zip(tmp_path / "x.npz", toy_members(meta__config=member))
    assert fragment in load_error(path)


def test_meta_members_must_have_their_exact_types(tmp_path):
    path = write_zip(tmp_path / "a.npz", toy_members(meta__format_version=npy(np.array(1, "<i4"))))
    assert "meta/format_version has dtype <i4, expected <i8" in load_error(path)
    config = npy(np.frombuffer(json.dumps(TOY_CONFIG).encode(), np.int8))
    path = write_zip(tmp_path / "b.npz", toy_members(meta__config=config))
    assert "meta/config has dtype |i1, expected |u1" in load_error(path)


def test_deflated_checkpoint_loads(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(_deflated_toy(tmp_path))
    assert load_checkpoint(path, toy_schema).arrays["meta/vocab"].tolist() == [0, 10, 65, 97,
                                                                             0x1F600]


# ---- mutation fuzz (A24) -----------------------------------------------------------------------

_VALID: dict[bool, bytes] = {}


def valid_checkpoint_bytes(deflated: bool) -> bytes:
    """A valid toy checkpoint's bytes: stored as save_checkpoint writes it, or deflated."""
    if deflated not in _VALID:
        members = toy_members()
        compression = zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
        _VALID[deflated] = buffer.getvalue()
    return _VALID[deflated]


_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


def mutate(data: bytes, choose: Callable[[int, int], int]) -> bytes:
    """1 to 4 random edits of data; choose(lo, hi) picks an int in [lo, hi] (Hypothesis or random).

    Edits: flip a bit, set a byte, insert bytes, delete a run, truncate, or overwrite a 2- or 4-byte
    field just after a "PK" signature with an extreme value (sizes, offsets, counts, flags).
    """
    buf = bytearray(data)
    for _ in range(choose(1, 4)):
        if not buf:
            break
        op, pos = choose(0, 5), choose(0, len(buf) - 1)
        if op == 0:
            buf[pos] ^= 1 << choose(0, 7)
        elif op == 1:
            buf[pos] = choose(0, 255)
        elif op == 2:
            buf[pos:pos] = bytes(choose(0, 255) for _ in range(choose(1, 8)))
        elif op == 3:
            del buf[pos:pos + choose(1, 64)]
        elif op == 4:
            del buf[pos:]
        else:
            signatures = [i for i in range(len(buf) - 1) if buf[i:i + 2] == b"PK"]
            if signatures:
                start = signatures[choose(0, len(signatures) - 1)] + choose(4, 44)
                width = 4 if choose(0, 1) else 2
                value = _INTERESTING[choose(0, len(_INTERESTING) - 1)] & (256**width - 1)
                buf[start:start + width] = value.to_bytes(width, "little")
    return bytes(buf)


def load_outcome(path: Path) -> str:
    """'loaded' or 'refused'; AssertionError if a load succeeds with content the schema forbids.

    Any exception other than CheckpointError propagates: that is the bug the fuzz looks for.
    """
    try:
        ckpt = load_checkpoint(path, toy_schema)
    except CheckpointError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        return "refused"
    expected = toy_schema(ckpt.config, ckpt.format_version)
    assert ckpt.arrays.keys() == expected.keys()
    for key, (dtype, shape) in expected.items():
        arr = ckpt.arrays[key]
        assert arr.dtype == np.dtype(dtype) and arr.shape == shape, key
        assert arr.dtype.kind != "f" or np.isfinite(arr).all(), key
    return "loaded"


# tmp_path is shared by every example on purpose: each one overwrites the same file
@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_checkpoint_loads_or_raises_checkpoint_error(tmp_path, data):
    deflated = data.draw(st.booleans(), label="deflated")
    mutated = mutate(valid_checkpoint_bytes(deflated),
                     lambda lo, hi: data.draw(st.integers(lo, hi)))
    path = tmp_path / "fuzz.npz"
    path.write_bytes(mutated)
    assert load_outcome(path) in ("loaded", "refused")
