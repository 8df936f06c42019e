#!/bin/sh
# Re-record the file-handling logs (as root, from this directory).  The C programs are
# built into /tmp/mmsim-files and run there; the tests rebuild them under a --root
# folder that holds nothing else, so every file the programs make is simulated as the
# log saw it.  The *_norand logs are recorded under setarch -R (replay them with
# --norandmaps); the *_aslr ones with full ASLR.  manifest.json notes each binary's
# sha256 and every system file's size, so the tests skip where they differ.
set -e
here=$(pwd)
work=/tmp/mmsim-files
rm -rf "$work"
mkdir -p "$work"
gcc -O1 -o "$work/files" files.c
gcc -O1 -o "$work/memfd" memfd.c
cd "$work"
rec() { name=$1; shift; rm -rf d f.txt out a.tgz files.c; "$@" > /dev/null; }
rec files_norand setarch -R strace -f -o "$here/files_norand.strace" ./files
rec files_aslr strace -f -o "$here/files_aslr.strace" ./files
rec memfd_norand setarch -R strace -f -o "$here/memfd_norand.strace" ./memfd
rec memfd_aslr strace -f -o "$here/memfd_aslr.strace" ./memfd
rec sh_redirect setarch -R strace -f -o "$here/sh_redirect_norand.strace" \
    /bin/sh -c 'cd /tmp/mmsim-files && echo hi > f.txt && cat f.txt && cat < f.txt'
rec tar_sort setarch -R strace -f -o "$here/tar_sort_norand.strace" /bin/sh -c \
    "cp $here/files.c . && tar czf a.tgz files.c memfd && mkdir -p out && cd out && tar xzf ../a.tgz && sort ../files.c > s.txt && wc -l s.txt > /dev/null"
cd "$here"
python3 - <<'PY'
import glob, hashlib, json, os, re
out = {"binaries": {}, "logs": {}}
for b in ("files", "memfd"):
    out["binaries"][b] = hashlib.sha256(open("/tmp/mmsim-files/" + b, "rb").read()).hexdigest()
for log in sorted(glob.glob("*.strace")):
    files = set()
    for line in open(log):
        m = re.search(r'(?:execve|openat)\((?:AT_FDCWD, )?"(/[^"]+)"', line)
        if m and os.path.isfile(m.group(1)) and not m.group(1).startswith(("/tmp/", os.getcwd())):
            files.add(m.group(1))
    out["logs"][log] = {f: os.path.getsize(f) for f in sorted(files)}
json.dump(out, open("manifest.json", "w"), indent=1, sort_keys=True)
PY
rm -rf "$work"
