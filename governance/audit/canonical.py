"""Canonical JSON: one text for one value, and stored text that every reader reads alike.

A JSON object with a duplicated key is read two ways (Python keeps the last value,
SQLite's json_extract the first), so a record could verify while a query reads a forged
value: such text is refused, as are NaN and the infinities, which JSON does not have.
"""

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


class NotCanonical(ValueError):
    """Stored JSON that two readers could read differently."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        raise NotCanonical(f"holds a duplicated key ({', '.join(map(repr, duplicated))})")
    return dict(pairs)


def _constant(name: str) -> Any:
    raise NotCanonical(f"holds {name}, which is not JSON")


def strict_json(text: str) -> Any:
    """The value of stored JSON `text`, refusing what readers disagree on."""
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise NotCanonical(f"is not JSON ({exc.msg})") from exc


def canonical_json(value: Any) -> str:
    """The one text of `value`: keys sorted, no spaces, Django's encoder for dates."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder, allow_nan=False
    )
