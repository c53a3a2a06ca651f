"""Where the grader runs a submission's kernel (labkit.grading; README, "For instructors").

Two modes:

- `bwrap` (Linux with bubblewrap, `apt-get install bubblewrap`): the kernel runs in new user,
  PID, network, IPC and UTS namespaces as an unprivileged user with no capabilities (uid 65534
  inside; a grader running as root has root's private files, e.g. /etc/shadow, masked).
  Its file system holds only the operating system and Python (read-only), the lab's code and
  data (read-only, without the instructor notebooks), and the student's own work folder, the one
  writable place (its temporary files go there too: TMPDIR; the rest, /tmp included, is
  read-only). It has no network (only its own loopback), sees no other process, and the kernel
  talks to the grader over Unix sockets in a folder of its own. When the kernel ends or is
  killed, everything it started dies with its PID namespace.
- `none` (macOS, Windows, or a Linux where user namespaces are disabled): the kernel runs as the
  grader's user, in its own process group, with only an allow-listed environment. It can read
  and write whatever the grader's user can, reach the network and signal the grader.

`choose("auto")` takes `bwrap` when it works here and says why not otherwise.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

# Environment variables a kernel keeps (everything else, e.g. tokens in CI, is dropped).
ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "PYTHONPATH", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED", "TERM", "LD_LIBRARY_PATH", "CUDA_HOME",
            "VIRTUAL_ENV", "CONDA_PREFIX", "LABKIT_MODEL")
SANDBOX_UID = 65534


class SandboxUnavailable(RuntimeError):
    """The requested isolation cannot be set up on this machine; the message says why."""


@functools.lru_cache(maxsize=1)
def bwrap_problem() -> str | None:
    """None when bubblewrap runs here; else why it does not."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux (this is {sys.platform})"
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap is not installed (Debian/Ubuntu: `apt-get install bubblewrap`)"
    try:
        probe = subprocess.run([exe, *_base_args(), "--", sys.executable, "-c", "pass"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bwrap could not start ({err})"
    if probe.returncode != 0:
        return ("bwrap cannot create its namespaces here (user namespaces disabled, or a container "
                f"without them): {probe.stderr.strip()[:200]}")
    return None


def choose(mode: str = "auto") -> str:
    """'bwrap' or 'none' for `mode` 'auto', 'bwrap' or 'none'. Raises SandboxUnavailable for
    'bwrap' where it does not work."""
    if mode == "none":
        return "none"
    problem = bwrap_problem()
    if mode == "bwrap" and problem:
        raise SandboxUnavailable(f"--sandbox bwrap: {problem}")
    if mode not in ("auto", "bwrap"):
        raise SandboxUnavailable(f"unknown sandbox mode {mode!r} (auto, bwrap or none)")
    return "none" if problem else "bwrap"


@functools.lru_cache(maxsize=None)
def _private(root: str) -> tuple[list[str], list[str]]:
    """(folders, files) under `root` that other users may not read. bwrap, run as root, maps the
    sandbox's user onto root outside, so root's private files (mode 600: /etc/shadow, keys) in a
    folder it binds would be readable: each is masked (an empty folder, /dev/null) instead."""
    folders, files = [], []
    for here, dirs, names in os.walk(root):
        for d in list(dirs):
            path = os.path.join(here, d)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if not os.path.islink(path) and (mode & 0o005) != 0o005:
                folders.append(path)
                dirs.remove(d)
        for n in names:
            path = os.path.join(here, n)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if not os.path.islink(path) and not mode & 0o004:
                files.append(path)
    return folders, files


def _masks(roots: list[str]) -> list[str]:
    if os.name != "posix" or os.geteuid() != 0:
        return []  # as another user, file permissions hold inside as outside
    args = []
    for root in roots:
        folders, files = _private(root)
        for path in folders:
            args += ["--tmpfs", path]
        for path in files:
            args += ["--ro-bind", "/dev/null", path]
    return args


def _python_dirs() -> list[Path]:
    """Python itself, the environment's packages, and where labkit's code is."""
    import labkit

    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
            Path(labkit.__file__).resolve().parent}
    return sorted(d.resolve() for d in dirs if d.exists())


def _base_args() -> list[str]:
    args = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for link in ("/bin", "/lib", "/lib64", "/lib32", "/sbin"):
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    for d in _python_dirs():
        args += ["--ro-bind", str(d), str(d)]
    return args + _masks(["/etc"])  # /usr and Python's folders hold no private files on Debian


def bwrap_args(workdir: Path, readonly: list[Path], writable: list[Path]) -> list[str]:
    """The bwrap command line (up to `--`) for a kernel working in `workdir`."""
    args = ["bwrap", *_base_args()]
    for d in readonly:
        if d.exists():
            args += ["--ro-bind", str(d), str(d), *_masks([str(d)])]
    for d in writable:
        args += ["--bind", str(d), str(d)]
    # a GPU, when there is one (the gpu profile): its device files and what CUDA reads in /sys
    gpus = sorted(str(p) for p in Path("/dev").glob("nvidia*"))
    gpus += ["/dev/dri"] if Path("/dev/dri").exists() else []
    for dev in gpus:
        args += ["--dev-bind", dev, dev]
    if gpus:
        args += ["--ro-bind", "/sys", "/sys"]
    # nothing but the writable folders can be written, not even the sandbox's own (in-memory)
    # root and /tmp: a write anywhere else fails instead of landing in a throwaway copy
    args += ["--remount-ro", "/tmp", "--remount-ro", "/"]
    # ipykernel polls its parent's PID (JPY_PARENT_PID), which a PID namespace hides: drop it
    args += ["--unsetenv", "JPY_PARENT_PID", "--chdir", str(workdir), "--"]
    return args


def kernel_env(extra: dict[str, str], home: Path) -> dict[str, str]:
    """An allow-listed environment for a submission's kernel."""
    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    (home / ".tmp").mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), TMPDIR=str(home / ".tmp"),
               MPLCONFIGDIR=str(home / ".config" / "matplotlib"),
               HF_HOME=str(home / ".cache" / "huggingface"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONNOUSERSITE="1", JUPYTER_RUNTIME_DIR=str(home / ".jupyter-runtime"))
    env.update(extra)
    return env


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command is wrapped in bwrap, talking over Unix sockets
    (`transport="ipc"`) in a private folder bound into the sandbox. Set `sandbox_args` (the
    bwrap prefix) and `socket_dir` before starting."""

    sandbox_args: list[str] = []

    def format_kernel_cmd(self, extra_arguments=None):
        return [*self.sandbox_args, *super().format_kernel_cmd(extra_arguments)]


def kernel_manager(mode: str, kernel_name: str, workdir: Path, readonly: list[Path],
                   writable: list[Path] | None = None):
    """(kernel manager, folder to remove afterwards) for a submission's kernel in `mode`: it
    starts in `workdir` and may write only under `writable` (default: `workdir`)."""
    if mode != "bwrap":
        return AsyncKernelManager(kernel_name=kernel_name), None
    socket_dir = Path(tempfile.mkdtemp(prefix="labkit-kernel-"))
    os.chmod(socket_dir, 0o777)  # the kernel, uid 65534 inside, creates its sockets here
    km = SandboxedKernelManager(kernel_name=kernel_name, transport="ipc", ip=str(socket_dir / "kernel"))
    km.connection_file = str(socket_dir / "connection.json")
    km.sandbox_args = bwrap_args(workdir, readonly, [*(writable or [workdir]), socket_dir])
    # SIGINT to the grader's process group does not reach a kernel in its own session and PID
    # namespace: interrupt over the kernel's control channel instead (ipykernel supports it)
    km.kernel_spec.interrupt_mode = "message"
    return km, socket_dir
