"""Data frames and exports read back with the real libraries, every id as the simulator sent it.

pyarrow, pandas, Polars and DuckDB read a store (`to_arrow`, `to_pandas`, `to_polars` of
`open_store(spec)`) and its exports (Parquet and CSV, ids as numbers or as text, and the
dehydrated ``--ids-only``), and every id (the video's, ``music_id``, the nested hashtag, sticker
and effect ids) is compared, as decimal text, with the simulator's own wire JSON: users whose
ids are 19 digits, above int64 and 20 digits above uint64, and a music_id above int64 (which
``pd.read_json`` turns into a float). Each test runs on both engines: a SQLite file and a
database on the session's throwaway PostgreSQL server (`postgres_server`, tests/pg_server.py),
whose ``--db postgresql://`` the exports read.
"""

from __future__ import annotations

import asyncio
import csv
import decimal
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import make_client, run_main

from tiktok_repost_async import PostgresStore, Store, UserState, harvest, open_store
from tiktok_repost_async.export import MissingExtraError
from tiktok_repost_async.simulator import Simulator

# hugeid: ids above int64 and of 20 digits above uint64, some music_ids above int64.
USERS = ["hugeid_n150", "alice_n250", "empty_one", "bob_n40"]
INT64_MAX = 2**63 - 1
NESTED = (
    ("hashtag_info_list", "hashtag_id"),
    ("sticker_info_list", "sticker_id"),
    ("effect_info_list", "effect_id"),
)


def digits(value: Any) -> str | None:
    """Return an id of the wire JSON as its decimal text (the wire sends a number or a string)."""
    if value is None:
        return None
    assert isinstance(value, int | str), value
    assert not isinstance(value, bool), value
    return str(value)


def wire_rows(sim: Simulator, names: list[str], epoch: int | None = None) -> list[dict[str, Any]]:
    """Return each video's ids as the simulator sent them, as text, in export order."""
    rows = []
    for name in names:
        for video in sim.ground_truth(name, epoch=epoch):
            row: dict[str, Any] = {
                "reposted_by": name,
                "id": digits(video["id"]),
                "music_id": digits(video.get("music_id")),
            }
            for column, key in NESTED:
                items = video.get(column)
                row[column] = None if items is None else [digits(item[key]) for item in items]
            rows.append(row)
    return rows


def text(value: Any) -> str | None:
    """Return an id as read back by a library (Decimal, int or str) as its decimal text."""
    if value is None:
        return None
    if isinstance(value, decimal.Decimal):
        assert value == value.to_integral_value(), value
        return str(int(value))
    assert isinstance(value, int | str), type(value)
    return str(value)


def nested_text(items: Any, key: str) -> list[str | None] | None:
    if items is None:
        return None
    return [text(item[key]) for item in items]


def read_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the ids of rows read back by any library, as text, in the shape of `wire_rows`."""
    return [
        {
            "reposted_by": record["reposted_by"],
            "id": text(record["id"]),
            "music_id": text(record["music_id"]),
            **{column: nested_text(record[column], key) for column, key in NESTED},
        }
        for record in records
    ]


def new_store(request: pytest.FixtureRequest, folder: Path, engine: str) -> str:
    """Return a new store's place on ``engine``: a SQLite file, or a fresh PostgreSQL URL."""
    if engine == "sqlite":
        return str(folder / "h.db")
    server = request.getfixturevalue("postgres_server")
    url: str = server.url(server.create_database())
    return url


@pytest.fixture(
    scope="module",
    params=[
        pytest.param((engine, ids), id=f"{engine}-{ids}")
        for engine in ("sqlite", "postgres")
        for ids in ("plain", "string_ids")
    ],
)
def harvested(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Simulator, str]]:
    """Harvest USERS once per module, engine and knob: into a SQLite file or a PostgreSQL
    database, ids as JSON numbers or all as JSON strings."""
    engine, ids = request.param
    sim = Simulator(string_ids=ids == "string_ids")
    spec = new_store(request, tmp_path_factory.mktemp("frames"), engine)

    async def walk() -> None:
        async with make_client(sim) as client:
            outcomes = [o async for o in harvest(client, USERS, store=spec)]
        assert {o.state for o in outcomes} == {UserState.DONE}

    with sim.run_in_thread():
        asyncio.run(walk())
        with open_store(spec, create=False) as store:
            # The data frames of each engine, not SQLite's twice.
            assert isinstance(store, PostgresStore if engine == "postgres" else Store)
        yield sim, spec


def test_the_users_carry_ids_no_int64_holds(harvested: tuple[Simulator, str]) -> None:
    sim, _ = harvested
    rows = wire_rows(sim, USERS)
    ids = [int(row["id"]) for row in rows]
    assert any(len(str(i)) == 20 for i in ids)  # above uint64
    assert any(INT64_MAX < i < 2**64 for i in ids)
    assert any(len(str(i)) == 19 and i <= INT64_MAX for i in ids)
    assert any(row["music_id"] and int(row["music_id"]) > INT64_MAX for row in rows)
    assert any(row["hashtag_info_list"] for row in rows)
    assert any(row["sticker_info_list"] for row in rows)
    assert any(row["effect_info_list"] for row in rows)


def test_to_arrow_holds_every_id_exactly_as_decimal128(harvested: tuple[Simulator, str]) -> None:
    sim, db = harvested
    with open_store(db, create=False) as store:
        table = store.to_arrow()
    assert table.schema.field("id").type == pa.decimal128(38, 0)
    assert table.schema.field("music_id").type == pa.decimal128(38, 0)
    assert read_rows(table.to_pylist()) == wire_rows(sim, USERS)


def test_to_arrow_with_string_ids_holds_their_digits(harvested: tuple[Simulator, str]) -> None:
    sim, db = harvested
    with open_store(db, create=False) as store:
        table = store.to_arrow(id_type="string", provenance=True)
    assert table.schema.field("id").type == pa.string()
    hashtag = table.schema.field("hashtag_info_list").type.value_type
    assert hashtag.field("hashtag_id").type == pa.string()
    records = table.to_pylist()
    assert all(isinstance(r["id"], str) for r in records)
    assert read_rows(records) == wire_rows(sim, USERS)
    assert {r["round"] for r in records} == {1}


def test_to_pandas_ids_are_exact_arrow_decimals_not_floats_or_objects(
    harvested: tuple[Simulator, str],
) -> None:
    sim, db = harvested
    with open_store(db, create=False) as store:
        frame = store.to_pandas()
    for column in ("id", "music_id"):
        assert isinstance(frame[column].dtype, pd.ArrowDtype)
        assert frame[column].dtype.pyarrow_dtype == pa.decimal128(38, 0)
    # A count with nulls stays an integer column (numpy's dtypes would make it float64).
    assert frame["like_count"].dtype == pd.ArrowDtype(pa.int64())
    expected = wire_rows(sim, USERS)
    assert [text(v) for v in frame["id"]] == [row["id"] for row in expected]
    assert frame["id"].astype("string[pyarrow]").tolist() == [row["id"] for row in expected]
    music = [None if pd.isna(v) else text(v) for v in frame["music_id"]]
    assert music == [row["music_id"] for row in expected]
    # Numbers still: sorting and comparing are numeric and exact at 20 digits.
    biggest = max(int(row["id"]) for row in expected)
    assert text(frame["id"].max()) == str(biggest)
    assert (frame["id"] == decimal.Decimal(biggest)).sum() == 1


def test_to_pandas_with_string_ids(harvested: tuple[Simulator, str]) -> None:
    sim, db = harvested
    with open_store(db, create=False) as store:
        frame = store.to_pandas(id_type="string")
    assert frame["id"].dtype == pd.ArrowDtype(pa.string())
    assert frame["id"].tolist() == [row["id"] for row in wire_rows(sim, USERS)]


def test_to_polars_ids_are_exact_decimals(harvested: tuple[Simulator, str]) -> None:
    sim, db = harvested
    with open_store(db, create=False) as store:
        frame = store.to_polars()
        strings = store.to_polars(id_type="string")
    assert frame.schema["id"] == pl.Decimal(38, 0)
    assert frame["id"].cast(pl.String).to_list() == [row["id"] for row in wire_rows(sim, USERS)]
    assert read_rows(frame.to_dicts()) == wire_rows(sim, USERS)
    assert strings.schema["id"] == pl.String
    assert read_rows(strings.to_dicts()) == wire_rows(sim, USERS)


@pytest.mark.parametrize("id_type", ["number", "string"])
def test_parquet_export_reads_back_exact_in_every_library(
    harvested: tuple[Simulator, str], tmp_path: Path, id_type: str
) -> None:
    sim, db = harvested
    out = tmp_path / "videos.parquet"
    result = run_main("export", "--db", db, "-o", out, "--id-type", id_type)
    assert result.returncode == 0, result.stderr
    expected = wire_rows(sim, USERS)
    ids = [row["id"] for row in expected]
    assert read_rows(pq.read_table(out).to_pylist()) == expected
    # pandas with Arrow dtypes, as the docs say; with string ids even numpy's dtypes are exact.
    frame = pd.read_parquet(out, dtype_backend="pyarrow")
    assert [text(v) for v in frame["id"]] == ids
    if id_type == "string":
        assert pd.read_parquet(out)["id"].tolist() == ids
    assert read_rows(pl.read_parquet(out).to_dicts()) == expected
    con = duckdb.connect()
    try:
        kind = con.execute(f"SELECT typeof(id) FROM read_parquet('{out}') LIMIT 1").fetchone()
        rows = con.execute(
            f"SELECT CAST(id AS VARCHAR), CAST(music_id AS VARCHAR) FROM read_parquet('{out}')"
        ).fetchall()
    finally:
        con.close()
    assert kind == (("DECIMAL(38,0)",) if id_type == "number" else ("VARCHAR",))
    assert [(a, b) for a, b in rows] == [(row["id"], row["music_id"]) for row in expected]


def test_csv_with_string_ids_reads_back_exact(
    harvested: tuple[Simulator, str], tmp_path: Path
) -> None:
    sim, db = harvested
    out = tmp_path / "videos.csv"
    result = run_main("export", "--db", db, "-o", out, "--id-type", "string")
    assert result.returncode == 0, result.stderr
    expected = wire_rows(sim, USERS)

    def from_cells(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # The lists are JSON in their cells: with string ids, their ids come back as strings.
        return read_rows(
            [
                {
                    **record,
                    "music_id": record["music_id"] or None,
                    **{
                        column: json.loads(record[column]) if record[column] else None
                        for column, _ in NESTED
                    },
                }
                for record in records
            ]
        )

    with out.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    assert from_cells(records) == expected
    for record in records:
        for column, key in NESTED:
            if record[column]:
                assert all(isinstance(item[key], str) for item in json.loads(record[column]))
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert from_cells(frame.to_dict("records")) == expected
    polars_frame = pl.read_csv(out, infer_schema=False)
    assert from_cells([{k: v or "" for k, v in r.items()} for r in polars_frame.to_dicts()]) == (
        expected
    )
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"SELECT id, music_id FROM read_csv('{out}', all_varchar = true, header = true)"
        ).fetchall()
    finally:
        con.close()
    assert [(a, b) for a, b in rows] == [(row["id"], row["music_id"]) for row in expected]


def test_the_default_csv_keeps_nested_ids_as_sent(
    harvested: tuple[Simulator, str], tmp_path: Path
) -> None:
    sim, db = harvested
    out = tmp_path / "videos.csv"
    assert run_main("export", "--db", db, "-o", out).returncode == 0
    with out.open(newline="", encoding="utf-8") as handle:
        cells = [r["hashtag_info_list"] for r in csv.DictReader(handle)]
    sent = [v.get("hashtag_info_list") for name in USERS for v in sim.ground_truth(name)]
    assert [json.loads(cell) if cell else None for cell in cells] == sent


def ids_only_expected(sim: Simulator) -> list[tuple[str, str, int]]:
    return [(row["reposted_by"], row["id"], 1) for row in wire_rows(sim, USERS)]


@pytest.mark.parametrize("id_type", ["number", "string"])
def test_ids_only_in_every_format(
    harvested: tuple[Simulator, str], tmp_path: Path, id_type: str
) -> None:
    sim, db = harvested
    expected = ids_only_expected(sim)
    paths = {fmt: tmp_path / f"ids.{fmt}" for fmt in ("jsonl", "csv", "parquet")}
    for path in paths.values():
        result = run_main("export", "--db", db, "-o", path, "--ids-only", "--id-type", id_type)
        assert result.returncode == 0, result.stderr
        assert f"exported {len(expected):,} video ids" in result.stderr

    lines = paths["jsonl"].read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert all(list(r) == ["reposted_by", "id", "round"] for r in records)
    assert all(isinstance(r["id"], str if id_type == "string" else int) for r in records)
    assert [(r["reposted_by"], str(r["id"]), r["round"]) for r in records] == expected

    with paths["csv"].open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["reposted_by", "id", "round"]
    assert [(a, b, int(c)) for a, b, c in rows[1:]] == expected

    table = pq.read_table(paths["parquet"])
    assert table.schema.names == ["reposted_by", "id", "round"]
    assert table.schema.field("id").type == (
        pa.string() if id_type == "string" else pa.decimal128(38, 0)
    )
    assert [(r["reposted_by"], text(r["id"]), r["round"]) for r in table.to_pylist()] == expected
    # Nothing of the videos themselves: no description, no count, no music.
    for path in paths.values():
        data = path.read_bytes()
        assert b"video_description" not in data
        assert b"music_id" not in data


def test_jsonl_with_string_ids_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    out = tmp_path / "v.jsonl"
    result = run_main("export", "--db", tmp_path / "absent.db", "-o", out, "--id-type", "string")
    assert result.returncode == 2
    assert "--id-type string applies to csv and parquet" in result.stderr
    assert "no store" not in result.stderr  # refused before the store was looked for
    assert not out.exists()


def test_a_missing_library_names_the_extra_to_install(
    harvested: tuple[Simulator, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, db = harvested
    with open_store(db, create=False) as store:
        monkeypatch.setitem(sys.modules, "pandas", None)
        with pytest.raises(MissingExtraError, match=r"pip install 'pyarrow>=14' 'pandas>=2\.0'"):
            store.to_pandas()
        monkeypatch.setitem(sys.modules, "polars", None)
        with pytest.raises(MissingExtraError, match=r"\[polars\] extra"):
            store.to_polars()
        monkeypatch.setitem(sys.modules, "pyarrow", None)
        with pytest.raises(MissingExtraError, match="pyarrow, which is not installed"):
            store.to_arrow()


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_to_arrow_per_round_follows_the_store_rounds(
    request: pytest.FixtureRequest, tmp_path: Path, engine: str
) -> None:
    db = new_store(request, tmp_path, engine)
    names = ["hugeid_n60", "carol_n30"]
    async with Simulator(huge_ids=True) as sim:
        for epoch in (0, 1):
            sim.config.epoch = epoch
            async with make_client(sim) as client:
                [_ async for _ in harvest(client, names, store=db, new_round=epoch > 0)]
        first, second = wire_rows(sim, names, epoch=0), wire_rows(sim, names, epoch=1)
    assert [row["id"] for row in first] != [row["id"] for row in second]
    with open_store(db, create=False) as store:
        assert read_rows(store.to_arrow(round=1).to_pylist()) == first
        assert read_rows(store.to_arrow(round=2).to_pylist()) == second
        assert read_rows(store.to_arrow().to_pylist()) == second
        rounds = store.to_arrow(provenance=True, round=1).column("round").to_pylist()
    assert set(rounds) == {1}
    out = io.BytesIO()
    result = run_main("export", "--db", db, "--ids-only", "--round", "1", "--format", "csv")
    assert result.returncode == 0, result.stderr
    out.write(result.stdout_bytes)
    rows = list(csv.reader(io.StringIO(out.getvalue().decode(), newline="")))[1:]
    assert rows == [[row["reposted_by"], row["id"], "1"] for row in first]
