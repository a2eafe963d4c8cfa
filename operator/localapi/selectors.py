"""Label and field selectors as kube-apiserver reads them from ?labelSelector= and ?fieldSelector=."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

# One term: key in (a,b) | key notin (a,b) | key=v | key==v | key!=v | key | !key
_TERM = re.compile(
    r"\s*(?:(?P<neg>!)\s*(?P<absent>[\w./-]+)"
    r"|(?P<setkey>[\w./-]+)\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[\w.-]*))?)\s*(?:,|$)"
)


class SelectorError(ValueError):
    pass


def label_selector(text: str | None) -> Predicate:
    """A predicate on an object's metadata.labels; raises SelectorError on bad syntax."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    pos, text = 0, (text or "").strip()
    while pos < len(text):
        match = _TERM.match(text, pos)
        if not match or match.end() == pos:
            raise SelectorError(f"unable to parse requirement at {text[pos:]!r}")
        pos = match.end()
        checks.append(_term(match))
    return lambda obj: all(check(obj.get("metadata", {}).get("labels") or {}) for check in checks)


def _term(m: re.Match[str]) -> Callable[[Mapping[str, str]], bool]:
    if m["absent"]:
        key = m["absent"]
        return lambda labels: key not in labels
    if m["setkey"]:
        key, values = m["setkey"], {v.strip() for v in m["values"].split(",")}
        if m["setop"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    key, op, value = m["key"], m["op"], m["value"] or ""
    if op is None:
        return lambda labels: key in labels
    if op == "!=":
        return lambda labels: labels.get(key) != value
    return lambda labels: labels.get(key) == value


def field_selector(text: str | None) -> Predicate:
    """metadata.name / metadata.namespace equality, the field selectors every resource supports."""
    checks: list[tuple[str, str, bool]] = []
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        negate = "!=" in term
        field, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
        if field not in ("metadata.name", "metadata.namespace"):
            raise SelectorError(f"field label not supported: {field}")
        checks.append((field.split(".")[1], value, negate))

    def predicate(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        return all((meta.get(key) == value) != negate for key, value, negate in checks)

    return predicate
