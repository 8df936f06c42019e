#!/bin/sh
# Re-record the real strace logs the replay tests use (run as any user, from this
# directory).  setarch -R turns layout randomisation off, so that `mmsim replay
# --norandmaps --follow` can reproduce every recorded result; manifest.json notes the
# size of every file the programs opened, so the tests skip on a machine whose files
# differ.
set -e
rec() { name=$1; shift; setarch -R strace -f -o "$name.strace" "$@" > /dev/null; }
rec true /usr/bin/true
rec cat /bin/cat /dev/null
rec ls /bin/ls -d /
rec sh_vfork /bin/sh -c '/usr/bin/true; /usr/bin/true'
rec sh_fork /bin/sh -c '/usr/bin/true & wait'
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
