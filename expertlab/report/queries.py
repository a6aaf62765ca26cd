"""queries/<table>.sql files -> Query records: the SQL, its header contract and the variables it reads.

Each query file begins with its contract: `-- table: <name>` (the file's stem) and one
`-- column: <name>: <description>` line per output column, in order; the report refuses a query whose
output differs from it. A query reads its settings as DuckDB variables, `getvariable('<name>')`, which
the report sets from params (expertlab.params.Report.variables).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_TABLE_LINE = re.compile(r"^--\s*table:\s*(\w+)\s*$")
_COLUMN_LINE = re.compile(r"^--\s*column:\s*(\w+)\s*:\s*(\S.*?)\s*$")
_WIDE_LINE = re.compile(r"^--\s*wide:\s*(.+?)\s*\|\s*(\w+)\s*\|\s*(.+?)\s*$")
_VARIABLE = re.compile(r"getvariable\(\s*'(\w+)'\s*\)")


@dataclass(frozen=True)
class Wide:
    """A long table shown wide, as the paper prints it: one row per `rows` key, one column per value of
    `across`, each cell `mean ± sd` (bold where `best` is true).

    Declared in a query's header: `-- wide: <row columns> | <across column> | <mean>[, <sd>[, <best>]]`."""

    rows: tuple[str, ...]
    across: str
    mean: str
    sd: str | None = None
    best: str | None = None

    def columns(self) -> tuple[str, ...]:
        return (*self.rows, self.across, self.mean, *(c for c in (self.sd, self.best) if c))


@dataclass(frozen=True)
class Query:
    """One queries/<table>.sql file and its documented output."""

    table: str
    path: Path
    sql: str
    description: str
    columns: dict[str, str]  # column -> description, in output order
    wide: Wide | None = None  # how the report also shows the table wide
    variables: tuple[str, ...] = ()  # the DuckDB variables the SQL reads, in order of first use


def read_query(path: str | Path) -> Query:
    """Parse a query file's header comment; errors name the file."""
    path = Path(path)
    sql = path.read_text()
    table, description, columns, wide = None, [], {}, None
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        if match := _TABLE_LINE.match(line):
            table = match.group(1)
        elif match := _WIDE_LINE.match(line):
            values = [name.strip() for name in match.group(3).split(",")]
            if not 1 <= len(values) <= 3:
                raise ValueError(f"{path}: '-- wide:' takes <mean>[, <sd>[, <best>]] after the second '|'")
            wide = Wide(tuple(name.strip() for name in match.group(1).split(",")), match.group(2), *values)
        elif match := _COLUMN_LINE.match(line):
            if match.group(1) in columns:
                raise ValueError(f"{path}: column {match.group(1)!r} documented twice")
            columns[match.group(1)] = match.group(2)
        else:
            description.append(line.lstrip("-").strip())
    if table != path.stem:
        raise ValueError(f"{path}: header must start with '-- table: {path.stem}' (found {table!r})")
    if not columns:
        raise ValueError(f"{path}: header documents no '-- column: <name>: <description>' lines")
    if wide is not None and (unknown := [c for c in wide.columns() if c not in columns]):
        raise ValueError(f"{path}: '-- wide:' names undocumented column(s) {', '.join(unknown)}")
    variables = tuple(dict.fromkeys(_VARIABLE.findall(sql)))
    return Query(table, path, sql, " ".join(d for d in description if d), columns, wide, variables)


def read_queries(queries_dir: str | Path) -> list[Query]:
    """Every queries_dir/*.sql, in file-name order; an error when there is none."""
    queries_dir = Path(queries_dir)
    if not queries_dir.is_dir():
        raise FileNotFoundError(f"no such queries directory: {queries_dir}")
    queries = [read_query(path) for path in sorted(queries_dir.glob("*.sql"))]
    if not queries:
        raise FileNotFoundError(f"{queries_dir}: no .sql files")
    return queries


def query_path(queries_dir: str | Path, name: str) -> Path:
    """queries/<name>.sql: the file producing table `name`; an error naming the tables there when it is absent."""
    path = Path(queries_dir) / f"{name}.sql"
    if not path.is_file():
        there = sorted(p.stem for p in Path(queries_dir).glob("*.sql"))
        raise FileNotFoundError(f"no query {name!r}: {path} does not exist (tables: {', '.join(there) or 'none'})")
    return path
