"""The Recorder: the SDK's entry point."""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from agenttrail.events import uuid7
from agenttrail.producer._config import (
    RecorderSettings,
    discover_local_registry,
    discover_local_stack,
    load_checkpoint_key,
    load_settings,
)
from agenttrail.producer._confirm import ConfirmationPolicy
from agenttrail.producer._control_channel import ControlChannel, KafkaControlChannel
from agenttrail.producer._detectors import BUILTIN_DETECTORS
from agenttrail.producer._exporter import Exporter, kafka_exporter
from agenttrail.producer._injection import InjectionDetector, InjectionPolicy
from agenttrail.producer._limits import Limits
from agenttrail.producer._pipeline import CloseReport, Pipeline, Unsealed
from agenttrail.producer._registry_framing import registry_framed
from agenttrail.producer._safety import EscalationHandler, SafetyPlane
from agenttrail.producer._scrub import DEFAULT_SENSITIVE_KEYS, Scrubber
from agenttrail.producer._task import StopHook, Task

log = logging.getLogger("agenttrail.producer")


class Recorder:
    """Records an agent's tasks as events and ships them to Kafka.

    Construction never blocks on the network and never fails because the broker is
    away: events are spooled to disk until it answers. Without a bootstrap address,
    an exporter or a local ``agenttrail up`` to find, the recorder is disabled and says
    so once, as a warning at creation: events are built and discarded, but tasks,
    limits and stops behave exactly as when recording (safety never depends on
    observability configuration).

    Args:
        bootstrap: Kafka bootstrap servers (``AGENTTRAIL_BOOTSTRAP``).
        tenant: tenant of every event (``AGENTTRAIL_TENANT``).
        agent: agent name (``AGENTTRAIL_AGENT``).
        agent_version: agent version (``AGENTTRAIL_AGENT_VERSION``).
        exporter: a destination other than Kafka, e.g.
            :class:`agenttrail.producer.testing.InMemoryExporter`.
        schema_registry: Schema Registry URL (``AGENTTRAIL_SCHEMA_REGISTRY``): events are
            framed with the registry's schema ids, looked up once per schema; while it is
            away (or lacks a schema) events are spooled like any undeliverable event.
        sensitive_keys: argument keys whose values are redacted.
        on_stop: called once for every task of this recorder that is stopped (a crossed
            limit, a kill), after the task's own ``on_stop``; see :data:`StopHook`.
        scrubber: redaction of arguments, results, payloads and (``redact_content``)
            messages; the default runs every built-in detector plus ``sensitive_keys``.
            Pass your own for per-tool rules or extra detectors.
        injection_detector: replaces the rule set behind ``span.result`` and
            ``task.observe`` (e.g. a classifier); see ``InjectionDetector``.
        confirmation_policy: the default policy of ``task.confirm``.
        on_escalate: called by ``task.escalate(reason, to=...)``.
        control: where kill commands come from; by default the control topic of the
            Kafka bootstrap (``control=False`` setting: none).
        **settings: any other :class:`RecorderSettings` field (``spool_dir``,
            ``queue_size``, ``on_full``, ...).

    Raises:
        RecorderConfigError: an argument or ``AGENTTRAIL_*`` variable has a value it
            cannot take; the message names it, its value and what is allowed.

    Example:
        >>> rec = Recorder(bootstrap="127.0.0.1:9092", tenant="acme", agent="invoicer")
        >>> with rec.task("invoice_generation", entry={"order_id": "7294"}) as task:
        ...     with task.tool("get_order", args={"order_id": "7294"}) as span:
        ...         span.result({"status": "confirmed"})
        >>> report = rec.close()
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        tenant: str | None = None,
        agent: str | None = None,
        agent_version: str | None = None,
        exporter: Exporter | None = None,
        schema_registry: str | None = None,
        sensitive_keys: Iterable[str] = DEFAULT_SENSITIVE_KEYS,
        on_stop: StopHook | None = None,
        scrubber: Scrubber | None = None,
        injection_detector: InjectionDetector | None = None,
        confirmation_policy: ConfirmationPolicy | None = None,
        on_escalate: EscalationHandler | None = None,
        control: ControlChannel | None = None,
        **settings: Any,
    ):
        given: dict[str, Any] = {
            k: v
            for k, v in {
                "bootstrap": bootstrap,
                "tenant": tenant,
                "agent": agent,
                "agent_version": agent_version,
                "schema_registry": schema_registry,
            }.items()
            if v is not None
        }
        self.settings: RecorderSettings = load_settings({**given, **settings})
        checkpoint_key = load_checkpoint_key(self.settings)
        self.producer_id = uuid7()
        self.on_stop = on_stop
        self._close_lock = threading.Lock()
        self._report: CloseReport | None = None
        address = self.settings.bootstrap
        registry_url = self.settings.schema_registry
        if address is None and exporter is None:
            address = discover_local_stack(self.settings.data)
            if registry_url is None:
                # A stack found through up.json: frame as its consumer expects.
                registry_url = discover_local_registry(self.settings.data)
        if exporter is None and self.settings.enabled and address is not None:
            exporter = kafka_exporter(self.settings.kafka_client, address, self.settings.topic)
        if exporter is not None and registry_url:
            exporter = registry_framed(exporter, registry_url, self.settings.topic)
        self.safety = self._safety_plane(
            scrubber,
            sensitive_keys,
            injection_detector,
            confirmation_policy,
            on_escalate,
            control,
            address,
        )
        self.enabled = self.settings.enabled and exporter is not None
        self._pipeline: Pipeline | None = None
        self.pipeline_submit: Callable[[Unsealed], None] = _discard
        if self.enabled and exporter is not None:
            self._pipeline = Pipeline(
                exporter,
                self.producer_id,
                spool_root=self.settings.spool_dir,
                spool_fsync=self.settings.spool_fsync,
                queue_size=self.settings.queue_size,
                on_full=self.settings.on_full,
                block_timeout_s=self.settings.block_timeout_s,
                retry_backoff_s=self.settings.retry_backoff_s,
                identity={
                    "tenant": self.settings.tenant,
                    "agent_name": self.settings.agent,
                    "agent_version": self.settings.agent_version,
                },
                checkpoint_interval_s=self.settings.checkpoint_interval_s,
                signing_key=checkpoint_key,
            )
            self.pipeline_submit = self._pipeline.submit
            # A recorder the program forgot to close still delivers or spools what it
            # holds when the interpreter exits (the pipeline thread is a daemon).
            atexit.register(self._pipeline.close, timeout=min(10.0, self.settings.close_timeout_s))
        elif self.settings.enabled:
            # Said once, at creation: a user who expected recording must know now, not
            # after the task ran. Limits still bind (Task enforces them either way).
            log.warning(
                "agenttrail: no destination found, so this recorder records nothing "
                "(limits still apply). Set AGENTTRAIL_BOOTSTRAP=host:9092, or run "
                "`agenttrail up` in %s (or set AGENTTRAIL_DATA to the directory it uses).",
                self.settings.data or "this directory",
            )

    def _safety_plane(
        self,
        scrubber: Scrubber | None,
        sensitive_keys: Iterable[str],
        injection_detector: InjectionDetector | None,
        confirmation_policy: ConfirmationPolicy | None,
        on_escalate: EscalationHandler | None,
        control: ControlChannel | None,
        address: str | None,
    ) -> SafetyPlane:
        s = self.settings
        if scrubber is None:
            key = s.redaction_key.get_secret_value().encode() if s.redaction_key else None
            scrubber = Scrubber(
                BUILTIN_DETECTORS if s.redact_detectors else (),
                sensitive_keys=sensitive_keys,
                key=key,
            )
        if control is None and s.control and address is not None:
            control = KafkaControlChannel(address, s.control_topic)
        keys = [k for k in (s.control_public_keys or "").split(",") if k.strip()]
        return SafetyPlane(
            producer_id=self.producer_id,
            scrubber=scrubber,
            redact_content=s.redact_content,
            injection_detector=injection_detector,
            injection_policy=InjectionPolicy(s.injection_policy),
            price_file=s.price_file,
            control=control,
            control_public_keys=keys,
            control_catch_up_s=s.control_catch_up_s,
            confirmation_policy=confirmation_policy,
            on_escalate=on_escalate,
        )

    @classmethod
    def from_env(cls, **overrides: Any) -> Recorder:
        """A recorder configured from ``AGENTTRAIL_*`` variables (arguments win).

        Finds a running local stack through ``AGENTTRAIL_DATA/up.json`` (or
        ``./.agenttrail/up.json``) when ``AGENTTRAIL_BOOTSTRAP`` is unset.
        """
        return cls(**overrides)

    def task(
        self,
        task_type: str,
        *,
        entry: Any = None,
        task_id: str | None = None,
        limits: Limits | None = None,
        tools: Iterable[str] | None = None,
        exit_condition: str | None = None,
        side_effect_budget: Iterable[str] = (),
        escalation_path: str | None = None,
        trace_id: str | None = None,
        traceparent: str | None = None,
        on_stop: StopHook | None = None,
        entry_model: Any = None,
        injection_policy: str | None = None,
    ) -> Task:
        """A task to record; use it as a context manager (see :class:`Task`).

        Args:
            task_type: kind of task; metrics are grouped by it.
            entry: data the task was given at start (recorded on the first transition).
            task_id: the task's id; generated when omitted.
            limits: hard limits; the next call after one is crossed raises LimitExceeded.
            tools: the tools this task may call; calls to others are flagged as undeclared.
            exit_condition: what success means for this task.
            side_effect_budget: external systems the task may write to.
            escalation_path: who takes over when the agent escalates.
            trace_id: join this W3C trace (32 hex digits) instead of starting one.
            traceparent: join the distributed trace of this W3C ``traceparent`` header;
                the task's root span is recorded as a child of its parent span.
            on_stop: called once if the task is stopped (a crossed limit, a kill), e.g.
                to cancel the asyncio task running it; see :data:`StopHook`.
            entry_model: a pydantic model the ``entry`` must validate against; invalid
                entry data is refused at start (``InputRejected``, an ``input_rejected``
                guard event, the task ``failed``).
            injection_policy: ``record``, ``block`` or ``escalate`` for content flagged
                as prompt injection (default: the recorder's ``injection_policy``).

        Raises:
            ValueError: ``trace_id`` or ``traceparent`` is malformed.
        """
        return Task(
            self,
            task_type,
            task_id=task_id,
            entry=entry,
            limits=limits,
            tools=tools,
            exit_condition=exit_condition,
            side_effect_budget=side_effect_budget,
            escalation_path=escalation_path,
            trace_id=trace_id,
            traceparent=traceparent,
            on_stop=on_stop,
            entry_model=entry_model,
            injection_policy=injection_policy,
        )

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until every event so far is acknowledged or spooled; True if so in time."""
        return True if self._pipeline is None else self._pipeline.flush(timeout)

    def close(self, timeout: float | None = None) -> CloseReport:
        """Deliver or durably spool every event, then stop. Idempotent.

        Returns when every event is acknowledged by the broker or written to the spool
        (at most about ``timeout`` seconds, ``close_timeout_s`` by default). The report
        says how many events are still spooled for the next start to deliver.
        """
        with self._close_lock:
            if self._report is None:
                self.safety.close()
                if self._pipeline is None:
                    self._report = CloseReport(delivered=0, spooled=0)
                else:
                    t = self.settings.close_timeout_s if timeout is None else timeout
                    self._report = self._pipeline.close(t)
            return self._report

    @property
    def stats(self) -> dict[str, int]:
        """Pipeline counters: ``queued``, ``delivered``, ``inflight``, ``spool_pending``,
        ``held_in_memory``, ``spool_full`` (1 while the disk refuses spool writes),
        ``rejected``."""
        return {} if self._pipeline is None else self._pipeline.stats

    @property
    def spool_error(self) -> str | None:
        """Why the spool refuses writes right now (e.g. the disk is full), or None.

        While it is set, events not yet acknowledged are held in memory only; a crash
        would lose them. It is also logged as an error when it starts.
        """
        return None if self._pipeline is None else self._pipeline.spool_error

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _discard(event: Unsealed) -> None:
    return None
