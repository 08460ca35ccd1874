"""Parsers for the operator's configuration values: a raw string in, a typed value out, or a ValueError
that states the rule (the caller adds the key, the value and where it came from)."""

from __future__ import annotations

import re

from patronus.api.parsers import DNS_LABEL_PATTERN, parse_duration, validate_quantity

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)


def duration(value: object, *, minimum: float = 0.0) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(str(value).strip())
        except ValueError:
            raise ValueError("must be a duration such as 30s, 1m30s or 500ms") from None
    if seconds <= minimum:
        raise ValueError(f"must be a duration longer than {minimum:g}s")
    return seconds


def integer(value: object, *, low: int, high: int | None = None) -> int:
    rule = f"must be an integer >= {low}" if high is None else f"must be an integer from {low} to {high}"
    if isinstance(value, bool):
        raise ValueError(rule)
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise ValueError(rule)
        number = int(text)
    if number < low or (high is not None and number > high):
        raise ValueError(rule)
    return number


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be true or false")


def choice(value: object, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}")
    return text


def dns_label(value: object) -> str:
    text = str(value).strip()
    if not _DNS_LABEL.fullmatch(text) or len(text) > 63:
        raise ValueError("must be a lowercase RFC 1123 name such as patronus-system")
    return text


def namespace_list(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    for name in names:
        if not _DNS_LABEL.fullmatch(name) or len(name) > 63:
            raise ValueError(
                f"{name!r} is not a namespace name; must be a comma-separated list of namespaces"
            )
    return tuple(dict.fromkeys(names))


def quantity(value: object) -> str:
    text = str(value).strip()
    try:
        return validate_quantity(text)
    except ValueError:
        raise ValueError("must be a Kubernetes quantity such as 500m, 2 or 4Gi") from None


def non_blank(value: object) -> str:
    text = str(value).strip()
    if not text or any(char.isspace() for char in text):
        raise ValueError("must be a non-empty string without spaces")
    return text
