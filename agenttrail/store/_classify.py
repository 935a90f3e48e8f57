"""What a store failure means, from the error code ClickHouse gives it.

clickhouse-connect keeps the server's numeric error code on its exceptions (``code``,
from the ``X-ClickHouse-Exception-Code`` header over HTTP, from the engine in-process).
The code, never the message text, decides:

* schema missing: a table, column or database does not exist: the store needs
  ``agenttrail migrate``; retrying cannot help, dead-lettering would be wrong;
* rejected: the server refuses this data for good (a value it cannot parse or hold,
  a size or a constraint); the same data will fail again, so the rows are isolated;
* unavailable: everything else (connection, timeout, too many parts, memory limit,
  read-only replica, an error without a code): back off and retry the same insert.

Unknown codes count as unavailable: retrying a rejection wastes time, dead-lettering
an outage would lose the guarantee that good events are stored.
"""

from __future__ import annotations

import enum

from clickhouse_connect.driver.exceptions import DataError


class Failure(enum.Enum):
    """The kinds of store failure."""

    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"
    SCHEMA_MISSING = "schema_missing"


SCHEMA_MISSING_CODES: frozenset[int] = frozenset(
    {
        10,  # NOT_FOUND_COLUMN_IN_BLOCK
        16,  # NO_SUCH_COLUMN_IN_TABLE
        47,  # UNKNOWN_IDENTIFIER
        60,  # UNKNOWN_TABLE
        81,  # UNKNOWN_DATABASE
    }
)
"""Server codes meaning the store lacks a table, column or database."""

REJECTED_CODES: frozenset[int] = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        33,  # CANNOT_READ_ALL_DATA (a body shorter than its schema says)
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        128,  # TOO_LARGE_ARRAY_SIZE
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        469,  # VIOLATED_CONSTRAINT
    }
)
"""Server codes meaning this data is refused for good."""


def classify(exc: BaseException) -> Failure:
    """The kind of a failure raised by clickhouse-connect (or the OS). Pure.

    A ``DataError`` without a server code is clickhouse-connect refusing to encode a
    value for its column (out of range for the type): rejected.
    """
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        if code in SCHEMA_MISSING_CODES:
            return Failure.SCHEMA_MISSING
        if code in REJECTED_CODES:
            return Failure.REJECTED
        return Failure.UNAVAILABLE
    if isinstance(exc, DataError):
        return Failure.REJECTED
    return Failure.UNAVAILABLE
