from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from fulfill.domain.idempotency import (
    CanonicalJsonError,
    canonical_json,
    format_js_number,
    idempotency_key,
)

BASE: dict[str, Any] = {
    "tenant_id": "t1",
    "action_intent_id": "ai_1",
    "tool_name": "internal.create_task",
    "arguments": {"title": "x"},
    "registry_version": 1,
}


def key(**overrides: Any) -> str:
    return idempotency_key(**{**BASE, **overrides})


# ---------------------------------------------------------------- idempotency_key


def test_known_answer() -> None:
    expected = hashlib.sha256(b't1:ai_1:internal.create_task:{"title":"x"}:1').hexdigest()
    assert (
        idempotency_key(
            tenant_id="t1",
            action_intent_id="ai_1",
            tool_name="internal.create_task",
            arguments={"title": "x"},
            registry_version=1,
        )
        == expected
    )


def test_key_hashes_utf8_of_unescaped_canonical_args() -> None:
    args = {"b": [1, 2.5, None], "a": "é"}
    material = 't1:ai_1:internal.create_task:{"a":"é","b":[1,2.5,null]}:1'
    assert key(arguments=args) == hashlib.sha256(material.encode("utf-8")).hexdigest()


def test_key_is_deterministic_and_lowercase_hex() -> None:
    first = key()
    assert first == key()
    assert re.fullmatch(r"[0-9a-f]{64}", first)


def test_key_independent_of_key_order_including_nested() -> None:
    one = {"a": 1, "b": {"x": 1, "y": [{"p": 1, "q": 2}]}, "c": None}
    two = {"c": None, "b": {"y": [{"q": 2, "p": 1}], "x": 1}, "a": 1}
    assert list(one) != list(two)
    assert key(arguments=one) == key(arguments=two)


@pytest.mark.parametrize(
    "override",
    [
        {"tenant_id": "t2"},
        {"action_intent_id": "ai_2"},
        {"tool_name": "internal.create_note"},
        {"arguments": {"title": "y"}},
        {"arguments": {"title": "x", "extra": None}},
        {"arguments": {"Title": "x"}},
        {"arguments": {}},
        {"registry_version": 2},
    ],
)
def test_key_changes_when_any_input_changes(override: dict[str, Any]) -> None:
    assert key(**override) != key()


def test_array_order_changes_key() -> None:
    assert key(arguments={"l": [1, 2]}) != key(arguments={"l": [2, 1]})


def test_integral_float_and_int_give_the_same_key() -> None:
    assert key(arguments={"n": 1.0}) == key(arguments={"n": 1})
    assert key(arguments={"n": -0.0}) == key(arguments={"n": 0})
    assert key(arguments={"n": 1.5}) != key(arguments={"n": 1})


def test_key_rejects_non_json_arguments() -> None:
    with pytest.raises(CanonicalJsonError):
        key(arguments={"n": float("nan")})


# ---------------------------------------------------------------- canonical_json


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-17, "-17"),
        (10**30, "1000000000000000000000000000000"),
        (1.0, "1"),
        (2.5, "2.5"),
        ("a", '"a"'),
        ("", '""'),
        ('q"\\', '"q\\"\\\\"'),
        ("line\nbreak\t", '"line\\nbreak\\t"'),
        ("\x1f", '"\\u001f"'),
        ("é😀日本", '"é😀日本"'),
        ([], "[]"),
        ({}, "{}"),
        ([3, 1, 2], "[3,1,2]"),
        ((1, "a"), '[1,"a"]'),
        ({"b": 1, "a": [True, None, {"d": 1, "c": 2}]}, '{"a":[true,null,{"c":2,"d":1}],"b":1}'),
        ({"k": None}, '{"k":null}'),
        ({"ü": "ö"}, '{"ü":"ö"}'),
    ],
)
def test_canonical_json_values(value: Any, expected: str) -> None:
    assert canonical_json(value) == expected


def test_canonical_json_is_compact() -> None:
    text = canonical_json({"a": [1, 2], "b": {"c": "d e"}})
    assert text == '{"a":[1,2],"b":{"c":"d e"}}'
    assert ": " not in text
    assert ", " not in text


def test_keys_sorted_by_utf16_code_units_not_code_points() -> None:
    # U+1F600 is the surrogate pair D83D DE00 in UTF-16, which sorts before U+FFFF;
    # by code point (Python's default) it would sort after.
    value = {"\uffff": 1, "\U0001f600": 2}
    assert canonical_json(value) == '{"\U0001f600":2,"\uffff":1}'
    assert sorted(value) == ["\uffff", "\U0001f600"]  # the order Python alone would produce


def test_keys_sorted_case_sensitively_uppercase_first() -> None:
    assert canonical_json({"b": 1, "a": 2, "B": 3, "A": 4}) == '{"A":4,"B":3,"a":2,"b":1}'


def test_keys_sorted_by_prefix() -> None:
    assert canonical_json({"ab": 1, "a": 2, "": 3}) == '{"":3,"a":2,"ab":1}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_rejected(bad: float) -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_json({"nested": [bad]})


@pytest.mark.parametrize("mapping", [{1: "a"}, {"a": 1, 2: "b"}, {None: 1}, {(1, 2): 3}])
def test_non_string_keys_rejected(mapping: dict[Any, Any]) -> None:
    with pytest.raises(CanonicalJsonError, match="keys must be strings"):
        canonical_json(mapping)


@pytest.mark.parametrize("bad", [{1, 2}, b"bytes", object(), 1 + 2j])
def test_unsupported_types_rejected(bad: Any) -> None:
    with pytest.raises(CanonicalJsonError, match="is not JSON"):
        canonical_json({"v": bad})


def test_canonical_json_error_is_value_error() -> None:
    assert issubclass(CanonicalJsonError, ValueError)


# ---------------------------------------------------------------- format_js_number


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1.0, "1"),
        (-0.0, "0"),
        (0.0, "0"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (0.0000015, "0.0000015"),
        (1e-7, "1e-7"),
        (123.456, "123.456"),
        (-2.5, "-2.5"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-1.7976931348623157e308, "-1.7976931348623157e+308"),
        (1.5e21, "1.5e+21"),
        (-1e21, "-1e+21"),
        (-1e-7, "-1e-7"),
        (0.30000000000000004, "0.30000000000000004"),
        (123456789.125, "123456789.125"),
        (1e100, "1e+100"),
        (42.0, "42"),
        (-7.0, "-7"),
    ],
)
def test_format_js_number(number: float, expected: str) -> None:
    assert format_js_number(number) == expected


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_format_js_number_rejects_non_finite(bad: float) -> None:
    with pytest.raises(CanonicalJsonError):
        format_js_number(bad)


# ---------------------------------------------------------------- known divergences from JavaScript


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (2.0**60, "1152921504606847000"),
        (1.2345678901234567e20, "123456789012345670000"),
    ],
)
def test_format_js_number_large_integral_floats_use_shortest_digits(number: float, expected: str) -> None:
    # Values and expectations from node: String(2**60), String(1.2345678901234567e20).
    assert format_js_number(number) == expected


def test_lone_surrogate_is_escaped_like_json_stringify() -> None:
    # node: JSON.stringify({k: "\ud800"}) === '{"k":"\\ud800"}'
    assert canonical_json({"k": "\ud800"}) == '{"k":"\\ud800"}'


# ---------------------------------------------------------------- integer-like keys, as JavaScript orders them


@pytest.mark.parametrize(
    ("arguments", "canonical", "expected_key"),
    [
        # Expected values computed with the reference's own TypeScript function.
        (
            {"1": "a", "10": "b", "2": "c"},
            '{"1":"a","2":"c","10":"b"}',
            "ed7ea0a6e300f146adbe7eca003040942f3cca37e2a1f393c9209b6f5e0fb1c7",
        ),
        (
            {"10": 1, "9": 2},
            '{"9":2,"10":1}',
            "2f019db0761a743725375625de05682490367367b3bf183607798bd1257f7945",
        ),
        (
            {"!": 1, "5": 2},
            '{"5":2,"!":1}',
            "c56ec15b33af920df83bb8eb34ddf7ac90df5816cabae504cda369200b1fb3db",
        ),
    ],
)
def test_keys_equal_the_reference_s_for_integer_like_object_keys(
    arguments: dict[str, Any], canonical: str, expected_key: str
) -> None:
    assert canonical_json(arguments) == canonical
    assert (
        idempotency_key(
            tenant_id="tenant-1",
            action_intent_id="ai_123",
            tool_name="internal.create_task",
            arguments=arguments,
            registry_version=1,
        )
        == expected_key
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Array indexes (0 … 2**32 - 2) first, numerically; everything else after, by UTF-16 units.
        ({"4294967295": 1, "!": 2, "4294967294": 3}, '{"4294967294":3,"!":2,"4294967295":1}'),
        ({"01": 1, "1": 2, "-1": 3, "1.5": 4, " 1": 5, "0": 6}, '{"0":6,"1":2," 1":5,"-1":3,"01":1,"1.5":4}'),
        ({"b": {"2": 1, "10": 2}, "a": [{"10": 1, "2": 2}]}, '{"a":[{"2":2,"10":1}],"b":{"2":1,"10":2}}'),
        ({"\u0663": 1, "3": 2}, '{"3":2,"\u0663":1}'),  # only ASCII digits make an index
    ],
)
def test_array_index_keys_come_first_in_numeric_order(value: dict[str, Any], expected: str) -> None:
    assert canonical_json(value) == expected


def test_the_key_ignores_proto_members_as_javascript_does() -> None:
    # node: JSON.stringify of the reference's canonical copy of {"__proto__": {...}, "a": 1} is {"a":1}
    with_proto = {"__proto__": {"x": 1}, "a": {"__proto__": None, "b": 1}}
    assert key(arguments=with_proto) == key(arguments={"a": {"b": 1}})
    # ...but a request fingerprint keeps them: different bodies never compare equal.
    assert canonical_json(with_proto) != canonical_json({"a": {"b": 1}})


# ---------------------------------------------------------------- ids that contain the separator


def test_ids_with_a_colon_do_not_collide_across_tenants() -> None:
    # Both would hash "t:x:y:internal.create_task:{...}:1" in the reference's form.
    one = key(tenant_id="t:x", action_intent_id="y")
    other = key(tenant_id="t", action_intent_id="x:y")
    assert one != other


@pytest.mark.parametrize(
    ("tenant_id", "action_intent_id"), [("t:x", "y"), ("t", "x:y"), ("a:b", "c:d"), ("t", "x:")]
)
def test_ids_with_a_colon_hash_the_unambiguous_material(tenant_id: str, action_intent_id: str) -> None:
    material = f'["fulfill-idempotency-v2","{tenant_id}","{action_intent_id}","internal.create_task",{{"title":"x"}},1]'
    expected = hashlib.sha256(material.encode("utf-8")).hexdigest()
    assert key(tenant_id=tenant_id, action_intent_id=action_intent_id) == expected
    reference_form = f'{tenant_id}:{action_intent_id}:internal.create_task:{{"title":"x"}}:1'
    assert expected != hashlib.sha256(reference_form.encode("utf-8")).hexdigest()


def test_ids_without_a_colon_keep_the_reference_material() -> None:
    material = 'tenant-1@acme.example:ai_1.x-y:internal.create_task:{"title":"x"}:1'
    assert (
        key(tenant_id="tenant-1@acme.example", action_intent_id="ai_1.x-y")
        == hashlib.sha256(material.encode("utf-8")).hexdigest()
    )
