"""DuckDB-dialect SQL in, PostgreSQL out: sqlglot's transpiler plus the rewrites it lacks.

sqlglot handles most of the dialect; these AST rewrites fill the gaps the domains' SQL hits:
``CREATE OR REPLACE TABLE`` (a drop, then a create), ``GROUP BY ALL`` (the non-aggregate columns
by position), ``INSERT ... BY NAME`` (the select's names as the column list), ``year()`` kept an
integer, aliases on derived tables (PostgreSQL 15 wants them), ``any_value`` (16 only),
``arg_max/arg_min``, ``make_date``, ``unnest(range(...))`` and ``strftime`` (to ``to_char`` with
literal text quoted). Parameters (``?``, ``$name``) come out in psycopg's style.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache

import sqlglot
from sqlglot import exp

from healthmesh.errors import CDMError

__all__ = ["to_postgres_sql"]

_PARAM = "hm_param_placeholder__"
_ALIASES = itertools.count(1)


def _is_aggregate(node: exp.Expression) -> bool:
    if isinstance(node, exp.Window):
        return False
    if isinstance(node, exp.AggFunc):
        return True
    return any(_is_aggregate(child) for child in node.iter_expressions() if not isinstance(child, exp.Window))


def _sub(node: exp.Expression) -> exp.Expression:
    """A rewritten copy of a subtree (``transform`` does not descend into a node it replaced)."""
    return node.transform(_rewrite)


def _arg_extreme(node: exp.ArgMax | exp.ArgMin) -> exp.Expression:
    """``arg_max(x, k)``: ``(array_agg(x ORDER BY k DESC NULLS LAST) FILTER (WHERE k IS NOT NULL))[1]``.

    DuckDB skips rows whose ``k`` is NULL; a tuple key (a struct) is never NULL there, while a
    PostgreSQL row with one NULL field is, so tuples are not filtered.
    """
    key = _sub(node.expression)
    ordered = exp.Ordered(this=key, desc=isinstance(node, exp.ArgMax), nulls_first=False)
    aggregate: exp.Expression = exp.ArrayAgg(this=exp.Order(this=_sub(node.this), expressions=[ordered]))
    if not isinstance(node.expression, exp.Tuple):
        aggregate = exp.Filter(
            this=aggregate,
            expression=exp.Where(this=exp.Not(this=exp.Is(this=key.copy(), expression=exp.Null()))),
        )
    return exp.Bracket(this=exp.Paren(this=aggregate), expressions=[exp.Literal.number(0)])


def _rewrite(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Year | exp.Month | exp.Day):
        part = {exp.Year: "YEAR", exp.Month: "MONTH", exp.Day: "DAY"}[type(node)]
        return exp.cast(exp.Extract(this=exp.var(part), expression=_sub(node.this)), "BIGINT")
    if isinstance(node, exp.Subquery) and not node.alias and isinstance(node.parent, exp.From | exp.Join):
        # PostgreSQL 15 wants a name on every derived table; DuckDB does not.
        node.set("alias", exp.TableAlias(this=exp.to_identifier(f"hm_q{next(_ALIASES)}")))
    if isinstance(node, exp.IgnoreNulls) and isinstance(node.this, exp.AnyValue):
        node = node.this
    if isinstance(node, exp.AnyValue):  # PostgreSQL 16 has any_value; 15 does not
        return exp.Min(this=_sub(node.this))
    if isinstance(node, exp.ArgMax | exp.ArgMin):
        return _arg_extreme(node)
    if isinstance(node, exp.DateFromParts):  # sqlglot writes date_from_parts, which PostgreSQL lacks
        parts = [_sub(node.args[k]) for k in ("year", "month", "day")]
        return exp.Anonymous(this="make_date", expressions=parts)
    if isinstance(node, exp.TimeToStr) and isinstance(node.args.get("format"), exp.Literal):
        return exp.Anonymous(
            this="to_char",
            expressions=[_sub(node.this), exp.Literal.string(_to_char_format(node.args["format"].this))],
        )
    if isinstance(node, exp.Explode) and isinstance(node.this, exp.GenerateSeries):
        return _sub(node.this)  # unnest(range(a, b)): generate_series already returns rows
    if isinstance(node, exp.Placeholder):
        name = node.args.get("this")
        return exp.var(f"{_PARAM}{name}__" if isinstance(name, str) and name.isidentifier() else _PARAM)
    if (
        isinstance(node, exp.Select)
        and isinstance(node.args.get("group"), exp.Group)
        and node.args["group"].args.get("all")
    ):
        keys = [
            exp.Literal.number(i)
            for i, projection in enumerate(node.expressions, start=1)
            if not _is_aggregate(projection.unalias())
        ]
        node.set("group", exp.Group(expressions=keys) if keys else None)
    if isinstance(node, exp.Insert) and node.args.get("by_name"):
        select = node.expression
        names = [p.alias_or_name for p in select.expressions] if isinstance(select, exp.Select) else []
        if not names or any(not n or n == "*" for n in names):
            raise CDMError("INSERT ... BY NAME on PostgreSQL needs a select whose columns all have names")
        node.set("by_name", False)
        node.set("this", exp.Schema(this=node.this.copy(), expressions=[exp.to_identifier(n) for n in names]))
    return node


_STRFTIME = {
    "Y": "YYYY", "y": "YY", "m": "MM", "d": "DD", "H": "HH24", "M": "MI", "S": "SS", "G": "IYYY",
    "V": "IW", "j": "DDD", "u": "ID", "b": "Mon", "B": "FMMonth", "a": "Dy", "A": "FMDay", "%": "%",
}  # fmt: skip


def _to_char_format(strftime: str) -> str:
    """A strftime format as a PostgreSQL ``to_char`` pattern; literal text is quoted (sqlglot
    leaves the ``W`` of ``%G-W%V`` bare, and ``to_char`` reads it as week of month)."""
    out, literal, i = [], "", 0
    while i < len(strftime):
        if strftime[i] == "%" and i + 1 < len(strftime) and strftime[i + 1] in _STRFTIME:
            if literal:
                out.append('"' + literal.replace('"', '\\"') + '"')
                literal = ""
            out.append(_STRFTIME[strftime[i + 1]])
            i += 2
        else:
            literal += strftime[i]
            i += 1
    if literal:
        out.append('"' + literal.replace('"', '\\"') + '"')
    return "".join(out)


def _statements(tree: exp.Expression) -> list[exp.Expression]:
    """``CREATE OR REPLACE TABLE/VIEW`` becomes ``DROP ... IF EXISTS`` then ``CREATE``."""
    if isinstance(tree, exp.Create) and tree.args.get("replace") and tree.kind in ("TABLE", "VIEW"):
        tree.set("replace", False)
        table = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        drop = exp.Drop(tables=[table.copy()], kind=tree.kind, exists=True)
        return [drop, tree]
    return [tree]


@lru_cache(maxsize=4096)
def to_postgres_sql(sql: str) -> tuple[tuple[str, bool], ...]:
    """PostgreSQL statements for one DuckDB-dialect string: ``(sql, has_parameters)`` each.

    Parameters come out as ``%s`` (``%(name)s`` for ``$name``) with other ``%`` doubled, ready for
    psycopg; a statement without parameters is returned unescaped.
    """
    try:
        trees = [t for t in sqlglot.parse(sql, read="duckdb") if t is not None]
    except sqlglot.errors.ParseError as error:
        raise CDMError(
            f"cannot read this SQL to transpile it for PostgreSQL: {str(error).splitlines()[0]}"
        ) from error
    out: list[tuple[str, bool]] = []
    for tree in trees:
        for statement in _statements(tree.transform(_rewrite)):
            text = statement.sql(dialect="postgres")
            if _PARAM not in text:
                out.append((text, False))
                continue
            text = text.replace("%", "%%")
            text = re.sub(rf"{_PARAM}(\w+?)__", r"%(\1)s", text).replace(_PARAM, "%s")
            out.append((text, True))
    return tuple(out)
