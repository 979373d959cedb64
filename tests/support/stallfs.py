#!/usr/bin/env python3
"""A disk that stalls, for the tests: a FUSE file system passing everything through to a
backing directory, except that while it is stalled (while the file STALL exists) every
operation that writes, syncs, creates or renames waits, as a device with a frozen queue or a
stopped NFS server makes them wait. Reads and lookups still answer (the page cache would
serve them on a real stalled disk).

    stallfs.py BACKING MOUNTPOINT STALL

Runs in the foreground until unmounted (umount MOUNTPOINT). Needs fusepy (pip) and libfuse2.
"""

import errno
import os
import sys
import time

try:
    from fuse import FUSE, FuseOSError, Operations
except ImportError:
    sys.exit("stallfs.py needs fusepy and libfuse2: run scripts/setup.sh "
             "(apt-get install libfuse2 fuse3; python3 -m pip install fusepy)")

STALL = None


def waits(method):
    """The operation waits while the disk is stalled."""

    def wrapped(self, *args):
        if os.path.exists(STALL):
            print(f"{method.__name__} stalled", flush=True)
            while os.path.exists(STALL):
                time.sleep(0.05)
        return method(self, *args)

    return wrapped


class Passthrough(Operations):
    def __init__(self, root):
        self.root = root

    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def __call__(self, op, path, *args):
        try:
            return super().__call__(op, path, *args)
        except OSError as e:
            raise FuseOSError(e.errno or errno.EIO)

    # Reads and lookups.
    def access(self, path, mode):
        if not os.access(self._full(path), mode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.lstat(self._full(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size",
                "st_uid")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._full(path))

    def readlink(self, path):
        return os.readlink(self._full(path))

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def open(self, path, flags):
        return os.open(self._full(path), flags)

    # FUSE calls come on several threads at once (nothreads=False), and a file's reads and
    # writes share one descriptor: positioned IO only, since a seek then a write could land
    # at another thread's offset (a check of a whole recording once read 41 KB from the
    # wrong place, while the file itself was whole).
    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def release(self, path, fh):
        return os.close(fh)

    # What a stalled disk makes wait.
    @waits
    def create(self, path, mode, fi=None):
        return os.open(self._full(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    @waits
    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    @waits
    def truncate(self, path, length, fh=None):
        with open(self._full(path), "r+") as f:
            f.truncate(length)

    @waits
    def flush(self, path, fh):
        return 0

    @waits
    def fsync(self, path, datasync, fh):
        return os.fsync(fh)

    @waits
    def fsyncdir(self, path, datasync, fh):
        return 0

    @waits
    def mkdir(self, path, mode):
        return os.mkdir(self._full(path), mode)

    @waits
    def rmdir(self, path):
        return os.rmdir(self._full(path))

    @waits
    def rename(self, old, new):
        return os.rename(self._full(old), self._full(new))

    @waits
    def unlink(self, path):
        return os.unlink(self._full(path))

    @waits
    def chmod(self, path, mode):
        return os.chmod(self._full(path), mode)

    @waits
    def chown(self, path, uid, gid):
        return os.chown(self._full(path), uid, gid)

    @waits
    def utimens(self, path, times=None):
        return os.utime(self._full(path), times)

    @waits
    def symlink(self, target, source):
        return os.symlink(source, self._full(target))


def main():
    global STALL
    backing, mountpoint, STALL = sys.argv[1:4]
    print("mounting", flush=True)
    FUSE(Passthrough(backing), mountpoint, foreground=True, nothreads=False)


if __name__ == "__main__":
    main()
