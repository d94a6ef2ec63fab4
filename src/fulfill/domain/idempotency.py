"""The execution idempotency key (reference spec §6.1) and the canonical JSON it hashes.

``key = lowercase_hex(SHA-256(UTF-8("{tenant_id}:{action_intent_id}:{tool_name}:{canonical_args}:{registry_version}")))``

That material is ambiguous when an id itself contains ``:`` (identifiers may): tenant ``t:x`` with
intent ``y`` and tenant ``t`` with intent ``x:y`` hash the same text, so two tenants would share a
key and a deduplicating target would answer one tenant's call from the other's. For such ids the
key hashes an unambiguous material instead, a JSON array
``["fulfill-idempotency-v2", tenant_id, action_intent_id, tool_name, canonical_args, registry_version]``
(the arguments inline, as canonical JSON). It starts with ``[``, which no identifier can, so it
never equals a reference-form material either. Ids without ``:`` (tool names never have one) keep
the reference's key byte for byte.

Canonical JSON is what JavaScript's ``JSON.stringify`` prints for the same value after sorting
object keys, so a key computed here equals the key the TypeScript reference computes:

* object keys are sorted recursively by UTF-16 code units (JavaScript's default string order),
  except that array-index keys (``"0"`` … ``"4294967294"``, without sign or leading zeros) come
  first, in numeric order: the reference inserts the sorted keys into a new object, and
  JavaScript always enumerates an object's array-index keys first, in ascending order
  (``{"1":…, "10":…, "2":…}`` prints as ``{"1":…,"2":…,"10":…}``);
* output is compact (no whitespace) and non-ASCII characters are not escaped;
* ``null`` is kept, array order is kept;
* **numbers are normalised**: a float is printed as ECMAScript ``Number.prototype.toString``
  prints it: shortest round-trip digits, integral values without a fraction (``1.0`` → ``1``,
  ``-0.0`` → ``0``, ``2.0**60`` → ``1152921504606847000``), exponents from ``1e+21`` and below
  ``1e-6`` (``1e-7``). Python integers print exactly (JavaScript would round those above 2**53);
  ``NaN`` and infinities are rejected because JSON cannot represent them;
* lone UTF-16 surrogates in strings are escaped (``\\ud800``), as ``JSON.stringify`` does.

The key also drops object members named ``__proto__`` (``idempotency_key`` only): assigning that
name in JavaScript sets the object's prototype instead of adding a member, so the reference never
hashes them. ``canonical_json`` itself keeps them (it also fingerprints request bodies, where two
bodies that differ must never compare equal).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from decimal import Decimal
from typing import Any


class CanonicalJsonError(ValueError):
    """The value cannot be represented as canonical JSON."""


# ECMAScript's array index: the canonical decimal form of an integer from 0 to 2**32 - 2.
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]{0,9}")
_MAX_ARRAY_INDEX = 2**32 - 2
_PROTO = "__proto__"
_SEPARATOR = ":"
_UNAMBIGUOUS = "fulfill-idempotency-v2"


def canonical_json(value: Any) -> str:
    return "".join(_encode(value, drop_proto=False))


def idempotency_key(
    *, tenant_id: str, action_intent_id: str, tool_name: str, arguments: dict[str, Any], registry_version: int
) -> str:
    canonical_args = "".join(_encode(arguments, drop_proto=True))
    if _SEPARATOR in tenant_id or _SEPARATOR in action_intent_id or _SEPARATOR in tool_name:
        # Each id is a JSON string here, so no choice of ids can shift a boundary.
        ids = ",".join(
            _encode_string(part) for part in (_UNAMBIGUOUS, tenant_id, action_intent_id, tool_name)
        )
        material = f"[{ids},{canonical_args},{registry_version}]"
    else:
        material = f"{tenant_id}:{action_intent_id}:{tool_name}:{canonical_args}:{registry_version}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _utf16_order(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _encode(value: Any, *, drop_proto: bool) -> list[str]:
    if value is None:
        return ["null"]
    if value is True:
        return ["true"]
    if value is False:
        return ["false"]
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, float):
        return [format_js_number(value)]
    if isinstance(value, str):
        return [_encode_string(value)]
    if isinstance(value, dict):
        parts: list[str] = ["{"]
        keys = sorted(value, key=_key_for_sort)
        if drop_proto:
            keys = [key for key in keys if key != _PROTO]
        for index, key in enumerate(keys):
            if index:
                parts.append(",")
            parts.append(_encode_string(key))
            parts.append(":")
            parts.extend(_encode(value[key], drop_proto=drop_proto))
        parts.append("}")
        return parts
    if isinstance(value, list | tuple):
        parts = ["["]
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            parts.extend(_encode(item, drop_proto=drop_proto))
        parts.append("]")
        return parts
    raise CanonicalJsonError(f"type {type(value).__name__} is not JSON")


def _encode_string(value: str) -> str:
    """A JSON string as ``JSON.stringify`` writes it: a lone surrogate becomes a ``\\uhhhh`` escape."""
    encoded = json.dumps(value, ensure_ascii=False)
    if not any("\ud800" <= char <= "\udfff" for char in value):
        return encoded
    return "".join(f"\\u{ord(char):04x}" if "\ud800" <= char <= "\udfff" else char for char in encoded)


def _key_for_sort(key: Any) -> tuple[int, int, bytes]:
    """Array-index keys first, in numeric order; then every other key by UTF-16 code units."""
    if not isinstance(key, str):
        raise CanonicalJsonError("object keys must be strings")
    if _ARRAY_INDEX.fullmatch(key) and int(key) <= _MAX_ARRAY_INDEX:
        return (0, int(key), b"")
    return (1, 0, _utf16_order(key))


def format_js_number(number: float) -> str:
    """Format a float as ECMAScript ``Number.prototype.toString`` does (radix 10)."""
    if math.isnan(number) or math.isinf(number):
        raise CanonicalJsonError("NaN and Infinity are not JSON numbers")
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    # repr() gives the shortest digits that round-trip, as ECMAScript requires.
    digits_tuple = Decimal(repr(abs(number))).normalize().as_tuple()
    digits = "".join(str(d) for d in digits_tuple.digits)
    assert isinstance(digits_tuple.exponent, int)
    k = len(digits)
    n = digits_tuple.exponent + k  # the decimal point sits after n digits
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        exponent = n - 1
        mantissa = digits[0] if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"
    return sign + body


# A compensation call's key is derived from the write's, never equal to it: a target that
# deduplicates on the key would otherwise answer the undo from its cache of the write (nothing
# undone, yet a success). The label keeps the two kinds of key apart for ever.
COMPENSATION_KEY_LABEL = "fulfill.compensation.v1"


def compensation_idempotency_key(*, write_key: str, compensation_tool: str, object_id: str) -> str:
    """The idempotency key of one compensation call: undoing ``object_id`` of the write whose key
    is ``write_key`` with ``compensation_tool``.

    ``lowercase_hex(SHA-256(UTF-8(canonical_json([label, write_key, compensation_tool, object_id]))))``

    Deterministic, so every retry of that compensation (within its workflow, a later try started
    by the reconciler, a replay after a crash) sends the same key and a deduplicating target
    undoes once. The object id is part of it because one compensation undoes each written object
    with its own call. A JSON array, not a joined string, so that no two inputs share a key
    whatever characters the ids contain.
    """
    material = canonical_json([COMPENSATION_KEY_LABEL, write_key, compensation_tool, object_id])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()
