"""Store failures are classified by the server's error code, never by message text."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from agenttrail.store._classify import REJECTED_CODES, SCHEMA_MISSING_CODES, Failure, classify

# The message says something else on purpose: only the code may decide.
MISLEADING = "Code: 241. DB::Exception: Memory limit exceeded (MEMORY_LIMIT_EXCEEDED)"


@pytest.mark.parametrize("code", sorted(REJECTED_CODES))
def test_a_refusal_of_the_data_is_rejected(code: int) -> None:
    assert classify(DatabaseError(MISLEADING, code=code)) is Failure.REJECTED


@pytest.mark.parametrize("code", sorted(SCHEMA_MISSING_CODES))
def test_a_missing_table_or_column_is_schema_missing(code: int) -> None:
    assert classify(DatabaseError(MISLEADING, code=code)) is Failure.SCHEMA_MISSING


@pytest.mark.parametrize(
    "code",
    [
        241,  # MEMORY_LIMIT_EXCEEDED
        252,  # TOO_MANY_PARTS
        159,  # TIMEOUT_EXCEEDED
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        242,  # TABLE_IS_READ_ONLY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        999_999,  # a code this version does not know
    ],
)
def test_an_outage_or_an_unknown_code_is_unavailable(code: int) -> None:
    text = "Code: 53. DB::Exception: Type mismatch (TYPE_MISMATCH)"  # misleading again
    assert classify(DatabaseError(text, code=code)) is Failure.UNAVAILABLE


def test_errors_without_a_code_are_unavailable_unless_the_client_refused_to_encode() -> None:
    assert classify(OperationalError("Error executing HTTP request")) is Failure.UNAVAILABLE
    assert classify(ConnectionRefusedError(111, "refused")) is Failure.UNAVAILABLE
    assert classify(DatabaseError("Code: 53. Type mismatch")) is Failure.UNAVAILABLE
    assert classify(DataError("Unable to create native array for column `a`")) is (Failure.REJECTED)
