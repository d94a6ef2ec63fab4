"""Validating against an untrusted JSON schema: a gateway target's tool input schema.

A target chooses its tools' input schemas, an agent chooses the values checked against them, and
both reach this process. So, here and only here:

* **No network, ever.** Validators resolve ``$ref`` in a :class:`referencing.Registry` that holds
  the schema itself and the bundled JSON Schema meta-schemas, and whose ``retrieve`` refuses
  every URI (jsonschema's default registry would fetch remote refs with urllib: no allow-list,
  no timeout). Discovery refuses a schema with a ``$ref`` that does not resolve inside it
  (:func:`refusal`); a schema stored before that check still never fetches: validating against
  it raises :class:`UncheckableSchema`.
* **Bounded patterns.** ``pattern``, ``patternProperties`` and ``additionalProperties`` (which
  matches property names against ``patternProperties``) run on the ``regex`` engine with a
  timeout and with the GIL released (``concurrent``), not on ``re``, which holds the GIL for as
  long as a catastrophic backtrack takes and so stalls every thread of the process. One
  validation has one budget for all its matches; when it is spent, :class:`PatternTimeout`.
  (``regex`` counts a match's timeout in processor time: on an overloaded machine a check can
  take longer in wall time, but it holds nobody else up meanwhile.)
  ``unevaluatedProperties`` would match ``patternProperties`` with ``re`` inside jsonschema, so
  discovery refuses a schema that has both.
* **Bounded nesting.** Discovery refuses schemas nested deeper than :data:`MAX_SCHEMA_DEPTH`;
  parameters deeper than :data:`MAX_PARAMETER_DEPTH` are refused where they enter
  (:func:`too_deep`), before anything recursive (canonical JSON, serialisers, validators) sees them.

* **Quick checks stay quick.** A schema made only of keywords that check each value against one
  subschema (no pattern, reference, combination or pairwise comparison), checked against a small
  enough value, costs at most :data:`QUICK_CHECK_BUDGET` steps (:meth:`UntrustedSchema.is_quick_for`):
  short enough to run where it is asked. Everything else is CPU work of unknown length; async
  callers run it in a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import jsonschema
import regex
from jsonschema.exceptions import ValidationError
from jsonschema_specifications import REGISTRY as META_SCHEMAS  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.exceptions import NoSuchAnchor, NoSuchResource, PointerToNowhere, Unresolvable
from referencing.jsonschema import DRAFT202012

# Parameters of an intent: ``{"a": {"b": 1}}`` is 2 deep. Real parameters are a few levels deep;
# the bound keeps recursive code (canonical JSON, serialisers, validators) far from Python's
# recursion limit.
MAX_PARAMETER_DEPTH = 32
# A target's input schema, counted the same way (every object and array).
MAX_SCHEMA_DEPTH = 64
# Default budget of the patterns of one validation (FULFILL_SCHEMA_PATTERN_TIMEOUT_SECONDS).
DEFAULT_PATTERN_TIMEOUT_SECONDS = 0.5
# The most a quick check may walk: the schema's checked nodes times the value's nodes. A tool's
# usual schema (tens of nodes) with its usual arguments (a few to tens of values) is well inside and
# checks in tens of microseconds; at the bound, with a value made to fail every check it meets (an
# error each, thousands), a check takes 6-10 ms, about what parsing a 0.85 MB JSON body takes
# (bench.micro_costs).
QUICK_CHECK_BUDGET = 2048
# Keywords a quick schema may assert: a few steps per value, or one per member they list.
_QUICK_ASSERTIONS = frozenset(
    {
        "type",
        "enum",
        "const",
        "required",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
    }
)
# Keywords that check nothing (``format`` is an annotation here: no format checker is set).
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
    }
)

_REF_KEYWORDS = ("$ref", "$dynamicRef")


class UncheckableSchema(Exception):
    """The schema cannot be used to check anything (it refers outside itself, to nothing, or to
    itself without end); the message says why, and is safe to show."""


class PatternTimeout(Exception):
    """A value could not be checked against the schema's patterns within the budget."""

    def __init__(self, value: str) -> None:
        super().__init__("a value could not be checked against its pattern in time")
        # The string being matched, never shown (an agent's value): callers find where it sits.
        self.value = value


def _refuse_retrieval(uri: str) -> Resource[Any]:
    # A schema from a target must never make this process open a connection.
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


_REGISTRY: Registry[Any] = Registry(retrieve=_refuse_retrieval).combine(META_SCHEMAS)  # type: ignore[call-arg]
_DEADLINE: ContextVar[float] = ContextVar("fulfill_schema_pattern_deadline", default=0.0)


# --- depth ----------------------------------------------------------------------------------------


def _values(value: Any) -> Iterator[tuple[Any, int]]:
    """Every value ``value`` holds, itself first, each with how many objects and arrays hold it.
    Iterative, and lazy: a caller that stops early never makes it look further."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, holders = stack.pop()
        yield item, holders
        if isinstance(item, dict | list):
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, holders + 1) for child in children)


def depth_of(value: Any, *, limit: int) -> int:
    """How deep ``value`` nests (a scalar is 0, ``{}`` and ``[]`` are 1), counting only up to
    ``limit + 1``. Iterative: a value nested a million deep costs no recursion."""
    deepest = 0
    for item, holders in _values(value):
        if isinstance(item, dict | list):
            deepest = max(deepest, holders + 1)
            if deepest > limit:
                return deepest
    return deepest


def too_deep(value: Any, limit: int = MAX_PARAMETER_DEPTH) -> bool:
    return depth_of(value, limit=limit) > limit


def nodes_of(value: Any, *, limit: int) -> int:
    """How many values ``value`` holds, itself included (``{"a": [1]}`` holds 3), counting only
    up to ``limit + 1``."""
    count = 0
    for _ in _values(value):
        count += 1
        if count > limit:
            break
    return count


def quick_schema_nodes(schema: Any) -> int | None:
    """How many nodes a check against ``schema`` walks per value, when the schema is quick: made
    only of the assertions above and of ``properties``, ``items``, ``prefixItems`` and
    ``additionalProperties``, with at most :data:`QUICK_CHECK_BUDGET` checked nodes. None when it
    is not (a ``$ref``, ``pattern``, ``anyOf``, ``uniqueItems``, any other keyword, or too big)."""
    nodes = 0
    stack: list[Any] = [schema]
    while stack:
        subschema = stack.pop()
        nodes += 1
        if isinstance(subschema, bool):
            continue
        if not isinstance(subschema, dict):
            return None
        for keyword, value in subschema.items():
            if keyword in _ANNOTATIONS:
                continue
            if keyword in _QUICK_ASSERTIONS:
                nodes += nodes_of(value, limit=QUICK_CHECK_BUDGET)
            elif keyword == "properties" and isinstance(value, dict):
                stack.extend(value.values())
            elif keyword in ("items", "additionalProperties"):
                stack.append(value)
            elif keyword == "prefixItems" and isinstance(value, list):
                stack.extend(value)
            else:
                return None
        if nodes > QUICK_CHECK_BUDGET:
            return None
    return nodes


# --- discovery --------------------------------------------------------------------------------------


def refusal(schema: dict[str, Any]) -> str | None:
    """Why a target's input schema cannot be used (a short reason), or None when it can."""
    if too_deep(schema, MAX_SCHEMA_DEPTH):
        return f"input schema nested deeper than {MAX_SCHEMA_DEPTH} levels"
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError:
        return "invalid input schema"
    root = DRAFT202012.create_resource(schema)
    has_pattern_properties = has_unevaluated_properties = False
    for resource, resolver in _subschemas(root):
        contents = resource.contents
        if not isinstance(contents, dict):
            continue
        for keyword in _REF_KEYWORDS:
            ref = contents.get(keyword)
            if not isinstance(ref, str):
                continue
            try:
                resolver.lookup(ref)
            except (PointerToNowhere, NoSuchAnchor):
                return f"input schema has a {keyword} to nothing: {ref[:100]}"
            except Unresolvable:
                return f"input schema has a {keyword} outside itself (never fetched): {ref[:100]}"
        patterns = [contents["pattern"]] if isinstance(contents.get("pattern"), str) else []
        if isinstance(contents.get("patternProperties"), dict):
            has_pattern_properties = True
            patterns.extend(contents["patternProperties"])
        has_unevaluated_properties |= "unevaluatedProperties" in contents
        for pattern in patterns:
            try:
                regex.compile(pattern)
            except (regex.error, TypeError, ValueError):
                return f"input schema has a pattern that cannot be compiled: {str(pattern)[:100]}"
    if has_pattern_properties and has_unevaluated_properties:
        return "input schema combines patternProperties with unevaluatedProperties (not supported)"
    return None


def _subschemas(root: Resource[Any]) -> Iterator[tuple[Resource[Any], Any]]:
    """Every subschema of ``root`` with the resolver for its base URI (``$id`` changes it)."""
    resolver = _REGISTRY.with_resource(root.id() or "", root).resolver_with_root(root)
    stack = [(root, resolver)]
    while stack:
        resource, current = stack.pop()
        yield resource, current
        stack.extend((sub, current.in_subresource(sub)) for sub in resource.subresources())


# --- validation -------------------------------------------------------------------------------------


def _search(pattern: str, text: str) -> bool:
    remaining = _DEADLINE.get() - time.monotonic()
    if remaining <= 0:
        raise PatternTimeout(text)
    try:
        return regex.search(pattern, text, timeout=remaining, concurrent=True) is not None
    except TimeoutError:
        raise PatternTimeout(text) from None
    except (regex.error, TypeError, ValueError):
        raise UncheckableSchema("the input schema has a pattern that cannot be compiled") from None


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError("does not match its pattern")


def _pattern_properties(
    validator: Any, pattern_properties: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        for name, value in instance.items():
            if _search(pattern, name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        name
        for name in instance
        if name not in properties and not any(_search(pattern, name) for pattern in patterns)
    ]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        yield ValidationError("additional properties are not allowed")


_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    },
)


class UntrustedSchema:
    """A validator for one untrusted schema: no network, patterns within ``pattern_timeout``
    seconds per validation (all matches together)."""

    def __init__(
        self, schema: dict[str, Any], *, pattern_timeout: float = DEFAULT_PATTERN_TIMEOUT_SECONDS
    ) -> None:
        self.schema = schema
        self.pattern_timeout = pattern_timeout
        self._validator = _Validator(schema, registry=_REGISTRY)
        self._quick_nodes = quick_schema_nodes(schema)

    def is_quick_for(self, instance: Any) -> bool:
        """Whether checking ``instance`` walks at most :data:`QUICK_CHECK_BUDGET` steps: a quick
        schema (:func:`quick_schema_nodes`) and a value small enough for it."""
        if self._quick_nodes is None:
            return False
        limit = QUICK_CHECK_BUDGET // self._quick_nodes
        return nodes_of(instance, limit=limit) <= limit

    def errors(self, instance: Any) -> list[ValidationError]:
        """Every way ``instance`` fails the schema (empty when it satisfies it).

        Raises :class:`PatternTimeout` when the patterns took longer than the budget, and
        :class:`UncheckableSchema` when the schema cannot be evaluated (a ``$ref`` outside
        itself or to nothing, endless recursion)."""
        deadline = _DEADLINE.set(time.monotonic() + self.pattern_timeout)
        try:
            return list(self._validator.iter_errors(instance))
        except (PointerToNowhere, NoSuchAnchor):
            raise UncheckableSchema("the input schema has a $ref to nothing") from None
        except Unresolvable:
            raise UncheckableSchema(
                "the input schema has a $ref outside itself, which is never fetched"
            ) from None
        except RecursionError:
            raise UncheckableSchema("the input schema refers to itself without end") from None
        finally:
            _DEADLINE.reset(deadline)
