"""The agent SDK: record every LLM call, tool call, transition and guard decision.

Imports ``agenttrail.events`` only; an agent installs it without the backend.

Example:
    >>> from agenttrail.producer import Recorder, Limits
    >>> rec = Recorder(bootstrap="127.0.0.1:9092", tenant="acme", agent="invoicer")
    >>> with rec.task("invoice_generation", limits=Limits(max_steps=10)) as task:
    ...     ...
    >>> rec.close()
"""

from agenttrail.producer._config import RecorderConfigError, RecorderSettings
from agenttrail.producer._confirm import (
    CallbackPolicy,
    ConfirmationDenied,
    ConfirmationPolicy,
    ConfirmationRequest,
    Decision,
    RulePolicy,
    amount_threshold,
)
from agenttrail.producer._context import bind, current_span, current_task
from agenttrail.producer._decorator import tool
from agenttrail.producer._detectors import BUILTIN_DETECTORS, Detector, PatternDetector
from agenttrail.producer._exporter import Exporter, ExporterUnavailable, KafkaExporter, OutRecord
from agenttrail.producer._injection import (
    InjectionBlocked,
    InjectionDetector,
    InjectionFlag,
    InjectionPolicy,
    RuleDetector,
    scan_injection,
)
from agenttrail.producer._killswitch import TaskKilled
from agenttrail.producer._limits import LimitExceeded, Limits, TaskStopped
from agenttrail.producer._pipeline import CloseReport
from agenttrail.producer._recorder import Recorder
from agenttrail.producer._scrub import Redaction, Scrubber, ToolRedaction
from agenttrail.producer._spans import ABANDONED, LlmCall, Span, SpanAlreadyEnded, ToolSpan
from agenttrail.producer._stop import cancel_on_stop
from agenttrail.producer._task import StopHook, Task
from agenttrail.producer._task_safety import InputRejected

__all__ = [
    "ABANDONED",
    "BUILTIN_DETECTORS",
    "CallbackPolicy",
    "CloseReport",
    "ConfirmationDenied",
    "ConfirmationPolicy",
    "ConfirmationRequest",
    "Decision",
    "Detector",
    "Exporter",
    "ExporterUnavailable",
    "InjectionBlocked",
    "InjectionDetector",
    "InjectionFlag",
    "InjectionPolicy",
    "InputRejected",
    "KafkaExporter",
    "LimitExceeded",
    "Limits",
    "LlmCall",
    "OutRecord",
    "PatternDetector",
    "Recorder",
    "RecorderConfigError",
    "RecorderSettings",
    "Redaction",
    "RuleDetector",
    "RulePolicy",
    "Scrubber",
    "Span",
    "SpanAlreadyEnded",
    "StopHook",
    "Task",
    "TaskKilled",
    "TaskStopped",
    "ToolRedaction",
    "ToolSpan",
    "amount_threshold",
    "bind",
    "cancel_on_stop",
    "current_span",
    "current_task",
    "scan_injection",
    "tool",
]
