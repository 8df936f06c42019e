"""The page cache of regular files and the file LRU (the classic two-list LRU, as on
a kernel without multi-generational LRU): which file folios are cached, which are on
the active or the inactive list, and the vmstat events that move them.

Cached folios are ``pages.Page`` objects kept in ``Inode.cache`` (file page index ->
Page); every mapping of that file page maps the same object, so its ``mapcount``
counts the mappings across all address spaces.  Cached pages are never reclaimed (nothing in mmsim creates memory pressure); a
truncation removes the pages past the new end (pages.truncate_pages).
"""

INACTIVE, ACTIVE = 1, 2


class FileLru:
    """The machine's file LRU lists and page-cache counters (in pages)."""

    __slots__ = ("nr_inactive", "nr_active", "nr_file_pages", "nr_mapped",
                 "pgactivate", "pgdeactivate", "pgrotated")

    def __init__(self):
        self.nr_inactive = self.nr_active = 0
        self.nr_file_pages = self.nr_mapped = 0
        self.pgactivate = self.pgdeactivate = self.pgrotated = 0

    def add(self, page):
        """A folio read into the cache joins the inactive list (workingset refault
        detection is not modelled: no page ever leaves the cache)."""
        page.cache = self
        page.lru = INACTIVE
        self.nr_inactive += 1
        self.nr_file_pages += 1

    def remove(self, page):
        """A folio truncated out of the cache leaves its LRU list."""
        if page.lru == ACTIVE:
            self.nr_active -= 1
        elif page.lru == INACTIVE:
            self.nr_inactive -= 1
        self.nr_file_pages -= 1
        page.lru = 0
        page.cache = None

    def mark_accessed(self, page):
        """folio_mark_accessed: the first access sets PG_referenced, the second moves
        an inactive folio to the active list and clears it again."""
        if not page.referenced:
            page.referenced = True
        elif page.lru == INACTIVE:
            page.lru = ACTIVE
            self.nr_inactive -= 1
            self.nr_active += 1
            self.pgactivate += 1
            page.referenced = False

    def deactivate(self, page):
        """folio_deactivate (MADV_COLD): an active folio moves to the inactive list."""
        if page.lru == ACTIVE:
            page.lru = INACTIVE
            self.nr_active -= 1
            self.nr_inactive += 1
            self.pgdeactivate += 1
        page.referenced = False

    def deactivate_file(self, page):
        """deactivate_file_folio: an unmapped folio goes to the inactive list with its
        referenced bit cleared; a clean one to the tail, next in line for reclaim."""
        if page.mapcount:
            return  # someone still maps it: left alone
        if not page.dirty:
            self.pgrotated += 1
        self.deactivate(page)

    def meminfo_rows(self):
        """The /proc/meminfo rows this model keeps, ``(label, pages)`` in the kernel's order."""
        return [("Cached:", self.nr_file_pages), ("Active(file):", self.nr_active),
                ("Inactive(file):", self.nr_inactive), ("Mapped:", self.nr_mapped)]

    def meminfo(self):
        """The /proc/meminfo lines this model keeps, in the kernel's order and format."""
        return "".join(f"{name:<16}{n * 4:8d} kB\n" for name, n in self.meminfo_rows())

    def vmstat(self):
        """The /proc/vmstat lines this model keeps, in the kernel's order and format."""
        rows = (("nr_inactive_file", self.nr_inactive), ("nr_active_file", self.nr_active),
                ("nr_mapped", self.nr_mapped), ("nr_file_pages", self.nr_file_pages),
                ("pgactivate", self.pgactivate), ("pgdeactivate", self.pgdeactivate),
                ("pgrotated", self.pgrotated))
        return "".join(f"{name} {n}\n" for name, n in rows)


def find_or_read(lru, inode, index, page_factory):
    """filemap_fault's lookup: the cached folio for file page ``index``, read into the
    cache (and onto the inactive list) when it is not there yet."""
    cache = inode.cache
    page = cache.get(index)
    if page is None:
        page = cache[index] = page_factory(anon=False, dirty=False, mapcount=0)
        lru.add(page)
    return page


__all__ = ["FileLru", "find_or_read", "INACTIVE", "ACTIVE"]
