"""The store (read-only, sandboxed) + a query and its variables -> a Table of column names and rows."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertlab.report.queries import Query, read_queries

# what a query variable may hold: a number, a name, or a list of records (e.g. the agreement windows)
Variable = float | int | str | list[dict[str, Any]]

# A connection to the store may read the store and nothing else, whatever statement it is given: no
# other file read or written (COPY, EXPORT, read_csv, glob, ATTACH), no extension installed or
# autoloaded, hence no network; lock_configuration makes every later SET/RESET fail, so no statement
# can turn the rest back on.
SANDBOX = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}


@dataclass(frozen=True)
class Table:
    """A query's result: its table name, column names and rows."""

    name: str
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


def connect_read_only(store: str | Path):  # noqa: ANN201 (duckdb is imported lazily)
    """The store opened read-only and sandboxed (SANDBOX); a missing file is an error, never a new empty store."""
    import duckdb

    store = Path(store)
    if not store.is_file():
        raise FileNotFoundError(f"no store at {store}; build it with `expertlab ingest`")
    try:
        return duckdb.connect(str(store), read_only=True, config=SANDBOX)
    except duckdb.Error as err:
        raise ValueError(f"{store}: cannot open the store read-only ({err})") from None


def _execute(con, sql: str, where: str) -> tuple[list[str], list[tuple[Any, ...]]]:  # noqa: ANN001
    import duckdb

    try:
        cursor = con.execute(sql)
        columns = [column[0] for column in cursor.description] if cursor.description else []
        return columns, cursor.fetchall() if columns else []
    except duckdb.Error as err:
        message = str(err)
        first_line = message.splitlines()[0] if message else type(err).__name__
        if isinstance(err, duckdb.PermissionException) or "the configuration has been locked" in message:
            refused = "the store is opened read-only and sandboxed: a statement may read the store and nothing else"
            raise ValueError(f"{where}: {refused} ({first_line})") from None
        if "read-only" in message:
            refused = "the store is opened read-only, so statements that write are refused"
            raise ValueError(f"{where}: {refused} ({first_line})") from None
        raise ValueError(f"{where}: {message}") from None


def query_store(store: str | Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of one ad-hoc query against the store, opened read-only."""
    con = connect_read_only(store)
    try:
        return _execute(con, sql, "query failed")
    finally:
        con.close()


def set_variables(con, variables: Mapping[str, Variable]) -> None:  # noqa: ANN001
    """DuckDB variables, read by the queries with getvariable(name)."""
    for name, value in variables.items():
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"query variable {name!r}: use lowercase letters, digits and '_'")
        con.execute(f"set variable {name} = ?", [value])


def run_query(con, query: Query, variables: Mapping[str, Variable] | None = None) -> Table:  # noqa: ANN001
    """Execute a query file with the variables it reads (each must be given); its output columns must be
    exactly the documented ones, in order."""
    variables = variables or {}
    if missing := [name for name in query.variables if name not in variables]:
        raise ValueError(
            f"{query.path}: reads the variable(s) {', '.join(missing)}, not given "
            "(`expertlab report` sets them from params.yaml's report section)"
        )
    set_variables(con, {name: variables[name] for name in query.variables})
    columns, rows = _execute(con, query.sql, str(query.path))
    if columns != list(query.columns):
        raise ValueError(f"{query.path}: the query returns {columns}, its header documents {list(query.columns)}")
    return Table(query.table, columns, rows)


def run_queries(
    store: str | Path, queries_dir: str | Path = "queries", variables: Mapping[str, Variable] | None = None
) -> list[tuple[Query, Table]]:
    """Every query of queries_dir run on the store, each given the variables it reads."""
    queries = read_queries(queries_dir)
    con = connect_read_only(store)
    try:
        return [(query, run_query(con, query, variables)) for query in queries]
    finally:
        con.close()
