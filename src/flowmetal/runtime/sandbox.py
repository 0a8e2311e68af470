"""OS hardening of an executor process, applied once it has loaded everything it
will ever need (defence in depth under the language's own allow-list).

In order, each reported as "on" or why it is off:

- **memory**: `RLIMIT_AS` = the process's size after start-up + `--memory-limit`;
  an allocation past it fails, and the program fails with `MemoryLimitExceeded`.
  Also no core files (`RLIMIT_CORE` 0) and no file growth (`RLIMIT_FSIZE` 0).
- **fds**: every descriptor but stdin/stdout/stderr (/dev/null) and the worker's
  socket is closed (the worker starts executors with nothing else open anyway).
- **user**: started as root, the executor switches to `nobody` (no groups).
- **no_new_privs**: no set-uid binary or file capability can ever give it more.
- **landlock** (Linux ≥ 5.13): a ruleset with no rules over every filesystem
  access the kernel knows, TCP bind/connect (ABI ≥ 4), and signals and abstract
  Unix sockets outside the executor (ABI ≥ 6).
- **seccomp** (libseccomp through `pyseccomp`): execve/execveat, fork/vfork and
  clone of processes, socket/socketpair/connect/bind/listen/accept, every way to
  open, create, link, rename or remove a file, ptrace and the other processes'
  memory, signals to anyone but itself, mount/namespaces/bpf/keyrings/modules and
  user or group changes fail with EPERM.

Elsewhere than on Linux only the resource limits apply, and the report says so.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
from typing import Any

NOBODY = 65534

_DENIED = (
    # starting programs and processes
    "execve", "execveat", "fork", "vfork",
    # the network (the executor's one socket to its worker is already connected)
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # files: opening, creating, linking, renaming, removing, changing
    "open", "openat", "openat2", "creat", "open_by_handle_at", "name_to_handle_at", "mknod", "mknodat",
    "link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "mkdir", "mkdirat", "rmdir", "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat",
    "truncate", "memfd_create", "inotify_init", "inotify_init1", "fanotify_init", "uselib", "chdir", "fchdir",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "kcmp",
    # the system
    "mount", "umount2", "pivot_root", "chroot", "setns", "unshare", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl", "ioperm",
    "iopl", "personality", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid", "capset", "settimeofday", "clock_settime", "adjtimex", "sethostname",
    "setdomainname", "vhangup", "lookup_dcookie", "move_pages", "migrate_pages", "mbind", "set_mempolicy",
)


def lock_down(memory_limit: int | None, harden: bool, keep_fd: int) -> dict[str, str]:
    layers: dict[str, str] = {"memory": _limit_memory(memory_limit)}
    if not harden:
        for name in ("fds", "user", "no_new_privs", "landlock", "seccomp"):
            layers[name] = "off: hardening disabled"
        return layers
    seccomp = _load_seccomp()  # while files can still be read (it looks for libseccomp)
    layers["fds"] = _close_fds(keep_fd)
    layers["user"] = _drop_user()
    if not sys.platform.startswith("linux"):
        for name in ("no_new_privs", "landlock", "seccomp"):
            layers[name] = f"off: not available on {sys.platform}"
        return layers
    layers["no_new_privs"] = _no_new_privs()
    layers["landlock"] = _landlock()
    layers["seccomp"] = _seccomp(seccomp) if not isinstance(seccomp, str) else seccomp
    return layers


def _limit_memory(memory_limit: int | None) -> str:
    try:
        import resource
    except ImportError:
        return f"off: no resource limits on {sys.platform}"
    for limit in (resource.RLIMIT_CORE, resource.RLIMIT_FSIZE):
        try:
            resource.setrlimit(limit, (0, 0))
        except (ValueError, OSError):
            pass
    if memory_limit is None:
        return "off: no --memory-limit"
    size = _address_space()
    if size is None:
        return "off: the process size is unknown here"
    try:
        resource.setrlimit(resource.RLIMIT_AS, (size + memory_limit, size + memory_limit))
    except (ValueError, OSError) as e:
        return f"off: {e}"
    return "on"


def _address_space() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _close_fds(keep: int) -> str:
    try:
        fds = [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(3, keep)
        os.closerange(keep + 1, 1024)
        return "on"
    for fd in fds:
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, closed already
    return "on"


def _drop_user() -> str:
    if not hasattr(os, "geteuid"):
        return f"off: not available on {sys.platform}"
    if os.geteuid() != 0:
        return f"on (not root: runs as uid {os.geteuid()})"
    uid = gid = NOBODY
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
        uid, gid = entry.pw_uid, entry.pw_gid
    except (ImportError, KeyError):
        pass
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    return f"on (uid {uid})"


_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_PDEATHSIG = 1


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _no_new_privs() -> str:
    if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"off: prctl: {os.strerror(ctypes.get_errno())}"
    return "on"


def die_with_parent(parent_pid: int) -> None:
    """Be killed when the worker dies (even by kill -9); exit now if it already has."""
    if sys.platform.startswith("linux"):
        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(0)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


_SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture
_SYS_LANDLOCK_RESTRICT_SELF = 446


def _landlock() -> str:
    libc = _libc()
    abi = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 0:
        return f"off: the kernel has no Landlock ({os.strerror(ctypes.get_errno())})"
    fs = (1 << 13) - 1  # execute ... make_sym (ABI 1)
    if abi >= 2:
        fs |= 1 << 13  # refer
    if abi >= 3:
        fs |= 1 << 14  # truncate
    if abi >= 5:
        fs |= 1 << 15  # ioctl_dev
    attr = _RulesetAttr(fs, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    fd = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        return f"off: landlock_create_ruleset: {os.strerror(ctypes.get_errno())}"
    try:
        if libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            return f"off: landlock_restrict_self: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(fd)
    return f"on (ABI {abi})"


_CLONE_THREAD = 0x00010000


def _load_seccomp() -> Any:
    """The pyseccomp module, or why it is off."""
    try:
        import pyseccomp
    except Exception as e:  # not installed, or no libseccomp on this system
        return f"off: pyseccomp/libseccomp unavailable ({type(e).__name__}: {e})"
    return pyseccomp


def _seccomp(sc: Any) -> str:
    try:
        f = sc.SyscallFilter(defaction=sc.ALLOW)
        deny = sc.ERRNO(errno.EPERM)
        for name in _DENIED:
            try:
                f.add_rule(deny, name)
            except (ValueError, RuntimeError, OSError):
                pass  # a system call this architecture does not have
        me = os.getpid()
        f.add_rule(deny, "kill", sc.Arg(0, sc.NE, me))
        f.add_rule(deny, "tkill", sc.Arg(0, sc.NE, me))
        f.add_rule(deny, "tgkill", sc.Arg(0, sc.NE, me))
        # threads may still be made (clone with CLONE_THREAD), processes not
        f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
        try:
            f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # the C library falls back to clone
        except (ValueError, RuntimeError, OSError):
            pass
        f.load()
    except Exception as e:
        return f"off: {type(e).__name__}: {e}"
    return "on"
