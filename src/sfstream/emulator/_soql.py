"""The small part of SOQL the emulator needs: PushTopic queries and simple REST queries.

Grammar::

    query      := SELECT field ("," field)* FROM name [WHERE expr] [LIMIT integer]
    expr       := term (OR term)*
    term       := factor (AND factor)*
    factor     := NOT factor | "(" expr ")" | field op literal
                | field [NOT] IN "(" literal ("," literal)* ")" | field LIKE string
    op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    literal    := 'string' | number | TRUE | FALSE | NULL

Keywords and field names are case-insensitive, as in SOQL; string comparison with ``=`` is
case-insensitive too. Anything else (relationships, functions, ORDER BY, date literals) is
refused with :class:`SOQLError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Query", "SOQLError", "field_value", "parse"]

_TOKEN_RE: Final = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>!=|<>|<=|>=|=|<|>)
      | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)
_KEYWORDS: Final = frozenset(
    {"select", "from", "where", "and", "or", "not", "in", "like", "limit", "true", "false", "null"}
)


class SOQLError(ValueError):
    """The query is not in the subset of SOQL the emulator understands."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, number, name, keyword, op, punct, end
    text: str
    value: Any = None


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN_RE.match(stripped, position)
        if match is None:
            raise SOQLError(f"unexpected character {stripped[position:].lstrip()[:1]!r}")
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        raw = match.group(kind)
        if kind == "string":
            value: Any = re.sub(r"\\(.)", r"\1", raw[1:-1])
            tokens.append(_Token("string", raw, value))
        elif kind == "number":
            tokens.append(_Token("number", raw, float(raw) if "." in raw else int(raw)))
        elif kind == "name" and raw.lower() in _KEYWORDS:
            tokens.append(_Token("keyword", raw.lower()))
        else:
            tokens.append(_Token(kind, raw))
    tokens.append(_Token("end", ""))
    return tokens


# Expressions are small tuples: ("cmp", field, op, value), ("in", field, values, negate),
# ("like", field, regex), ("and", parts), ("or", parts), ("not", expr).
Expr = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: the selected fields, the object, the condition and the limit."""

    fields: tuple[str, ...]
    sobject: str
    where: Expr | None = None
    limit: int | None = None

    @property
    def where_fields(self) -> frozenset[str]:
        """The (lower-cased) field names the WHERE clause refers to."""
        found: set[str] = set()
        if self.where is not None:
            _collect_fields(self.where, found)
        return frozenset(found)

    @property
    def select_fields(self) -> frozenset[str]:
        """The (lower-cased) selected field names."""
        return frozenset(name.lower() for name in self.fields)

    def matches(self, record: Mapping[str, Any]) -> bool:
        """True when ``record`` satisfies the WHERE clause (always, without one)."""
        return self.where is None or _evaluate(self.where, record)


def _collect_fields(expr: Expr, found: set[str]) -> None:
    tag = expr[0]
    if tag in ("and", "or"):
        for part in expr[1]:
            _collect_fields(part, found)
    elif tag == "not":
        _collect_fields(expr[1], found)
    else:
        found.add(expr[1].lower())


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.position = 0

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.tokens[self.position]
        if token.kind != "end":
            self.position += 1
        return token

    def accept_keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "keyword" and token.text == word:
            self.position += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.accept_keyword(word):
            raise SOQLError(f"expected {word.upper()} but found {self._describe(self.peek())}")

    def expect_punct(self, char: str) -> None:
        token = self.take()
        if token.kind != "punct" or token.text != char:
            raise SOQLError(f"expected {char!r} but found {self._describe(token)}")

    def name(self) -> str:
        token = self.take()
        if token.kind != "name":
            raise SOQLError(f"expected a name but found {self._describe(token)}")
        return token.text

    @staticmethod
    def _describe(token: _Token) -> str:
        return "the end of the query" if token.kind == "end" else repr(token.text)

    def query(self) -> Query:
        self.expect_keyword("select")
        fields = [self.name()]
        while self.peek().kind == "punct" and self.peek().text == ",":
            self.take()
            fields.append(self.name())
        self.expect_keyword("from")
        sobject = self.name()
        where = self.expr() if self.accept_keyword("where") else None
        limit = None
        if self.accept_keyword("limit"):
            token = self.take()
            if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
                raise SOQLError(f"expected a row count after LIMIT, found {self._describe(token)}")
            limit = token.value
        if self.peek().kind != "end":
            raise SOQLError(f"unexpected {self._describe(self.peek())}")
        return Query(tuple(fields), sobject, where, limit)

    def expr(self) -> Expr:
        parts = [self.term()]
        while self.accept_keyword("or"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else ("or", tuple(parts))

    def term(self) -> Expr:
        parts = [self.factor()]
        while self.accept_keyword("and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else ("and", tuple(parts))

    def factor(self) -> Expr:
        if self.accept_keyword("not"):
            return ("not", self.factor())
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            self.take()
            inner = self.expr()
            self.expect_punct(")")
            return inner
        field = self.name()
        if self.accept_keyword("like"):
            pattern = self.take()
            if pattern.kind != "string":
                raise SOQLError("LIKE needs a string pattern")
            return ("like", field, _like_regex(pattern.value))
        negate = self.accept_keyword("not")
        if self.accept_keyword("in"):
            self.expect_punct("(")
            values = [self.literal()]
            while self.peek().kind == "punct" and self.peek().text == ",":
                self.take()
                values.append(self.literal())
            self.expect_punct(")")
            return ("in", field, tuple(values), negate)
        if negate:
            raise SOQLError("expected IN after NOT")
        op = self.take()
        if op.kind != "op":
            raise SOQLError(f"expected an operator after {field!r}, found {self._describe(op)}")
        return ("cmp", field, "!=" if op.text == "<>" else op.text, self.literal())

    def literal(self) -> Any:
        token = self.take()
        if token.kind in ("string", "number"):
            return token.value
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token.text]
        raise SOQLError(f"expected a value but found {self._describe(token)}")


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def parse(text: str) -> Query:
    """Parse a query of the supported subset; raises SOQLError with what is wrong."""
    if not text.strip():
        raise SOQLError("the query is empty")
    return _Parser(text).query()


def field_value(record: Mapping[str, Any], name: str) -> Any:
    """The value of ``name`` in ``record``, matching the field name case-insensitively."""
    if name in record:
        return record[name]
    lowered = name.lower()
    for key, value in record.items():
        if key.lower() == lowered:
            return value
    return None


def _compare(left: Any, op: str, right: Any) -> bool:
    if right is None or left is None:
        if op == "=":
            return left is right
        if op == "!=":
            return left is not right
        return False
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower(), right.lower()
    elif isinstance(left, bool) or isinstance(right, bool):
        if op not in ("=", "!="):
            return False
        return bool((left == right) == (op == "="))
    elif not (isinstance(left, int | float) and isinstance(right, int | float)):
        return op == "!="
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def _evaluate(expr: Expr, record: Mapping[str, Any]) -> bool:
    tag = expr[0]
    if tag == "and":
        return all(_evaluate(part, record) for part in expr[1])
    if tag == "or":
        return any(_evaluate(part, record) for part in expr[1])
    if tag == "not":
        return not _evaluate(expr[1], record)
    value = field_value(record, expr[1])
    if tag == "like":
        return isinstance(value, str) and expr[2].fullmatch(value) is not None
    if tag == "in":
        found = any(_compare(value, "=", candidate) for candidate in expr[2])
        return bool(found != expr[3])
    return _compare(value, str(expr[2]), expr[3])
