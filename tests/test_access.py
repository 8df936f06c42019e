"""Access traces in (mmsim.access): the JSONL and CSV formats, the perf script and
damo importers, the merge into an strace log, and its replay."""

import pytest
from hypothesis import given, strategies as st

from mmsim import access
from mmsim.access import Access, AccessFormatError


def test_jsonl_and_csv_read_the_same_records():
    jsonl = ('{"time": 1.5, "pid": 42, "addr": "0x7f0000001000", "length": 8192, "op": "w"}\n'
             '\n{"time": 2, "pid": 43, "addr": 4096, "length": 4096, "op": "r"}\n')
    csv = "time,pid,addr,length,op\n1.5,42,0x7f0000001000,8192,w\n2,43,4096,4096,r\n"
    expected = [Access(1.5, 42, 0x7f0000001000, 8192, "w"), Access(2.0, 43, 4096, 4096, "r")]
    assert access.read_jsonl(jsonl) == access.read_csv(csv) == expected
    assert expected[0].addr == 0x7f0000001000 and expected[1].op == "r"


@pytest.mark.parametrize("line", [
    '{"time": 1, "pid": 1, "addr": 0, "length": 0, "op": "r"}',       # empty
    '{"time": 1, "pid": 1, "addr": 0, "length": 4096, "op": "x"}',    # op
    '{"time": 1, "pid": 1, "addr": "zz", "length": 4096, "op": "r"}',  # address
    '{"time": 1, "pid": 1, "length": 4096, "op": "r"}',                # missing
    '[1, 2]', 'not json'])
def test_bad_jsonl_says_which_line(line):
    with pytest.raises(AccessFormatError, match="line 2"):
        access.read_jsonl('{"time": 0, "pid": 1, "addr": 0, "length": 1, "op": "r"}\n' + line)


def test_csv_needs_its_header():
    with pytest.raises(AccessFormatError):
        access.read_csv("a,b\n1,2\n")


PERF = """\
          python  4242 [001] 100.250000: exceptions:page_fault_user: address=0x7f0000001234 ip=0x401000 error_code=0x6
          python  4242 [001] 100.500000: exceptions:page_fault_user: address=0x7f0000005000 ip=0x401000 error_code=0x4
          python  4242 [001] 100.600000: sched:sched_switch: prev_comm=python
            bash  4243/4243 100.700000:          1 page-faults:  55d0c8a2b123
"""


def test_perf_script_page_faults():
    assert access.from_perf_script(PERF) == [
        Access(100.25, 4242, 0x7f0000001000, 4096, "w"),
        Access(100.5, 4242, 0x7f0000005000, 4096, "r"),
        Access(100.7, 4243, 0x55d0c8a2b000, 4096, "r")]


def test_perf_fault_sample_without_an_address_is_refused():
    with pytest.raises(AccessFormatError, match="addr"):
        access.from_perf_script("bash 1 100.7: 1 page-faults: ffffffff81000000 sym\n"
                                "bash 1 100.8: 1 page-faults:\n")


DAMO = """\
base_time_absolute: 8 m 59.809 s

monitoring_start:                0 ns
monitoring_end:            104.599 ms
monitoring_duration:       104.599 ms
target_id: 0
nr_regions: 3
7f5f3a400000-7f5f3a600000(   2.000 MiB):   3
7f5f3a600000-7f5f3a800000(   2.000 MiB):   0
7f5f3a800000-7f5f3a801000(   4.000 KiB):  12

monitoring_start:          104.599 ms
monitoring_end:            209.198 ms
monitoring_duration:       104.599 ms
target_id: 0
nr_regions: 1
7f5f3a400000-7f5f3a800000(   4.000 MiB):   1
"""


def test_damon_regions_with_accesses_become_reads():
    recs = access.from_damon_raw(DAMO, {0: 77})
    assert [r.time for r in recs] == pytest.approx([0.104599, 0.104599, 0.209198])
    assert [r[1:] for r in recs] == [(77, 0x7f5f3a400000, 2 << 20, "r"),
                                     (77, 0x7f5f3a800000, 4096, "r"),
                                     (77, 0x7f5f3a400000, 4 << 20, "r")]
    assert access.from_damon_raw(DAMO, {}) == []


def test_merge_puts_records_before_the_first_later_call():
    trace = ("100 1700000000.100000 mmap(NULL, 8192, PROT_READ|PROT_WRITE, "
             "MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000\n"
             "100 1700000000.300000 munmap(0x7f0000000000, 8192) = 0\n")
    recs = [Access(0.2, 100, 0x7f0000000000, 4096, "w"), Access(0.9, 100, 0x1000, 4096, "r")]
    merged = access.merge(trace, recs, offset=1700000000.0).splitlines()
    assert merged[1] == "100 # access 0x7f0000000000 4096 w"
    assert merged[2].startswith("100 1700000000.300000 munmap")
    assert merged[3] == "100 # access 0x1000 4096 r"


@given(st.lists(st.floats(0, 10, allow_nan=False), max_size=20),
       st.lists(st.floats(0, 10, allow_nan=False), max_size=8))
def test_merge_keeps_every_line_and_orders_records_by_time(rec_times, line_times):
    lines = [f"1 {1700000000 + t:.6f} getpid() = 1" for t in sorted(line_times)]
    recs = [Access(t, 1, 4096 * i, 4096, "r") for i, t in enumerate(rec_times)]
    merged = access.merge("\n".join(lines), recs, offset=1700000000.0).splitlines()
    assert [ln for ln in merged if "getpid" in ln] == lines
    assert sorted(ln for ln in merged if "# access" in ln) == sorted(
        access.access_line(r) for r in recs)
    # Every access line sits after the calls logged no later than it.
    last_call = 0.0
    for ln in merged:
        if "getpid" in ln:
            last_call = float(ln.split()[1]) - 1700000000
        else:
            t = next(r.time for r in recs if access.access_line(r) == ln)
            assert t >= last_call - 1e-6


TRACE = ("100 1700000000.100000 mmap(0x200000000000, 4194304, PROT_READ|PROT_WRITE, "
         "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = 0x200000000000\n"
         "100 1700000000.300000 munmap(0x200000000000, 2097152) = 0\n"
         "100 1700000000.400000 exit_group(0) = ?\n")


def test_replayed_access_lines_fault_the_pages(tmp_path, capsys):
    """Merged records drive the replay: the write before the munmap faults a THP in
    the half that stays; an access after it faults (EFAULT) and is shown."""
    from mmsim.cli import main
    (tmp_path / "t.strace").write_text(TRACE)
    (tmp_path / "a.csv").write_text("time,pid,addr,length,op\n"
                                    "0.2,100,0x200000200000,4096,w\n"
                                    "0.35,100,0x200000000000,4096,r\n")
    assert main(["merge-access", str(tmp_path / "t.strace"), str(tmp_path / "a.csv"),
                 "--offset", "1700000000", "-o", str(tmp_path / "m.strace")]) == 0
    merged = (tmp_path / "m.strace").read_text()
    assert merged.splitlines()[1] == "100 # access 0x200000200000 4096 w"
    assert merged.splitlines()[3] == "100 # access 0x200000000000 4096 r"
    merged = merged.replace("100 1700000000.400000 exit_group(0) = ?\n", "100 # dump\n")
    (tmp_path / "m.strace").write_text(merged)
    assert main(["replay", str(tmp_path / "m.strace"), "--thp", "always"]) == 0
    out = capsys.readouterr().out
    assert "# access 0x200000000000 4096 r = -1 EFAULT (Bad address)" in out
    assert "# access 0x200000200000" not in out     # a successful access prints nothing
    smaps = out.split("# dump pid")[1]
    assert "AnonHugePages:      2048 kB" in smaps


def test_a_malformed_access_line_is_a_trace_error():
    from mmsim.strace import TraceError, parse
    for line in ("# access 0x1000 4096", "# access 0x1000 0 w", "# access zz 4096 r"):
        with pytest.raises(TraceError):
            parse(line + "\n", "t")


def test_merge_access_refuses_malformed_records(tmp_path, capsys):
    from mmsim.cli import main
    (tmp_path / "t.strace").write_text(TRACE)
    (tmp_path / "a.jsonl").write_text('{"time": 1}\n')
    assert main(["merge-access", str(tmp_path / "t.strace"), str(tmp_path / "a.jsonl")]) == 2
    assert "line 1" in capsys.readouterr().err


def test_access_outcome_in_the_json_document(tmp_path, capsys):
    import json
    from mmsim.cli import main
    (tmp_path / "t.strace").write_text("# access 0x1000 4096 w\n")
    assert main(["replay", str(tmp_path / "t.strace"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["events"] == [{"type": "access", "line": 1, "pid": doc["events"][0]["pid"],
                              "text": "# access 0x1000 4096 w = -1 EFAULT (Bad address)",
                              "result": -14}]


def test_merge_leaves_out_pids_the_log_never_names_and_can_align_clocks():
    trace = ("100 1700000000.100000 getpid() = 100\n"
             "[pid 101] 1700000000.200000 getpid() = 101\n"
             "100 1700000000.300000 getpid() = 100\n")
    recs = [Access(5.0, 100, 4096, 4096, "r"), Access(5.15, 101, 8192, 4096, "w"),
            Access(5.05, 999, 0, 4096, "r")]
    assert access.logged_pids(trace) == {100, 101}
    lines = access.merge(trace, recs, offset=None).splitlines()
    # auto: the first record (5.0) lines up with the first line (.1), so 5.15 is .25.
    assert lines == ["100 # access 0x1000 4096 r", "100 1700000000.100000 getpid() = 100",
                     "[pid 101] 1700000000.200000 getpid() = 101", "101 # access 0x2000 4096 w",
                     "100 1700000000.300000 getpid() = 100"]


def test_real_perf_script_output_parses():
    """A line of perf 6.1's own output for the tracepoint (recorded on the reference
    machine): instruction fetches (error_code 0x14) are reads, 0x6 a user write."""
    text = ("         python3 15950 [000] 36643.134755: exceptions:page_fault_user: "
            "address=0x7fcc96cb0b70 ip=0x7fcc96cb0b70 error_code=0x14\n"
            "         python3 15950 [000] 36643.134762: exceptions:page_fault_user: "
            "address=0x7fcc96cc9e06 ip=0x7fcc96cb17ad error_code=0x6\n")
    assert access.from_perf_script(text) == [
        Access(36643.134755, 15950, 0x7fcc96cb0000, 4096, "r"),
        Access(36643.134762, 15950, 0x7fcc96cc9000, 4096, "w")]
