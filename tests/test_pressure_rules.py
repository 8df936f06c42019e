"""Rules of reclaim under a cgroup limit that the live pressure scenarios
(docs/pressure.md, "Agreement with the live kernel") showed the simulator lacked."""

from mmsim.kernel import Kernel
from mmsim.readahead import BackingDev
from mmsim import vmscan
from mmsim.memcg import LRU_INACTIVE_FILE

P = 4096
MiB = 1 << 20


def setup(limit=8 * MiB, size=32 * MiB, ra_kb=2048):
    k = Kernel()
    k.spawn()
    k.mkdir("/sys/fs/cgroup/box")
    k.proc_write("/sys/fs/cgroup/box/memory.max", str(limit))
    inode = k.create_file("/f", size)
    inode.bdi = BackingDev(ra_pages=ra_kb // 4, io_pages=ra_kb // 4)
    proc = k.spawn(cgroup="box")
    return k, proc, inode


def read_all(proc, path, size, bufsize=128 * 1024):
    fd = proc.open(path)
    while proc.read(fd, bufsize):
        pass
    proc.close(fd)


def events(k):
    return dict(line.split() for line in k.proc_read("/sys/fs/cgroup/box/memory.events")
                .splitlines())


def test_large_folios_are_charged_and_reclaimed_whole():
    # mem_cgroup_charge charges a folio's pages at once, so a charge at the limit
    # reclaims at least the folio's size; isolate_lru_folios takes whole folios.  A
    # sequential read through a full cgroup in 512 KiB..2 MiB folios thus meets the
    # limit about once per folio, and never leaves part of a folio cached.
    k, proc, inode = setup()
    read_all(proc, "/f", 32 * MiB)
    large = {}
    for index, page in inode.cache.items():
        if page.order:
            large.setdefault((index >> page.order, page.order), []).append(index)
    assert large, "the reads should have cached large folios"
    for (head, order), members in large.items():
        assert len(members) == 1 << order, (head << order, order, len(members))
    folios = 32 * MiB // P >> 7        # at most one charge per 128 pages read, and
    assert 0 < int(events(k)["max"]) <= folios   # far fewer than one per 32 pages


def test_isolate_takes_a_large_folio_whole():
    k, proc, inode = setup(limit=64 * MiB, size=8 * MiB)
    read_all(proc, "/f", 8 * MiB)
    box = k.memcgs["box"]
    tail = next(iter(box.lruvec.lists[LRU_INACTIVE_FILE]))
    taken = vmscan.isolate(box, LRU_INACTIVE_FILE, 1)
    assert taken[0] is tail and len(taken) == 1 << tail.order
    big = [p for p in box.lruvec.lists[LRU_INACTIVE_FILE] if p.order >= 4][0]
    box.lruvec.lists[LRU_INACTIVE_FILE].move_to_end(big, last=False)
    taken = vmscan.isolate(box, LRU_INACTIVE_FILE, 1)
    assert big in taken and len(taken) == 1 << big.order
    assert {p.index >> big.order for p in taken} == {big.index >> big.order}


def stat(k, name="box"):
    return dict((key, int(v)) for key, v in (
        line.split() for line in k.proc_read(f"/sys/fs/cgroup/{name}/memory.stat").splitlines()))


def two_reads_then_stream(flush_before_stream):
    k, proc, inode = setup(limit=16 * MiB, size=8 * MiB)
    k.create_file("/big", 48 * MiB).bdi = inode.bdi
    read_all(proc, "/f", 8 * MiB)
    read_all(proc, "/f", 8 * MiB)
    if flush_before_stream:
        assert stat(k)["active_file"] == 8 * MiB      # the read flushes the statistics
    child = proc.fork()
    read_all(child, "/big", 48 * MiB)
    return k, inode


def test_reclaim_judges_the_lists_by_the_last_flushed_statistics():
    # prepare_scan_control reads the cgroup's LRU sizes as last flushed; during a
    # stream (well within the two seconds of the periodic flush) they still say the
    # inactive list is empty, so every reclaim deactivates: the working set the
    # stream competes with is all deactivated and mostly evicted (the live
    # read_pressure scenario: active_file 0 after the stream).
    k, inode = two_reads_then_stream(flush_before_stream=True)
    st = stat(k)
    assert st["active_file"] == 0
    assert len(inode.cache) < 8 * MiB // P // 2


def test_statistics_never_flushed_keep_the_active_list():
    # Simulator-defined: without a memory.stat read or Kernel.flush_stats the
    # statistics stay as the cgroup was made (empty lists): the inactive list never
    # looks low and the active working set is not aged.
    k, inode = two_reads_then_stream(flush_before_stream=False)
    assert len(inode.cache) == 8 * MiB // P
    k.flush_stats()
    assert k.memcgs["box"].flushed["lru"][3] == 8 * MiB // P
