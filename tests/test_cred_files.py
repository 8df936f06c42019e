"""Opening files with credentials (fs/namei.c: generic_permission) and ids in a user
namespace without maps (kernel/sys.c: make_kuid)."""

import errno

import pytest

from mmsim.kernel import Kernel
from mmsim.uapi import CLONE_NEWUSER, O_RDONLY, O_RDWR, O_WRONLY
from mmsim.testing import errno_of


@pytest.fixture
def proc():
    k = Kernel(randomize=False)
    inode = k.create_file("/data", 8192)
    inode.mode, inode.uid, inode.gid = 0o640, 0, 50
    return k.spawn()


def test_root_opens_anything_through_dac_override(proc):
    assert proc.open("/data", O_RDWR) >= 3


def test_other_users_get_the_other_bits(proc):
    proc.setuid(1000)
    assert errno_of(proc.open, "/data", O_RDONLY) == errno.EACCES
    proc.kernel.files["/data"].mode = 0o644
    assert proc.open("/data", O_RDONLY) >= 3
    assert errno_of(proc.open, "/data", O_WRONLY) == errno.EACCES


def test_the_group_bits_apply_to_the_group(proc):
    proc.setresgid(50, 50, 50)
    proc.setuid(1000)
    assert proc.open("/data", O_RDONLY) >= 3
    assert errno_of(proc.open, "/data", O_RDWR) == errno.EACCES


def test_a_new_user_namespace_keeps_the_owner_but_not_dac_override(proc):
    proc.kernel.files["/data"].uid = 7
    proc.unshare(CLONE_NEWUSER)
    # Every capability in the new namespace, none over a file whose owner is unmapped.
    assert errno_of(proc.open, "/data", O_RDONLY) == errno.EACCES
    proc.kernel.files["/data"].uid = 0
    assert proc.open("/data", O_RDWR) >= 3     # still uid 0 outside: the owner


@pytest.mark.parametrize("call,args", [("setuid", (1000,)), ("setgid", (1000,)),
                                       ("setresuid", (-1, 0, -1)),
                                       ("setresgid", (0, -1, -1))])
def test_ids_are_unmapped_in_a_new_user_namespace(proc, call, args):
    proc.unshare(CLONE_NEWUSER)
    assert errno_of(getattr(proc, call), *args) == errno.EINVAL
    # -1 everywhere changes nothing and maps nothing: allowed.
    if call.startswith("setres"):
        assert getattr(proc, call)(-1, -1, -1) == 0


def test_a_second_unshare_needs_a_mapped_creator(proc):
    proc.unshare(CLONE_NEWUSER)
    assert errno_of(proc.unshare, CLONE_NEWUSER) == errno.EPERM
