"""Simulated files: inodes with a page cache, and open file descriptions
(``struct file``).  A VMA points at an open file description, so two opens of the same
file are two different ``file`` pointers and their mappings never merge."""

import itertools

from .readahead import DEFAULT_BDI, FileRaState

# What an inode is: a regular file (shmem files included), a directory, or one of the
# pseudo files a descriptor may refer to.  Only regular files have an mmap operation,
# so mmap of any other kind fails with ENODEV (checked on Linux 6.18: pipes, Unix and
# UDP sockets, eventfds and directories all give ENODEV).
REG, DIR, PIPE, SOCKET, EVENTFD = "reg", "dir", "pipe", "socket", "eventfd"
SEEKABLE = (REG, DIR)


class Inode:
    """A file's identity and size (what /proc shows as dev, inode and path)."""

    _numbers = itertools.count(1000)

    def __init__(self, path, size, dev=(0xFE, 0x00), ino=None, deleted=False, mode=0o666,
                 uid=0, gid=0, kind=REG, thp_area=False):
        self.path = path
        self.kind = kind   # REG, DIR, or a kind without a file system name (PIPE, ...)
        # Its filesystem places mappings with thp_get_unmapped_area (ext4, xfs).
        self.thp_area = thp_area
        self.size = size
        self.mode, self.uid, self.gid = mode, uid, gid   # permission bits and owner
        self.dev = dev
        self.ino = next(self._numbers) if ino is None else ino
        self.deleted = deleted
        self.cache = {}   # the page cache: file page index -> Page
        self.shadows = {}   # evicted pages' shadow entries: file page index -> shadow
        # Per 64-page block of the page cache's tree (an xarray leaf node): how many
        # pages and how many shadow entries it holds (pagecache's workingset nodes).
        self.blocks = {}
        # Its backing device's readahead limits (read_ahead_kb, max_sectors_kb) and the
        # largest folio order its file system caches in (readahead.BackingDev).
        self.bdi = DEFAULT_BDI
        # A host file taken to be fully cached already: its pages join the cache at
        # its first page-cache access (filemap.warm_pending).
        self.warm = False
        # A file of a tmpfs mount (Kernel.tmpfs): shmem, but not anonymous shmem.
        self.tmpfs = False

    def display_name(self):
        """The name /proc/PID/maps prints for mappings of this inode."""
        return self.path + (" (deleted)" if self.deleted else "")


class OpenFile:
    """An open file description: an inode plus the access mode it was opened with, its
    file offset (shared by every descriptor dup'ed or inherited from it), its O_APPEND
    status flag, the path it was opened by (what openat and fchdir resolve
    against), its readahead state (``ra``, f_ra) and the FMODE_RANDOM and
    FMODE_NOREUSE modes posix_fadvise sets."""

    def __init__(self, inode, readable=True, writable=False, shmem=False, append=False,
                 name=None):
        self.inode = inode
        self.readable = readable
        self.writable = writable
        self.shmem = shmem
        self.append = append
        self.pos = 0
        self.name = name
        self.ra = FileRaState(inode.bdi.ra_pages)
        self.random = False    # FMODE_RANDOM: POSIX_FADV_RANDOM
        self.noreuse = False   # FMODE_NOREUSE: POSIX_FADV_NOREUSE

    @property
    def mappable(self):
        """Whether the file has an mmap file operation (a pidfd, a pipe, ... has none)."""
        return self.inode.kind == REG

    @property
    def path(self):
        return self.name if self.name is not None else self.inode.path

    def __repr__(self):
        mode = ("r" if self.readable else "") + ("w" if self.writable else "")
        return f"<OpenFile {self.inode.path} {mode}>"
