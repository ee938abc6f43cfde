"""A throwaway PostgreSQL cluster that a test may stop and start at will.

The machine's shared PostgreSQL is never touched: `initdb` makes a new cluster in
a temporary folder, `pg_ctl` runs it on a free loopback port with its unix
sockets in that folder. PostgreSQL refuses to run as root, so under root every
PostgreSQL binary runs as the `postgres` user (`runuser -u postgres --`) and the
folder belongs to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN = Path(os.environ.get("TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"


def _is_root() -> bool:
    return os.geteuid() == 0


def missing_prerequisites() -> str | None:
    """Why a throwaway cluster cannot be made here, or None."""
    for binary in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / binary).is_file():
            return f"PostgreSQL binary {PG_BIN / binary} is absent"
    if _is_root():
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is absent (initdb refuses to run as root)"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run PostgreSQL as"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayPostgres:
    """One PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="izs-outage-pg-"))
        self.data = self.folder / "data"
        self.logfile = self.folder / "postgres.log"
        self.port = _free_port()
        if _is_root():
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.initialised = False
        self.frozen: list[int] = []

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if _is_root():
            command = ["runuser", "-u", "postgres", "--", *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            command,
            cwd=self.folder,  # readable by the postgres user, unlike the test's cwd may be
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _must(self, *args: str, timeout: float = 60) -> None:
        result = self._run(*args, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{self.log_tail()}"
            )

    def init(self) -> None:
        self._must(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        self.initialised = True
        settings = (
            "\n# throwaway cluster for tests/test_db_outage.py\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.folder}'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 100\n"
        )
        with (self.data / "postgresql.conf").open("a") as conf:  # stays the postgres user's
            conf.write(settings)

    def start(self) -> None:
        self._must(
            "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "immediate") -> None:
        self._must("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def _postmaster(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def _descendants(self, root: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended meanwhile
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found, queue = [], list(children.get(root, []))
        while queue:
            pid = queue.pop(0)
            found.append(pid)
            queue.extend(children.get(pid, []))
        return found

    def freeze(self) -> None:
        """Suspend every process of the cluster (SIGSTOP): connections stay open and the
        kernel still accepts new ones, but nothing answers, as in a network partition.
        The postmaster first, so that it forks no backend the scan below would miss."""
        postmaster = self._postmaster()
        os.kill(postmaster, signal.SIGSTOP)
        self.frozen = [postmaster]
        while fresh := [pid for pid in self._descendants(postmaster) if pid not in self.frozen]:
            for pid in fresh:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            self.frozen += fresh

    def thaw(self) -> None:
        for pid in self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = []

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status").returncode == 0

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop the cluster whatever its state, then delete its folder."""
        try:
            self.thaw()  # a stopped process cannot act on its shutdown signal
            if self.initialised and self.running():
                try:
                    self.stop("immediate")
                except (RuntimeError, subprocess.TimeoutExpired):
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """Last resort: SIGQUIT (immediate shutdown) to the postmaster this cluster started."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
