"""A throwaway PostgreSQL server for the test session, started from the system's binaries.

``postgres_server`` (session-scoped) runs ``initdb`` and ``pg_ctl`` on a temporary directory and
a free loopback port, with password authentication over TCP (so that a test of PGPASSWORD or
``~/.pgpass`` means something), and stops the server when the session ends. PostgreSQL refuses to
run as root: as root, the binaries run as the ``postgres`` system user (Debian's ``postgresql``
package creates it) on a directory that user owns. ``postgres_url`` gives each test a database
of its own on that server.

Where the binaries (or psycopg) are missing, the tests that use them skip with one line saying
how to get them; when the environment variable CI is set, that is a failure instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import itertools
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

_HINT = "apt-get install postgresql (Debian/Ubuntu; CI installs it)"
_counter = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server: where it listens and its superuser's password."""

    host: str
    port: int
    user: str
    password: str

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        """Return a ``postgresql://`` URL of ``database``, with the password unless told not."""
        secret = f":{urllib.parse.quote(self.password, safe='')}" if password else ""
        return f"postgresql://{self.user}{secret}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """Create a fresh empty database and return its name."""
        import psycopg

        name = f"t{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


def _unavailable(why: str) -> None:
    message = f"PostgreSQL tests need {why}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must run them)", pytrace=False)
    pytest.skip(message)


def _bindir() -> Path | None:
    """Return a directory holding initdb, pg_ctl and postgres: on PATH, else Debian's."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path))

    candidates += [
        Path(path) for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)[::-1]
    ]
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a PostgreSQL server for the session; stop it and delete its files at the end."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg: pip install 'psycopg[binary]' (the test extra has it)")
    bindir = _bindir()
    if bindir is None:
        _unavailable(f"the server's binaries (initdb, pg_ctl), not found: {_HINT}")
    assert bindir is not None
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        # The server refuses to run as root: its files and process belong to `postgres`.
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable(f"a 'postgres' system user to run the server as (root cannot): {_HINT}")
        runuser = shutil.which("runuser")
        as_user = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-c"]
    # /tmp rather than pytest's tmp_path: the postgres user must be able to reach it.
    home = Path(tempfile.mkdtemp(prefix="tiktok-pg-", dir="/tmp"))
    data = home / "data"
    password = secrets.token_urlsafe(16)
    pwfile = home / "pw"
    pwfile.write_text(password + "\n")
    if owner is not None:
        for path in (home, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    home.chmod(0o700)

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        argv = [str(bindir / command[0]), *command[1:]]
        if as_user[-1:] == ["-c"]:  # su takes one command line
            argv = [*as_user, " ".join(f"'{arg}'" for arg in argv)]
        else:
            argv = [*as_user, *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    made = run(
        "initdb",
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        f"--pwfile={pwfile}",
        "-E",
        "UTF8",
        "--no-sync",
    )
    if made.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"initdb failed: {made.stderr.strip() or made.stdout.strip()}")
    port = 0
    started = None
    for _ in range(3):  # another process may take the free port before the server does
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k {home} -F -c fsync=off -c max_connections=60"
        started = run(
            "pg_ctl",
            "-D",
            str(data),
            "-w",
            "-t",
            "60",
            "-s",
            "-l",
            str(home / "log"),
            "-o",
            options,
            "start",
        )
        if started.returncode == 0:
            break
    if started is None or started.returncode != 0:
        log = (home / "log").read_text(errors="replace")[-2000:] if (home / "log").exists() else ""
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {started.stderr if started else ''} {log}")
    try:
        yield PostgresServer("127.0.0.1", port, "postgres", password)
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-s", "stop")
        with contextlib.suppress(OSError):
            shutil.rmtree(home)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """Give a test a fresh database of its own on the session's server: its URL, password in."""
    return postgres_server.url(postgres_server.create_database())
