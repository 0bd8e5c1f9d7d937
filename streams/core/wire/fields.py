"""Reading fields of untrusted JSON at the edge: each reader returns the typed value or raises
:class:`~streams.core.errors.RecordError` naming the field. Shared by every decoder of this package
and by :mod:`streams.core.kube` (Kubernetes objects as the API serves them)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from streams.core import conventions as c
from streams.core.errors import RecordError

# A DNS-1123 subdomain: the names of Deployments and ReplicaSets (dots allowed, up to 253 characters).
MAX_K8S_NAME_LEN: Final = 253
K8S_NAME_RE: Final = re.compile(
    rf"^(?=.{{1,{MAX_K8S_NAME_LEN}}}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
MAX_REVISION_LEN: Final = 128
MAX_TEXT_LEN: Final = 4096


def missing(what: str) -> RecordError:
    return RecordError(c.REASON_MISSING_FIELD, f"{what} is missing")


def bad(what: str, value: object, why: str) -> RecordError:
    return RecordError(c.REASON_BAD_FIELD, f"{what}={short(value)}: {why}")


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def mapping(value: object) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one (for optional parts of API objects)."""
    return value if isinstance(value, Mapping) else {}


def nonempty_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def int_or(value: object, default: int = 0) -> int:
    """An integer field of an API object (an int, or digits), else ``default``."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def parse_time(value: object) -> float | None:
    """Epoch seconds of an RFC 3339 time (``Time`` or ``MicroTime``) or None when absent.

    Raises ValueError for a string that is not a time."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a time: {short(value)}")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {short(value)}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def time_or_none(value: object) -> float | None:
    try:
        return parse_time(value)
    except ValueError:
        return None


def _matching(value: object, what: str, pattern: re.Pattern[str], why: str) -> str:
    """A non-empty string that ``pattern`` matches; else RecordError saying ``why``."""
    if value is None or value == "":
        raise missing(what)
    if not isinstance(value, str):
        raise bad(what, value, "must be a string")
    if not pattern.match(value):
        raise bad(what, value, why)
    return value


def check_namespace(value: object, what: str) -> str:
    return _matching(value, what, c.NAME_RE, "not a DNS-1123 label")


def check_k8s_name(value: object, what: str) -> str:
    return _matching(value, what, K8S_NAME_RE, "not a DNS-1123 subdomain")


def check_cluster(value: object, what: str = "cluster") -> str:
    """A cluster name as used in Kafka keys and playback records (:data:`conventions.LABEL_VALUE_RE`)."""
    return _matching(value, what, c.LABEL_VALUE_RE, f"must match {c.LABEL_VALUE_RE.pattern}")


def check_name(value: object, what: str) -> str:
    """A service or SLO name (:data:`conventions.NAME_RE`)."""
    if value is None or value == "":
        raise missing(what)
    if not isinstance(value, str) or not c.NAME_RE.match(value):
        raise bad(what, value, "not a name (lowercase DNS label)")
    return value


def number(value: object, what: str) -> float:
    """A finite JSON number (not a boolean)."""
    if value is None:
        raise missing(what)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(what, value, "must be a finite number")
    return float(value)


def opt_number(value: object, what: str) -> float | None:
    return None if value is None else number(value, what)


def integer(value: object, what: str) -> int:
    if value is None:
        raise missing(what)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(what, value, "must be an integer")
    return value


def opt_integer(value: object, what: str) -> int | None:
    return None if value is None else integer(value, what)


def text(value: object, what: str, limit: int = MAX_TEXT_LEN) -> str:
    if value is None:
        raise missing(what)
    if not isinstance(value, str) or len(value) > limit:
        raise bad(what, value, f"must be a string of at most {limit} characters")
    return value


def opt_text(value: object, what: str, limit: int = MAX_TEXT_LEN) -> str | None:
    return None if value is None else text(value, what, limit)


def boolean(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise bad(what, value, "must be true or false")
    return value


def obj(value: object, what: str) -> Mapping[str, Any]:
    """A JSON object (a required one)."""
    if not isinstance(value, Mapping):
        raise missing(what) if value is None else bad(what, value, "must be an object")
    return value


def str_list(value: object, what: str, limit: int = MAX_TEXT_LEN) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(i, str) and len(i) <= limit for i in value):
        raise bad(what, value, "must be a list of strings")
    return tuple(value)


def schema_version(doc: Mapping[str, Any], *, required: bool = True) -> None:
    """The record's ``schema_version`` is ours (absent is accepted when not ``required``)."""
    sv = doc.get("schema_version", None if required else c.SCHEMA_VERSION)
    if sv is None:
        raise missing("schema_version")
    if sv != c.SCHEMA_VERSION or type(sv) is not int:
        raise RecordError(c.REASON_BAD_SCHEMA_VERSION, f"schema_version={short(sv)}")


def controller(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference with ``controller: true`` of an object's metadata, if any."""
    owners = meta.get("ownerReferences")
    if not isinstance(owners, list):
        return None
    for owner in owners:
        if isinstance(owner, Mapping) and owner.get("controller") is True:
            return owner
    return None


def first_owner(o: Mapping[str, Any]) -> Mapping[str, Any] | None:
    owners = o.get("ownerReferences")
    if isinstance(owners, list) and owners and isinstance(owners[0], Mapping):
        return owners[0]
    return None


def finite(x: float, digits: int = 6) -> float:
    """``x`` rounded for a record; 0.0 for inf or NaN, which JSON cannot carry."""
    return round(x, digits) if math.isfinite(x) else 0.0
