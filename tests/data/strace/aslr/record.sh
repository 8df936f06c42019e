#!/bin/sh
# Re-record the full-ASLR strace logs the --follow tests replay (run as root or any
# user, from this directory, with kernel.randomize_va_space=2).  No -e filter, no
# setarch -R: the logs are what a user records.  The input files live in /tmp so
# their paths do not depend on where the repository is checked out.
set -e
[ "$(cat /proc/sys/kernel/randomize_va_space)" = 2 ] || { echo "needs full ASLR" >&2; exit 1; }
work=/tmp/mmsim-aslr
mkdir -p $work
printf 'pear\napple\nfig\nbanana\n' > $work/words.txt
rm -f $work/words.txt.xz $work/words.txt.gz
rec() { name=$1; shift; strace -f -o "$name.strace" "$@" > /dev/null; }
rec true /usr/bin/true
rec ls /usr/bin/ls /
rec python3 /usr/bin/python3.11 -c pass
rec gcc /usr/bin/gcc --version
rec sort /usr/bin/sort $work/words.txt
rec xz /usr/bin/xz -k $work/words.txt
rec gzip /usr/bin/gzip -k $work/words.txt
rec git /usr/bin/git --version
rec ldso /lib64/ld-linux-x86-64.so.2 /usr/bin/true
rec ldconfig /sbin/ldconfig -p
rec sh /bin/sh -c '/usr/bin/true; /usr/bin/ls / >/dev/null'
# Real work: a compile, git in a repository, sort of a large file, a pipeline and a
# threaded Python program.  Their inputs are removed afterwards: under --follow a file a
# log opened that is missing where it replays is simulated, so the tests need none.
printf 'int main(void) { return 0; }\n' > $work/prog.c
seq 1 200000 | sort -R --random-source=/dev/zero > $work/numbers.txt
rm -rf $work/repo && git init -q $work/repo
git -C $work/repo -c user.email=u@example.org -c user.name=u commit -q --allow-empty -m one
rec gcc_compile /usr/bin/gcc -O2 -o $work/prog $work/prog.c
rec git_log /usr/bin/git -C $work/repo log --oneline
rec sort_large /usr/bin/sort -n $work/numbers.txt
rec pipeline /bin/sh -c "/usr/bin/cat $work/numbers.txt | /usr/bin/grep 7 | /usr/bin/wc -l"
rec python_threads /usr/bin/python3.11 -c 'import threading; t = [threading.Thread(target=lambda: bytearray(1 << 22)) for _ in range(3)]; [x.start() for x in t]; [x.join() for x in t]'
rm -rf $work/prog.c $work/prog $work/numbers.txt $work/repo
# The real final layout: a destructor copies /proc/self/maps as the program exits
# (the preload is built where the log names it; the tests rebuild it there).
gcc -shared -fPIC -O2 -o $work/maps_preload.so maps_preload.c
# strace -E sets the variables for the traced program only, not for strace itself.
maps() { name=$1; shift
    strace -f -o "$name.strace" -E LD_PRELOAD=$work/maps_preload.so \
        -E MMSIM_MAPS_OUT=$PWD/$name.maps "$@" > /dev/null; }
maps sort_maps /usr/bin/sort $work/words.txt
maps true_maps /usr/bin/true
# The size of every system file the logs exec'd or opened (not /tmp, /root or /proc,
# which the tests make or do without), so the tests skip on a machine whose files differ.
python3 - <<'PY'
import glob, json, os, re
opened = {}
for log in sorted(glob.glob("*.strace")):
    files = set()
    for line in open(log):
        for m in re.finditer(r'(?:execve|openat)\((?:AT_FDCWD, )?"([^"]+)"', line):
            path = m.group(1)
            if os.path.isfile(path) and not path.startswith(("/tmp/", "/root/", "/proc/")):
                files.add(path)
    opened[log] = {f: os.path.getsize(f) for f in sorted(files)}
json.dump(opened, open("manifest.json", "w"), indent=1, sort_keys=True)
PY
