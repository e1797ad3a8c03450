"""The shared ledger: books within the day's limit atomically, on a SQLite file and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pg_server import PostgresServer

from tiktok_repost_async import (
    LedgerError,
    PostgresLedger,
    SQLiteLedger,
    Store,
    StoreLedger,
    mask_url,
    open_ledger,
)
from tiktok_repost_async.ledger import ENV_LEDGER, Ledger, ledger_source

DAY = "2026-12-07"

# One process books one request at a time, as fast as it can, until refused; it prints how
# many it got. Several of them at once on one ledger must together get exactly the limit.
BOOKER = textwrap.dedent(
    """
    import sys
    from tiktok_repost_async import open_ledger
    spec, limit, tries, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ledger = open_ledger(spec, source=name)
    got = 0
    for _ in range(tries):
        if ledger.book(1, day="2026-12-07", limit=limit):
            got += 1
    ledger.close()
    print(got)
    """
)


def booked_by_processes(spec: str, limit: int, processes: int, tries: int) -> list[int]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", BOOKER, spec, str(limit), str(tries), f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    got = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        got.append(int(out))
    return got


def booked_by_threads(make: Callable[[str], Ledger], limit: int, threads: int) -> list[int]:
    got = [0] * threads
    start = threading.Barrier(threads)

    def book(index: int) -> None:
        ledger = make(f"t{index}")
        try:
            start.wait()
            for _ in range(limit):
                if ledger.book(1, day=DAY, limit=limit):
                    got[index] += 1
        finally:
            ledger.close()

    workers = [threading.Thread(target=book, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    return got


# -- what every shared ledger does ----------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Give a test the spec of a new shared ledger of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_books_within_the_limit_and_refuses_past_it(spec: str) -> None:
    with open_ledger(spec, source="lab:/a.db") as a, open_ledger(spec, source="lab:/b.db") as b:
        assert a.shared
        assert b.shared
        assert a.book(40, day=DAY, limit=60)
        assert not b.book(21, day=DAY, limit=60)  # all or none: 61 > 60
        assert b.book(20, day=DAY, limit=60)
        assert not a.book(1, day=DAY, limit=60)
        assert a.spent(DAY) == b.spent(DAY) == 60
        assert a.breakdown(DAY) == {"lab:/a.db": 40, "lab:/b.db": 20}
        b.refund(5, day=DAY)
        assert a.spent(DAY) == 55
        assert a.breakdown(DAY) == {"lab:/a.db": 40, "lab:/b.db": 15}
        assert a.book(5, day=DAY, limit=60)
        # Another day is a fresh budget; a refund never goes below zero.
        assert a.spent("2026-12-08") == 0
        a.refund(100, day=DAY)
        assert a.spent(DAY) == 0
        assert a.breakdown(DAY) == {"lab:/b.db": 15}
        assert not a.book(61, day="2026-12-08", limit=60)
        assert a.spent("2026-12-08") == 0


def test_a_reopened_ledger_keeps_its_count(spec: str) -> None:
    with open_ledger(spec, source="x") as ledger:
        assert ledger.book(7, day=DAY, limit=10)
    with open_ledger(spec, source="y", create=False) as ledger:
        assert ledger.spent(DAY) == 7
        assert not ledger.book(4, day=DAY, limit=10)


def test_bad_arguments_are_refused_before_booking(spec: str) -> None:
    with open_ledger(spec, source="x") as ledger:
        with pytest.raises(ValueError, match="day must be a UTC date"):
            ledger.book(1, day="7 Dec", limit=10)
        with pytest.raises(ValueError, match="n must be a non-negative int"):
            ledger.book(-1, day=DAY, limit=10)
        assert ledger.spent(DAY) == 0


def test_processes_booking_at_once_never_exceed_the_limit(spec: str) -> None:
    # Six processes, each trying for the whole budget, one request at a time.
    got = booked_by_processes(spec, limit=150, processes=6, tries=150)
    assert sum(got) == 150
    with open_ledger(spec, source="check") as ledger:
        assert ledger.spent(DAY) == 150
        assert sum(ledger.breakdown(DAY).values()) == 150
        assert ledger.breakdown(DAY) == {f"p{i}": n for i, n in enumerate(got) if n}


def test_threads_booking_at_once_never_exceed_the_limit(spec: str) -> None:
    got = booked_by_threads(lambda name: open_ledger(spec, source=name), limit=80, threads=8)
    assert sum(got) == 80
    with open_ledger(spec, source="check") as ledger:
        assert ledger.spent(DAY) == 80


# -- SQLite ---------------------------------------------------------------------------------


def test_sqlite_ledger_is_its_own_versioned_file_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with SQLiteLedger(path, source="host:/s.db") as ledger:
        ledger.book(3, day=DAY, limit=10)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = dict(conn.execute("SELECT key, value FROM ledger_meta"))
        assert meta["schema_version"] == "1"
        assert conn.execute("SELECT day, count FROM ledger_days").fetchall() == [(DAY, 3)]


def test_sqlite_ledger_refuses_what_is_not_one(tmp_path: Path) -> None:
    store_path = tmp_path / "harvest.db"
    Store(store_path, fields=["id"], max_count=100).close()
    with pytest.raises(LedgerError, match="is a harvest store, not a ledger"):
        SQLiteLedger(store_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all" * 10)
    with pytest.raises(LedgerError, match="not an SQLite database"):
        SQLiteLedger(text)
    with pytest.raises(LedgerError, match=r"no ledger at .*does not exist"):
        SQLiteLedger(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(LedgerError, match="there is no directory"):
        SQLiteLedger(tmp_path / "nowhere" / "ledger.db")
    with pytest.raises(LedgerError, match="is a directory"):
        SQLiteLedger(tmp_path)


def test_a_newer_ledger_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    SQLiteLedger(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE ledger_meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(LedgerError, match="schema version 2, newer than this version reads"):
        SQLiteLedger(path)


def test_a_busy_sqlite_ledger_waits_for_the_holder(tmp_path: Path) -> None:
    # Another process holds the write lock for a moment: the booking waits, then goes through.
    path = tmp_path / "ledger.db"
    ledger = SQLiteLedger(path, source="me")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    released.start()
    try:
        assert ledger.book(1, day=DAY, limit=5)
    finally:
        released.join()
        holder.close()
        ledger.close()


# -- the store's own -------------------------------------------------------------------------


def test_without_a_shared_ledger_the_store_keeps_its_own(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", fields=["id"], max_count=100) as store:
        ledger = open_ledger(None, store=store, environ={})
        assert isinstance(ledger, StoreLedger)
        assert not ledger.shared
        assert ledger.book(9, day=DAY, limit=10)
        assert not ledger.book(2, day=DAY, limit=10)
        ledger.refund(4, day=DAY)
        assert store.requests_on(DAY) == ledger.spent(DAY) == 5
        # TIKTOK_LEDGER names a shared one when no spec is given.
        shared = open_ledger(None, store=store, environ={ENV_LEDGER: str(tmp_path / "l.db")})
        assert isinstance(shared, SQLiteLedger)
        assert shared.source == ledger_source(tmp_path / "s.db")
        shared.close()
    with pytest.raises(LedgerError, match="neither a file path nor a postgresql:// URL"):
        open_ledger("mysql://u:hunter2@h/db")


# -- passwords --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://lab:s3cr%40t@db.lab:5432/q", "postgresql://lab:***@db.lab:5432/q"),
        (
            "postgres://lab:p@ss:w@rd@db/q?sslmode=require",
            "postgres://lab:***@db/q?sslmode=require",
        ),
        ("postgresql://lab@db/q?password=s3cret&x=1", "postgresql://lab@db/q?password=***&x=1"),
        ("postgresql://db.lab/q", "postgresql://db.lab/q"),
        ("/srv/lab/ledger.db", "/srv/lab/ledger.db"),
        ("host=db password='a b' user=lab", "host=db password=*** user=lab"),
    ],
)
def test_mask_url_hides_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_postgres_errors_and_reprs_never_show_the_password(
    postgres_server: PostgresServer,
) -> None:
    good = postgres_server.url()
    wrong = good.replace(postgres_server.password, "Wr0ngPassw0rd")
    with pytest.raises(LedgerError) as refused:
        PostgresLedger(wrong, source="x")
    assert "password authentication failed" in str(refused.value)
    assert "Wr0ngPassw0rd" not in str(refused.value)
    assert ":***@" in str(refused.value)
    missing = postgres_server.url("no_such_database")
    with pytest.raises(LedgerError) as absent:
        PostgresLedger(missing, source="x")
    assert "no_such_database" in str(absent.value)
    assert postgres_server.password not in str(absent.value)
    with PostgresLedger(good, source="x") as ledger:
        assert postgres_server.password not in repr(ledger)
        assert postgres_server.password not in ledger.label


def test_pgpassword_and_pgpass_work(
    postgres_server: PostgresServer,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    bare = postgres_server.url(database, password=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(LedgerError, match="password"):
        PostgresLedger(bare, source="x")
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    with PostgresLedger(bare, source="x") as ledger:
        assert ledger.book(1, day=DAY, limit=5)
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(
        f"{postgres_server.host}:{postgres_server.port}:*:postgres:{postgres_server.password}\n"
    )
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    with PostgresLedger(bare, source="x") as ledger:
        assert ledger.spent(DAY) == 1


def test_a_postgres_ledger_without_psycopg_names_the_extra(tmp_path: Path) -> None:
    # A Python where psycopg cannot be imported (None in sys.modules blocks the import).
    script = textwrap.dedent(
        """
        import sys
        sys.modules["psycopg"] = None
        from tiktok_repost_async import LedgerError, open_ledger
        try:
            open_ledger("postgresql://lab:hunter2@127.0.0.1:1/q")
        except LedgerError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'psycopg[binary]>=3.1' (the package's [postgres] extra)" in done.stdout
    assert "hunter2" not in done.stdout + done.stderr


def test_status_of_a_database_without_a_ledger_says_so(postgres_url: str) -> None:
    with pytest.raises(LedgerError, match="holds no ledger yet"):
        PostgresLedger(postgres_url, source="x", create=False)


def test_the_ledger_records_no_secret(postgres_url: str, tmp_path: Path) -> None:
    # What a ledger records: days, counts and sources (machine and store path), no URL.
    with open_ledger(postgres_url, source=ledger_source(tmp_path / "a.db")) as ledger:
        ledger.book(2, day=DAY, limit=5)
    import psycopg

    password = postgres_url.split(":")[2].split("@")[0]
    with psycopg.connect(postgres_url) as conn:
        rows = [
            repr(row)
            for table in ("tiktok_ledger_meta", "tiktok_ledger_days", "tiktok_ledger_sources")
            for row in conn.execute(f"SELECT * FROM {table}").fetchall()
        ]
    assert password not in "".join(rows)
    assert any(str(tmp_path / "a.db") in row for row in rows)
    assert os.uname().nodename in "".join(rows) or "localhost" in "".join(rows)
