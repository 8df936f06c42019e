#!/bin/sh
# Re-record the output-form fixtures (run from this directory).  Each log records the
# same program under setarch -R with one of strace's output options, so that a form
# must parse to the same events as plain.strace (tests/test_strace_forms.py).
# true_*: one process (/usr/bin/true); fork_*: /bin/sh forking /usr/bin/true, with -f.
set -e
T=/usr/bin/true
F="/bin/sh -c '/usr/bin/true & wait'"
one() { name=$1; shift; setarch -R strace -f -o "true_$name.strace" "$@" $T; }
two() { name=$1; shift; eval setarch -R strace -f -o "fork_$name.strace" "$@" "$F" > /dev/null; }
one plain
one t -t
one tt -tt
one ttt -ttt
one r -r
one rt -r -t
one T -T
one i -i
one n -n
one Y -Y
one y -y
one yy -yy
one k -k -e trace=brk,mprotect,munmap
one xraw -X raw
one xverbose -X verbose
one memory -e trace=memory
one seccomp --seccomp-bpf -e trace=memory
two plain
two all -ttt -T -i -yy -X verbose
two every -r -t -T -n -i -yy -X raw
two tt_k -tt -k -y -e trace=brk,munmap,clone,wait4,openat
two memory -e trace=memory
two seccomp_r --seccomp-bpf -e trace=memory,process -r
two C -C
setarch -R strace -f -c -o c.strace $T
