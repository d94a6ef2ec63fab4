"""The ``error`` member of problem documents: what clients of the reference read."""

from __future__ import annotations

import pytest

from fulfill.api.problems import error_text


@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [
        # The reference answers these with a fixed word, whatever the reason.
        (401, "token expired", "Unauthorized"),
        (403, "the token lacks the scope 'admin'", "Forbidden"),
        (500, "an unexpected error occurred", "Internal server error"),
        # Otherwise the detail, as a sentence...
        (404, "execution not found", "Execution not found"),
        (400, "the limit query parameter must be a whole number from 1 to 100", "The limit query parameter must be a whole number from 1 to 100"),
        # ...but a leading field name keeps its spelling.
        (422, "parameters.title: must be of type string", "parameters.title: must be of type string"),
        (409, "action_intent_id is already in use", "action_intent_id is already in use"),
    ],
)  # fmt: skip
def test_error_text(status: int, detail: str, expected: str) -> None:
    assert error_text(status, detail) == expected
