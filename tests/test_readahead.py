"""Table tests of the readahead windows (mmsim.readahead, mm/readahead.c).

The sequences with ra_pages=2048 are what this host's ext4 root file system (read_ahead_kb
8192, large folios) cached after each read, measured with mincore (tests/test_filemap_live.py
checks the same against the live kernel)."""

import pytest

from mmsim.readahead import (MMAP_LOTSAMISS, BackingDev, FileRaState, async_mmap_ra,
                             async_ra, force_page_cache_ra, get_init_ra_size,
                             get_next_ra_size, sync_mmap_ra, sync_ra)

PAGE = 4096


@pytest.mark.parametrize("req,max_pages,want", [
    (1, 32, 4), (2, 32, 4), (3, 32, 8), (4, 32, 8), (5, 32, 16), (8, 32, 16),
    (9, 32, 32), (32, 32, 32), (100, 32, 32),
    (1, 2048, 4), (16, 2048, 64), (64, 2048, 256), (65, 2048, 256), (512, 2048, 1024),
    (513, 2048, 2048),
])
def test_init_ra_size(req, max_pages, want):
    assert get_init_ra_size(req, max_pages) == want


@pytest.mark.parametrize("cur,max_pages,want", [
    (1, 32, 4), (2, 32, 4), (4, 32, 8), (8, 32, 16), (16, 32, 32), (17, 32, 32),
    (32, 32, 32), (4, 2048, 16), (16, 2048, 64), (60, 2048, 240), (240, 2048, 480),
    (1024, 2048, 2048), (1025, 2048, 2048),
])
def test_next_ra_size(cur, max_pages, want):
    assert get_next_ra_size(cur, max_pages) == want


class Model:
    """A page cache as a set, with markers by page, driven like filemap_read."""

    def __init__(self, ra_pages=32, max_order=9, npages=1 << 16):
        self.bdi = BackingDev(ra_pages=ra_pages, io_pages=1024, max_order=max_order)
        self.ra = FileRaState(ra_pages)
        self.cache, self.marks = set(), {}
        self.isize = npages * PAGE

    def apply(self, plan):
        for lo, hi in plan.ranges:
            assert not self.cache & set(range(lo, hi))
            self.cache.update(range(lo, hi))
        if plan.mark:
            head, nr = plan.mark
            assert set(range(head, head + nr)) <= self.cache
            for i in range(head, head + nr):
                self.marks[i] = plan.mark

    def read(self, index, n=1, random=False):
        """A read of pages [index, index + n), one page batch at a time."""
        last = index + n
        i = index
        while i < last:
            if i not in self.cache:
                self.apply(sync_ra(self.cache, self.isize, self.bdi, self.ra, i, last - i,
                                   random))
            if i not in self.cache:
                self.cache.add(i)
            while i < last and i in self.cache:
                mark = self.marks.get(i)
                i += 1
                if mark:
                    head, nr = mark
                    for j in range(head, head + nr):
                        self.marks.pop(j, None)
                    self.apply(async_ra(self.cache, self.isize, self.bdi, self.ra, head, nr,
                                        last - head))
                    break
        self.ra.prev_pos = last * PAGE

    def top(self):
        return max(self.cache) + 1 if self.cache else 0


def test_sequential_one_page_reads_large_folios():
    # Measured on ext4 (read_ahead_kb 8192): cached extent after pread of page i.
    m = Model(ra_pages=2048)
    want = {0: 4, 1: 20, 3: 20, 4: 80, 19: 80, 20: 320, 79: 320, 80: 768}
    for i in range(81):
        m.read(i)
        if i in want:
            assert (i, m.top()) == (i, want[i])
    assert m.cache == set(range(768))


def test_sequential_base_pages_window_alignment():
    # Without large folios the order stays 0, so the window end is aligned to 4 pages.
    m = Model(ra_pages=2048, max_order=0)
    for i in range(5):
        m.read(i)
    assert m.top() == 84
    assert m.ra.order == 0


def test_default_ra_pages_sequential():
    # 128 KiB of readahead with large folios: the window end is trimmed to the folio
    # alignment of the order the next window may use, so the ramp is uneven.
    m = Model(ra_pages=32)
    want = {0: ((0, 4, 3), 4), 1: ((4, 8, 8), 12), 4: ((12, 4, 4), 16),
            12: ((16, 8, 8), 24), 16: ((24, 8, 8), 32), 24: ((32, 16, 16), 48),
            48: ((64, 32, 32), 96), 64: ((96, 32, 32), 128)}
    for i in range(65):
        m.read(i)
        if i in want:
            assert (i, m.ra.window(), m.top()) == (i,) + want[i]
    assert m.ra.order == 5


def test_big_read_starts_with_full_window():
    m = Model(ra_pages=32)
    m.read(0, 16)
    assert m.ra.window()[:2] == (0, 32) or m.ra.start > 0
    assert set(range(16)) <= m.cache


def test_small_random_read_reads_request_only():
    m = Model(ra_pages=32)
    m.ra.prev_pos = 100 * PAGE
    m.read(500, 2)
    assert m.cache == {500, 501}
    assert m.ra.window() == (0, 0, 0)   # state untouched


def test_read_after_cached_run_takes_its_length():
    m = Model(ra_pages=32)
    m.cache.update(range(90, 100))
    m.ra.prev_pos = 5 * PAGE
    m.read(100)
    # contig 10 > req 1: window of 11 pages from 100, marker 1 from its end
    assert m.ra.window() == (100, 11, 1)
    assert m.cache == set(range(90, 111))
    assert m.marks[110] == (110, 1)


def test_cached_from_file_start_doubles():
    m = Model(ra_pages=32)
    m.cache.update(range(0, 5))
    m.ra.prev_pos = 50 * PAGE
    m.read(5)
    assert m.ra.window() == (5, 11, 1)


def test_fmode_random_reads_just_the_request():
    m = Model(ra_pages=32)
    m.read(0, 3, random=True)
    assert m.cache == {0, 1, 2}
    assert not m.marks


def test_zero_ra_pages_reads_one_page_at_a_time():
    m = Model(ra_pages=0)
    m.read(0, 3)
    assert m.cache == {0, 1, 2}


def test_window_stops_at_eof():
    m = Model(ra_pages=32, npages=3)
    m.read(0)
    assert m.cache == {0, 1, 2}
    assert m.marks == {1: (1, 1)}   # window 4, marker 3 from its end, below EOF


def test_interleaved_marker_guesses_size():
    m = Model(ra_pages=32, max_order=0)
    m.cache.update(range(0, 20))
    m.marks[10] = (10, 1)
    m.ra.start, m.ra.size, m.ra.async_size = 500, 8, 8   # another stream's state
    m.ra.prev_pos = 9 * PAGE
    m.read(10)
    # next miss at 20: old async 10 + req 1 = 11 -> next size 22 from 20, end trimmed to
    # a multiple of 4 (order 0 + 2)
    assert m.ra.window() == (20, 20, 20)
    assert m.cache == set(range(0, 40))


def test_force_chunks_and_limit():
    bdi = BackingDev(ra_pages=32, io_pages=1024)
    ra = FileRaState(32)
    plan = force_page_cache_ra(set(), 1 << 30, bdi, ra, 10, 5000)
    assert plan.ranges == [(10, 10 + 1024)]
    assert plan.mark is None
    plan = force_page_cache_ra({12}, 20 * PAGE, bdi, ra, 10, 100)
    assert plan.ranges == [(10, 12), (13, 20)]


def test_mmap_read_around():
    bdi = BackingDev(ra_pages=32)
    ra = FileRaState(32)
    plan = sync_mmap_ra(set(), 1000 * PAGE, bdi, ra, 100)
    assert plan.ranges == [(84, 116)]
    assert plan.mark == (108, 1)
    assert ra.mmap_miss == 1
    plan = sync_mmap_ra(set(), 1000 * PAGE, bdi, ra, 3)
    assert plan.ranges == [(0, 32)]


def test_mmap_random_and_sequential():
    bdi = BackingDev(ra_pages=32)
    ra = FileRaState(32)
    assert not sync_mmap_ra(set(), 1000 * PAGE, bdi, ra, 100, rand=True).ranges
    plan = sync_mmap_ra(set(), 1000 * PAGE, bdi, ra, 100, seq=True)
    assert plan.ranges == [(100, 132)]
    assert ra.mmap_miss == 0


def test_mmap_lotsamiss():
    bdi = BackingDev(ra_pages=32)
    ra = FileRaState(32)
    for _ in range(MMAP_LOTSAMISS):
        assert sync_mmap_ra(set(), 1000 * PAGE, bdi, ra, 500).ranges
    assert not sync_mmap_ra(set(), 1000 * PAGE, bdi, ra, 500).ranges
    # the miss is counted before the test: two hits bring it back under the limit
    async_mmap_ra(set(), 1000 * PAGE, bdi, ra, 500, 1, False)
    assert ra.mmap_miss == MMAP_LOTSAMISS
    assert not sync_mmap_ra(set(), 1000 * PAGE, bdi, ra, 500).ranges
    async_mmap_ra(set(), 1000 * PAGE, bdi, ra, 500, 1, False)
    async_mmap_ra(set(), 1000 * PAGE, bdi, ra, 500, 1, False)
    assert sync_mmap_ra(set(), 1000 * PAGE, bdi, ra, 500).ranges
