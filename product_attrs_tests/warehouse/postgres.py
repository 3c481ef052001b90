"""A throwaway PostgreSQL server for the lake tests: the team's catalog, for real, on this machine.

``start()`` runs ``initdb`` into a fresh temp folder and ``pg_ctl start`` with trust authentication,
listening only on a unix socket in that folder (no TCP port to collide with another test run). Each test
gets a database of its own (``create_database``). ``stop()`` stops the server (``-m immediate``: nothing
in it is worth a clean shutdown) and removes the folder.

PostgreSQL refuses to run as root, so as root the server's commands run as the ``postgres`` user (through
``runuser``, else ``setpriv``) and the folder is given to it. Anything missing raises ``Unavailable``, with a
sentence saying what, for the fixture to skip with; nothing is installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

#: The programs the server needs, all from one installation.
PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql")
#: Debian/Ubuntu keep each major version's programs here (not all of them on PATH).
DEBIAN_GLOB = "/usr/lib/postgresql/*/bin"
#: The role created by initdb and used by the tests (trust: no password).
USER = "postgres"
PORT = 5432  # only names the socket file: the server listens on no TCP address
START_TIMEOUT_S = 60


class Unavailable(RuntimeError):
    """PostgreSQL cannot be found or started here; the message says why (the skip reason)."""


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", folder.parent.name)) or (0,)


def find_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl, postgres and psql: the one of ``pg_ctl`` on PATH first, then
    the newest ``/usr/lib/postgresql/<version>/bin``."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted((Path(p) for p in glob.glob(DEBIAN_GLOB)), key=_version_key, reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in PROGRAMS):
            return folder
    return None


def _run_as_owner() -> tuple[list[str], tuple[int, int] | None]:
    """The command prefix that runs a program as the server's owner, and that owner's (uid, gid) when it
    is not us (as root: the ``postgres`` user)."""
    if os.geteuid() != 0:
        return [], None
    try:
        owner = pwd.getpwnam(USER)
    except KeyError:
        raise Unavailable(f"running as root and there is no {USER!r} user to run PostgreSQL as") from None
    if shutil.which("runuser"):
        return ["runuser", "-u", USER, "--"], (owner.pw_uid, owner.pw_gid)
    if shutil.which("setpriv"):
        prefix = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups", "--"]
        return prefix, (owner.pw_uid, owner.pw_gid)
    raise Unavailable(
        "running as root and neither runuser nor setpriv is there to run PostgreSQL as postgres"
    )


@dataclass
class Server:
    """A running server: its programs, its temp folder (data/, the socket, the log) and how to reach it."""

    bin_dir: Path
    root: Path
    prefix: list[str]
    stopped: bool = False

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def conninfo(self, dbname: str = "postgres") -> str:
        """The libpq connection string of ``dbname`` (what follows ``postgres:`` in a lake catalog)."""
        return f"dbname={dbname} host={self.socket_dir} port={PORT} user={USER}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` with psql (unaligned, tuples only) and return its output; raises on an error."""
        done = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
            + ["-h", str(self.socket_dir), "-p", str(PORT), "-U", USER, "-d", dbname, "-c", sql],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r} on {dbname}: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self) -> str:
        """A new empty database (one per test, so every test starts from a catalog never written)."""
        name = f"lake_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        """Stop the server at once and remove its folder; safe to call twice and after a failed start."""
        if self.stopped:
            return
        self.stopped = True
        try:
            if (self.data_dir / "postmaster.pid").exists():
                done = subprocess.run(
                    [*self.prefix, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir)]
                    + ["-m", "immediate", "-w", "-t", "30", "stop"],
                    capture_output=True,
                    timeout=60,
                )
                if done.returncode != 0:
                    _kill_postmaster(self.data_dir)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _kill_postmaster(data_dir: Path) -> None:
    """The server we started, by the process id it wrote (when pg_ctl could not stop it)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass


def start() -> Server:
    """Create and start a server in a new temp folder; raises ``Unavailable`` saying why it could not."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise Unavailable(
            f"PostgreSQL not found: no {', '.join(PROGRAMS)} beside pg_ctl on PATH nor in {DEBIAN_GLOB}"
        )
    prefix, owner = _run_as_owner()
    # Short and under /tmp: a unix socket path must stay under ~100 bytes, and the postgres user must reach
    # it (pytest's own tmp folders are private to root).
    root = Path(tempfile.mkdtemp(prefix="pa-pg-", dir="/tmp" if Path("/tmp").is_dir() else None))
    server = Server(bin_dir, root, prefix)
    try:
        if owner is not None:
            os.chown(root, *owner)
        _step(
            server,
            [str(bin_dir / "initdb"), "-D", str(server.data_dir), "-A", "trust", "-U", USER]
            + ["-E", "UTF8", "--locale=C", "--no-sync"],
            "initdb",
        )
        options = (
            f"-c listen_addresses='' -k {server.socket_dir} -p {PORT} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        _step(
            server,
            [str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(server.log_file)]
            + ["-w", "-t", str(START_TIMEOUT_S), "-o", options, "start"],
            "pg_ctl start",
        )
        try:
            server.psql("SELECT 1")
        except RuntimeError as exc:
            raise Unavailable(f"PostgreSQL started but does not answer: {exc}") from exc
    except BaseException:
        server.stop()
        raise
    return server


def _step(server: Server, command: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            [*server.prefix, *command], capture_output=True, text=True, timeout=START_TIMEOUT_S + 30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"PostgreSQL did not start: {what} failed: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-800:]
        log = server.log_tail()
        raise Unavailable(
            f"PostgreSQL did not start: {what} exited {done.returncode}: {detail}"
            + (f"\nserver log:\n{log}" if log else "")
        )
