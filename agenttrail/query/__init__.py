"""Reading the record: named forensic queries, task runs, metrics, replay and prices.

Example:
    >>> query = load_named_query("tool_loops")                      # doctest: +SKIP
    >>> result = query.run(store, {"min_repeats": "3"})             # doctest: +SKIP
    >>> result.records()                                            # doctest: +SKIP
    >>> list_runs(store, outcome="failed", since=parse_since("24h")) # doctest: +SKIP
    >>> replay_task(store, "inv-00042")                             # doctest: +SKIP
    >>> event_at_seq(store, "inv-00042", 7)[0].columns["args_json"] # doctest: +SKIP
"""

from agenttrail.query._event import StoredEvent, event_at_seq
from agenttrail.query._metrics import (
    GROUPINGS,
    MetricsRow,
    StepTrend,
    StepWindows,
    step_trends,
    task_metrics,
)
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
from agenttrail.query._prices import (
    PRICE_COLUMNS,
    Price,
    PriceFileError,
    list_prices,
    load_prices,
    parse_prices,
    read_price_file,
)
from agenttrail.query._replay import (
    ModelInput,
    TaskLocation,
    TaskNotFound,
    TimelineEvent,
    locate_task,
    model_input_at_step,
    replay_task,
)
from agenttrail.query._runs import (
    OUTCOMES,
    TaskRun,
    ToolCall,
    get_run,
    list_runs,
)
from agenttrail.query._status import (
    BrokerStatus,
    BrokerStatusError,
    PartitionStatus,
    StoreStatus,
    broker_status,
    store_status,
)
from agenttrail.query._tail import TailEvent, TailFilter, TailFollower
from agenttrail.query._time import QueryError, parse_duration, parse_since

__all__ = [
    "GROUPINGS",
    "OUTCOMES",
    "PRICE_COLUMNS",
    "BrokerStatus",
    "BrokerStatusError",
    "MetricsRow",
    "ModelInput",
    "NamedQuery",
    "NamedQueryError",
    "PartitionStatus",
    "Price",
    "PriceFileError",
    "QueryColumn",
    "QueryDefinitionError",
    "QueryError",
    "QueryParam",
    "QueryParamError",
    "QueryResult",
    "StepTrend",
    "StepWindows",
    "StoreStatus",
    "StoredEvent",
    "TailEvent",
    "TailFilter",
    "TailFollower",
    "TaskLocation",
    "TaskNotFound",
    "TaskRun",
    "TimelineEvent",
    "ToolCall",
    "UnknownQueryError",
    "broker_status",
    "discover_named_queries",
    "event_at_seq",
    "forensics_dir",
    "get_run",
    "list_prices",
    "list_runs",
    "load_named_query",
    "load_prices",
    "locate_task",
    "model_input_at_step",
    "parse_duration",
    "parse_named_query",
    "parse_prices",
    "parse_since",
    "read_price_file",
    "replay_task",
    "step_trends",
    "store_status",
    "task_metrics",
]
