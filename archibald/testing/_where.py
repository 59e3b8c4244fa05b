"""The SQL subset that FakeArcGIS understands in a ``where`` clause.

Grammar (keywords are case-insensitive)::

    expr       := or
    or         := and ("OR" and)*
    and        := not ("AND" not)*
    not        := "NOT" not | predicate
    predicate  := value [comparison | in | between | like | is-null]
    comparison := ("=" | "<>" | "!=" | "<" | "<=" | ">" | ">=") value
    in         := ["NOT"] "IN" "(" value ("," value)* ")"
    between    := ["NOT"] "BETWEEN" value "AND" value
    like       := ["NOT"] "LIKE" value          ("%" any run, "_" any one character)
    is-null    := "IS" ["NOT"] "NULL"
    value      := number | 'string' | DATE 'YYYY-MM-DD[ HH:MM:SS[.fff]]' | TIMESTAMP '...'
                | field | UPPER(value) | LOWER(value) | "(" expr ")"

Comparisons follow SQL's three-valued logic: anything compared with NULL is unknown, and
a row matches only when the whole clause is true. Dates compare as epoch milliseconds,
as ArcGIS stores them.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["WhereError", "compile_where"]

Row = Mapping[str, Any]
Expr = Callable[[Row], Any]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|-?\.\d+)
      | (?P<string>'(?:[^']|'')*')
      | (?P<op><>|!=|<=|>=|=|<|>|\(|\)|,)
      | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "BETWEEN", "LIKE", "IS", "NULL", "DATE", "TIMESTAMP"}
_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "UPPER": lambda v: v.upper() if isinstance(v, str) else v,
    "LOWER": lambda v: v.lower() if isinstance(v, str) else v,
}


class WhereError(ValueError):
    """The where clause is not in the supported subset, or names an unknown field."""


def compile_where(where: str, fields: Mapping[str, str]) -> Callable[[Row], bool]:
    """Compile *where* into a predicate over a row of attributes.

    Args:
        where: The clause, for example ``"POP > 1000 AND NAME LIKE 'San%'"``.
        fields: The layer's field names (matched case-insensitively) mapped to the
            names the rows use.
    """
    return _compile(where.strip() or "1=1", tuple(sorted(fields.items())))


@functools.lru_cache(maxsize=256)
def _compile(where: str, fields: tuple[tuple[str, str], ...]) -> Callable[[Row], bool]:
    parser = _Parser(_tokenize(where), {k.upper(): v for k, v in fields})
    try:
        expr = parser.parse()
    except RecursionError as exc:
        raise WhereError("the where clause is nested too deeply") from exc
    return lambda row: expr(row) is True


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise WhereError(f"cannot read the where clause at {text[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        value = match.group(kind)
        if kind == "name" and value.upper() in _KEYWORDS:
            kind, value = "keyword", value.upper()
        tokens.append((kind, value))
        position = match.end()
    return tokens


def _like_pattern(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def _date_literal(text: str) -> int:
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            moment = dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        return int(moment.timestamp() * 1000)
    raise WhereError(f"cannot read the date {text!r}; use 'YYYY-MM-DD HH:MM:SS'")


def _compare(op: str, left: Any, right: Any) -> bool | None:
    if left is None or right is None:
        return None
    try:
        if op == "=":
            return bool(left == right)
        if op in ("<>", "!="):
            return bool(left != right)
        if op == "<":
            return bool(left < right)
        if op == "<=":
            return bool(left <= right)
        if op == ">":
            return bool(left > right)
        return bool(left >= right)
    except TypeError as exc:
        raise WhereError(f"cannot compare {left!r} with {right!r}") from exc


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], fields: dict[str, str]) -> None:
        self.tokens = tokens
        self.fields = fields
        self.position = 0

    def parse(self) -> Expr:
        expr = self.parse_or()
        if self.position != len(self.tokens):
            raise WhereError(f"unexpected {self.tokens[self.position][1]!r} in the where clause")
        return expr

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            found = "the end" if token is None else repr(token[1])
            raise WhereError(f"expected {value or kind} but found {found} in the where clause")
        self.position += 1
        return token[1]

    def accept(self, kind: str, value: str) -> bool:
        if self.peek() == (kind, value):
            self.position += 1
            return True
        return False

    def parse_or(self) -> Expr:
        terms = [self.parse_and()]
        while self.accept("keyword", "OR"):
            terms.append(self.parse_and())
        return terms[0] if len(terms) == 1 else _any(terms)

    def parse_and(self) -> Expr:
        terms = [self.parse_not()]
        while self.accept("keyword", "AND"):
            terms.append(self.parse_not())
        return terms[0] if len(terms) == 1 else _all(terms)

    def parse_not(self) -> Expr:
        negations = 0
        while self.accept("keyword", "NOT"):
            negations += 1
        inner = self.parse_predicate()
        if negations % 2:
            return lambda row: _not(inner(row))
        return inner

    def parse_predicate(self) -> Expr:
        """A test: a parenthesized condition, or a value followed by what it is tested for."""
        if self.peek() == ("op", "(") and self._parenthesized_condition():
            self.take("op", "(")
            inner = self.parse_or()
            self.take("op", ")")
            return inner
        left = self.parse_value()
        token = self.peek()
        kind, value = token if token is not None else ("end", "")
        if kind == "op" and value in ("=", "<>", "!=", "<", "<=", ">", ">="):
            self.position += 1
            right = self.parse_value()
            return lambda row: _compare(value, left(row), right(row))
        if kind == "keyword" and value == "IS":
            self.position += 1
            negate = self.accept("keyword", "NOT")
            self.take("keyword", "NULL")
            return lambda row: (left(row) is not None) if negate else (left(row) is None)
        negate = self.accept("keyword", "NOT")
        if self.accept("keyword", "IN"):
            self.take("op", "(")
            literal = True
            options: list[Expr] = []
            while not options or self.accept("op", ","):
                literal = literal and (self.peek() or ("", ""))[0] in ("number", "string")
                options.append(self.parse_value())
            self.take("op", ")")
            # A list of literals is a set: a long objectid IN (...) costs one lookup a row.
            test = _in_set(left, {o({}) for o in options}) if literal else _in(left, options)
        elif self.accept("keyword", "BETWEEN"):
            low = self.parse_value()
            self.take("keyword", "AND")
            high = self.parse_value()
            test = _between(left, low, high)
        elif self.accept("keyword", "LIKE"):
            test = _like(left, self.parse_value())
        elif negate:
            raise WhereError("expected IN, BETWEEN or LIKE after NOT in the where clause")
        else:
            found = "the end" if token is None else repr(value)
            raise WhereError(
                f"expected a comparison (=, <, IN, LIKE, IS NULL...) but found {found} "
                "in the where clause"
            )
        return (lambda row: _not(test(row))) if negate else test

    def _parenthesized_condition(self) -> bool:
        """Whether the "(" at hand opens a condition rather than a value like ``(POP)``."""
        depth = 0
        for kind, value in self.tokens[self.position :]:
            if kind == "op" and value == "(":
                depth += 1
            elif kind == "op" and value == ")":
                depth -= 1
                if depth == 0:
                    return False
            elif depth >= 1 and (
                (kind == "op" and value in ("=", "<>", "!=", "<", "<=", ">", ">="))
                or (kind == "keyword" and value in ("AND", "OR", "NOT", "IS", "IN", "LIKE"))
                or (kind == "keyword" and value == "BETWEEN")
            ):
                return True
        return False

    def parse_value(self) -> Expr:
        token = self.peek()
        if token is None:
            raise WhereError("the where clause ends too early")
        kind, value = token
        self.position += 1
        if kind == "number":
            number: float | int = float(value) if any(c in value for c in ".eE") else int(value)
            return lambda row: number
        if kind == "string":
            text = value[1:-1].replace("''", "'")
            return lambda row: text
        if kind == "keyword" and value in ("DATE", "TIMESTAMP"):
            stamp = _date_literal(self.take("string")[1:-1])
            return lambda row: stamp
        if kind == "keyword" and value == "NULL":
            return lambda row: None
        if kind == "op" and value == "(":
            inner = self.parse_value()
            self.take("op", ")")
            return inner
        if kind == "name":
            if value.upper() in _FUNCTIONS and self.accept("op", "("):
                function = _FUNCTIONS[value.upper()]
                argument = self.parse_value()
                self.take("op", ")")
                return lambda row: function(argument(row))
            name = self.fields.get(value.upper())
            if name is None:
                raise WhereError(f"no field named {value!r}")
            return lambda row: row.get(name)
        raise WhereError(f"unexpected {value!r} in the where clause")


def _all(terms: list[Expr]) -> Expr:
    return _combine(terms, decisive=False)


def _any(terms: list[Expr]) -> Expr:
    return _combine(terms, decisive=True)


def _combine(terms: list[Expr], *, decisive: bool) -> Expr:
    """AND (*decisive* False) or OR (True) in SQL's three-valued logic: one term equal to
    *decisive* decides; otherwise an unknown (NULL) term makes the result unknown."""

    def evaluate(row: Row) -> bool | None:
        unknown = False
        for term in terms:
            value: object = term(row)
            if value is decisive:
                return decisive
            if value is None:
                unknown = True
        return None if unknown else not decisive

    return evaluate


def _in(left: Expr, options: list[Expr]) -> Expr:
    def evaluate(row: Row) -> bool | None:
        value = left(row)
        if value is None:
            return None
        return any(value == option(row) for option in options)

    return evaluate


def _in_set(left: Expr, options: set[object]) -> Expr:
    def evaluate(row: Row) -> bool | None:
        value = left(row)
        return None if value is None else value in options

    return evaluate


def _between(left: Expr, low: Expr, high: Expr) -> Expr:
    return _all(
        [
            lambda row: _compare(">=", left(row), low(row)),
            lambda row: _compare("<=", left(row), high(row)),
        ]
    )


def _like(left: Expr, pattern: Expr) -> Expr:
    def evaluate(row: Row) -> bool | None:
        value, text = left(row), pattern(row)
        if value is None or text is None:
            return None
        return _like_pattern(str(text)).fullmatch(str(value)) is not None

    return evaluate
