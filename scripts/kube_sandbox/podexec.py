"""Turns a fresh process into a pod's container, then execs the container's command.

Run by the kubelet stand-in as ``ip netns exec POD_NETNS python -I -S podexec.py SPEC.json``
(and the same way for exec probes and exec hooks). ``ip netns exec`` has already joined the
pod's network namespace and made a private mount namespace; this script, standard library
only, then:

1. joins a new UTS namespace whose hostname is the pod's name;
2. for a non-root user, overlays (in this mount namespace only, adding ``o+x``) any folder on
   the way to the command or its interpreter that the user may not traverse: the host's
   files stand in for the image's, and ``/root`` may hold the Python interpreter;
3. bind-mounts each volume at its mountPath (read-only when asked), each source reached
   through a descriptor opened before any mount (an emptyDir at /tmp would otherwise hide
   the sandbox's folder). A mountPath whose parent folders do not exist is made inside an
   overlay (its upper layer on a tmpfs that exists only in this mount namespace) on the
   nearest existing ancestor, so nothing is written to the host; only when that ancestor
   is ``/`` itself is the folder made on the host, and recorded for ``down`` to remove;
4. bind-mounts the pod's own /etc/hosts (the sandbox's DNS), /etc/resolv.conf, /etc/hostname;
5. remounts ``/`` read-only for ``readOnlyRootFilesystem``;
6. changes to workingDir, sets groups, gid and uid (runAsUser/runAsGroup/fsGroup/
   supplementalGroups), ``no_new_privs`` for ``allowPrivilegeEscalation: false``;
7. sets the parent-death signal (SIGKILL when the kubelet stand-in dies; set after the uid
   change, which would clear it) and execs the command with the pod's environment.
"""

import ctypes
import json
import os
import shutil
import signal
import sys
import warnings  # noqa: F401  (os.execvpe imports it; after setuid the stdlib may be unreadable)

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
CLONE_NEWUTS = 0x04000000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38


def _enc(s):
    return s.encode() if s is not None else None


def mount(source, target, fstype, flags, data=None):
    if libc.mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


class Mounter:
    def __init__(self, spec):
        self.scratch = spec["scratch"]
        # Opened before any mount: a later overlay may cover the folder they live in.
        record = spec.get("host_dirs_record")
        self.record = open(record, "a") if record else None  # noqa: SIM115
        self.ours = []  # real paths this script mounted on
        self.scratch_fd = None
        self.n = 0

    def _ours(self, real):
        return any(real == m or real.startswith(m.rstrip("/") + "/") for m in self.ours)

    def _overlay(self, real, extra_mode=0):
        if self.scratch_fd is None:
            os.makedirs(self.scratch, exist_ok=True)
            mount("tmpfs", self.scratch, "tmpfs", 0, "mode=0755")
            # reached through the descriptor from now on: an overlay may cover its path
            self.scratch_fd = os.open(self.scratch, os.O_PATH | os.O_DIRECTORY)
        self.n += 1
        base = f"/proc/self/fd/{self.scratch_fd}"
        upper = f"{base}/upper{self.n}"
        work = f"{base}/work{self.n}"
        os.makedirs(upper)
        os.makedirs(work)
        st = os.stat(real)
        os.chmod(upper, (st.st_mode & 0o7777) | extra_mode)
        os.chown(upper, st.st_uid, st.st_gid)
        mount("overlay", real, "overlay", 0, f"lowerdir={real},upperdir={upper},workdir={work}")
        self.ours.append(real)

    def open_for(self, uid, gid, groups, files):
        """Let a non-root user reach ``files`` and their interpreters, as in an image.

        The host's file system stands in for the image; a folder on the way that others
        may not traverse (``/root`` holding the Python interpreter, say) is overlaid, in
        this mount namespace only, by a copy whose mode adds ``o+x``.
        """
        todo = []
        for f in files:
            if not f:
                continue
            real = os.path.realpath(f)
            todo.append(real)
            try:
                with open(real, "rb") as fh:
                    head = fh.readline(256)
            except OSError:
                continue
            if head.startswith(b"#!"):
                interp = head[2:].split()
                if interp:
                    todo.append(os.path.realpath(interp[0].decode(errors="replace")))
        for path in todo:
            d = os.path.dirname(path)
            chain = []
            while d not in ("/", ""):
                chain.append(d)
                d = os.path.dirname(d)
            for d in reversed(chain):
                try:
                    st = os.stat(d)
                except OSError:
                    break
                if st.st_uid == uid or st.st_mode & 0o001:
                    continue
                if (st.st_gid == gid or st.st_gid in (groups or [])) and st.st_mode & 0o010:
                    continue
                if self._ours(d):
                    continue
                self._overlay(d, extra_mode=0o001)

    def ensure_target(self, target, is_file):
        if os.path.lexists(target):
            return
        anc = os.path.dirname(target)
        while not os.path.exists(anc):
            anc = os.path.dirname(anc)
        real = os.path.realpath(anc)
        if self._ours(real):
            pass  # inside a volume or an overlay of ours: a folder there touches no host file
        elif real == "/":
            top = target
            while os.path.dirname(top) != "/":
                top = os.path.dirname(top)
            if self.record:
                self.record.write(top + "\n")
                self.record.flush()
        else:
            self._overlay(real)
        if is_file:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        else:
            os.makedirs(target, exist_ok=True)

    def bind(self, source, target, readonly):
        """Bind ``source`` (a path opened before any mount: see ``pin``) at ``target``."""
        is_file = not os.path.isdir(source)
        self.ensure_target(target, is_file)
        mount(source, target, None, MS_BIND | MS_REC)
        if readonly:
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        self.ours.append(os.path.realpath(target))


def pin(path):
    """A path to ``path`` that stays valid when a mount covers its folder."""
    return f"/proc/self/fd/{os.open(path, os.O_PATH)}"


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    try:
        if spec.get("hostname") and libc.unshare(CLONE_NEWUTS) == 0:
            name = spec["hostname"][:63].encode()
            libc.sethostname(name, len(name))
        m = Mounter(spec)
        uid, gid = spec.get("uid"), spec.get("gid")
        argv, env = spec["argv"], spec["env"]
        if uid:
            exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", ""))
            m.open_for(uid, gid, spec.get("groups"), [exe, sys.executable])
        # Every source lives under the sandbox's DIR, which an earlier mount (an emptyDir at
        # /tmp, an overlay) may cover: reach each through a descriptor opened beforehand.
        mounts = [(pin(mnt["source"]), mnt) for mnt in spec.get("mounts", [])]
        etc = [(pin(src), target) for target, src in spec.get("etc", {}).items()]
        for source, mnt in mounts:
            m.bind(source, mnt["target"], mnt.get("readonly", False))
        for source, target in etc:
            if os.path.exists(target):
                mount(source, target, None, MS_BIND)
        if m.record:
            m.record.close()  # an open writable file would make the read-only remount EBUSY
        if spec.get("readonly_root"):
            mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.chdir(spec.get("cwd") or "/")
        if spec.get("groups") is not None:
            os.setgroups(spec["groups"])
        if gid is not None:
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        if spec.get("no_new_privs"):
            libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    except OSError as e:
        print(f"kube-sandbox: cannot set up the container: {e}", file=sys.stderr, flush=True)
        sys.exit(128)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != spec.get("parent_pid", os.getppid()):
        sys.exit(137)  # the kubelet stand-in is already gone
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        code = 127 if isinstance(e, FileNotFoundError) else 126
        print(f"kube-sandbox: exec {argv[0]!r}: {e}", file=sys.stderr, flush=True)
        sys.exit(code)


if __name__ == "__main__":
    main()
