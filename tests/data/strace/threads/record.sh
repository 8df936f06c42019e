#!/bin/sh
# Re-record the multi-threaded strace logs the thread replay tests use (from this
# directory; gcc and python3 needed).  Each program is recorded twice: with full ASLR
# (as a user records it) and under setarch -R (layout randomisation off), which
# `mmsim replay --norandmaps --follow --check` reproduces result for result.
#   pthreads.c  four pthreads that mmap, mprotect and munmap at once, then exit
#   threads.py  three Python threads allocating big bytearrays (glibc per-thread arenas)
# pthreads_race_norand.strace is the same program making 24 rounds per thread, recorded
# (under setarch -R) until strace printed a munmap's `resumed` line after another
# thread's mmap that already reused its range (4 such pairs in the kept log; 1 run of
# 10 showed that many): the test checks the log still holds such pairs.
# The programs run from /tmp/mmsim-pthreads and /tmp/mmsim-threads.py, so the logs name
# the same paths on every machine (tests/test_replay_threads.py puts them back there);
# manifest.json notes the size of every file the logs opened, so the tests skip on a
# machine whose files differ.
set -e
gcc -O1 -pthread -o /tmp/mmsim-pthreads pthreads.c
cp threads.py /tmp/mmsim-threads.py
strace -f -o pthreads.strace /tmp/mmsim-pthreads
setarch -R strace -f -o pthreads_norand.strace /tmp/mmsim-pthreads
setarch -R strace -f -o pthreads_race_norand.strace /tmp/mmsim-pthreads 24
strace -f -o python.strace /usr/bin/python3 -S -I /tmp/mmsim-threads.py
setarch -R strace -f -o python_norand.strace /usr/bin/python3 -S -I /tmp/mmsim-threads.py
python3 - <<'PY'
import glob, json, os, re
opened = {}
for log in sorted(glob.glob("*.strace")):
    files = set()
    for line in open(log):
        m = re.search(r'(?:execve|openat)\((?:AT_FDCWD, )?"([^"]+)"', line)
        if m and os.path.isfile(m.group(1)):
            files.add(m.group(1))
    opened[log] = {f: os.path.getsize(f) for f in sorted(files)}
json.dump(opened, open("manifest.json", "w"), indent=1, sort_keys=True)
PY
