"""Reading the record: named forensic queries (and, as they land, runs, metrics, replay).

Example:
    >>> query = load_named_query("tool_loops")                      # doctest: +SKIP
    >>> result = query.run(store, {"min_repeats": "3"})             # doctest: +SKIP
    >>> result.records()                                            # doctest: +SKIP
"""

from agenttrail.query._named import (
    NamedQuery,
    NamedQueryError,
    QueryColumn,
    QueryDefinitionError,
    QueryParam,
    QueryParamError,
    QueryResult,
    UnknownQueryError,
    discover_named_queries,
    forensics_dir,
    load_named_query,
    parse_named_query,
)

__all__ = [
    "NamedQuery",
    "NamedQueryError",
    "QueryColumn",
    "QueryDefinitionError",
    "QueryParam",
    "QueryParamError",
    "QueryResult",
    "UnknownQueryError",
    "discover_named_queries",
    "forensics_dir",
    "load_named_query",
    "parse_named_query",
]
