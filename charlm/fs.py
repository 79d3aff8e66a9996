"""Plumbing every reader and writer of files shares: one safe open, one atomic write.

A path the user names may be a FIFO, a device or a directory; opening a FIFO for reading
blocks until a writer comes, so `open_regular` never waits and refuses anything that is not a
regular file. `write_atomic` never leaves a torn file under the final name, even if the
process is SIGKILLed: it writes a temp file in the same directory, fsyncs it and renames it
over the old one (reliability.md section 4). Both raise OSError; the caller turns it into the
error of its own domain (a corpus, a checkpoint, an output).
"""

import errno
import os
import stat
import tempfile

TEMP_PREFIX, TEMP_SUFFIX = ".charlm-", ".tmp"


class NotRegularFileError(OSError):
    """The path names a directory, a FIFO, a device or a socket, not a regular file."""

    def __init__(self, path, mode):
        self.mode, self.kind = mode, file_kind(mode)
        super().__init__(errno.EINVAL, f"not a regular file ({self.kind})", os.fspath(path))


def file_kind(mode):
    """A few words for what a non-regular st_mode is."""
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def open_regular(path):
    """path opened for binary reading, once it is known to be a regular file.

    Raises FileNotFoundError, NotRegularFileError or another OSError.
    """
    mode = os.stat(path).st_mode                 # a FIFO or a device is never even opened
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(path, mode)
    # O_NONBLOCK: should a FIFO be swapped in after the stat, opening it still cannot block
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    try:
        # fstat the descriptor, not the name: the file cannot be swapped between check and use
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def write_atomic(path, payload):
    """Write payload (bytes) to path: readers see the old file or the new one, never a mix.

    A failed write leaves the old file as it was (except when only the final directory fsync
    fails: the new file is then in place but may not survive a power cut, and that is still
    reported). The file gets the mode a plainly created one would (umask), not mkstemp's 0600.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    # same directory: os.replace is atomic only within one filesystem (EXDEV otherwise)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    published = False
    try:
        _set_default_mode(fd)
        _write_bytes(fd, memoryview(payload))
        # a failed fsync is a failed save: the kernel may have dropped the dirty pages already,
        # so a retry could "succeed" with the data lost (fsyncgate, ATC'20)
        os.fsync(fd)
        closing, fd = fd, -1    # close() frees the descriptor even when it reports an error
        os.close(closing)
        os.replace(tmp, path)
        published = True
        _fsync_directory(directory)
    except BaseException:
        # also on KeyboardInterrupt: an abandoned write must not leave its temp file behind
        if fd >= 0:
            _close_quietly(fd)
        if not published:
            _unlink_quietly(tmp)
        raise


def remove_stale_temps(directory):
    """Delete `.charlm-*.tmp` files that a killed write left in directory; returns how many.

    Call it only while holding the directory's lock: a live write's temp file looks the same.
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
            if entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _write_bytes(fd, data):
    """Write all of data to fd. Module level so tests can make it fail like a full disk."""
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _set_default_mode(fd):
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.fchmod(fd, 0o666 & ~mask)
    except OSError:
        pass    # e.g. a filesystem without Unix modes: the write itself is still good


def _fsync_directory(directory):
    """Make the rename itself durable; without this a power cut can bring the old name back."""
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        # some filesystems cannot fsync a directory at all; the file is already complete
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(dir_fd)


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass    # remove_stale_temps will find it at the next start
