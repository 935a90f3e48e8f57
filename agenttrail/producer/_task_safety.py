"""The safety methods of a Task: confirmations, escalation, injection flags, redaction,
entry validation, kills and the wall-clock watchdog.

One of the parts :class:`agenttrail.producer.Task` is made of (over the recording core
and the stops of :mod:`._task_events` and :mod:`._task_stops`), kept apart so that the
task's recording logic and its guards each stay small. Every guard decision is recorded as a
``guard_event`` of the task; none depends on the recorder being able to record.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Awaitable
from hashlib import sha256
from typing import TYPE_CHECKING, Any, cast

from agenttrail.events import TERMINAL_STATES, GuardKind, LimitName, TaskState
from agenttrail.producer._confirm import (
    ConfirmationDenied,
    ConfirmationGrants,
    ConfirmationPolicy,
    ConfirmationRequest,
    Decision,
    PolicyResult,
    as_decision,
)
from agenttrail.producer._control import ControlMessage
from agenttrail.producer._detectors import BUILTIN_DETECTORS, may_hold_builtin_lowered
from agenttrail.producer._injection import (
    InjectionBlocked,
    InjectionFlag,
    InjectionPolicy,
    RuleDetector,
)
from agenttrail.producer._json import to_json
from agenttrail.producer._killswitch import TaskKilled
from agenttrail.producer._scrub import Redaction, Scrubber
from agenttrail.producer._task_stops import TaskStops

if TYPE_CHECKING:
    from agenttrail.producer._safety import SafetyPlane
    from agenttrail.producer._task import Task

log = logging.getLogger("agenttrail.producer")


class InputRejected(ValueError):
    """The task's entry data failed its ``entry_model``; the task did not run.

    Attributes:
        task_id: the task.
        problems: ``field: message`` per problem (no input values: they may be personal).
    """

    def __init__(self, task_id: str, model: str, problems: list[str]):
        self.task_id = task_id
        self.problems = problems
        super().__init__(
            f"Task {task_id} refused its entry data: it does not match {model} "
            f"({'; '.join(problems)}). Fix the caller's input; nothing of the task ran."
        )


class TaskSafety(TaskStops):
    """Guards of a task (see the module docstring); a part of Task."""

    safety: SafetyPlane
    entry_model: Any
    injection_policy: InjectionPolicy
    grants: ConfirmationGrants
    _kill: ControlMessage | None
    _kill_heard: float
    _kill_acked: bool
    _safety_lock: threading.Lock

    def _init_safety(self, entry_model: Any, injection_policy: str | None) -> None:
        self.safety: SafetyPlane = self.recorder.safety
        self.entry_model = entry_model
        self.injection_policy = InjectionPolicy(
            injection_policy if injection_policy is not None else self.safety.injection_policy
        )
        self.grants = ConfirmationGrants()
        self._kill: ControlMessage | None = None
        self._kill_heard = 0.0
        self._kill_acked = False
        self._safety_lock = threading.Lock()

    @property
    def tenant(self) -> str:
        return str(self.base["tenant"])

    @property
    def agent(self) -> str:
        return str(self.base["agent_name"])

    # -- start and end ---------------------------------------------------------------------

    def _on_started(self, entry_redactions: list[Redaction]) -> None:
        """After the ``started`` transition: record the entry's redactions, validate the
        entry, ask the kill switch, arm the watchdog. Raises InputRejected or TaskKilled
        (the task is then ended)."""
        if entry_redactions:
            self.guard(
                GuardKind.REDACTION_APPLIED,
                action="entry",
                decision="redact",
                decided_by="scrubber",
                detail="; ".join(f"{r.kind} at {r.path}" for r in entry_redactions),
            )
        if self.entry_model is not None:
            self._validate_entry()
        kill = self.safety.kill_switch.admit(self)
        if kill is not None:
            error = TaskKilled(self.task_id, kill, refused=True)
            self.stop(
                error,
                guard_kind=GuardKind.KILL_REQUESTED,
                decided_by=kill.issued_by or "operator",
                reason=f"refused: {kill.scope.describe()} is killed",
                action=kill.command_id,
            )
            raise error
        limit = self.limits.max_wall_clock_s if self.limits is not None else None
        if limit is not None:
            self.safety.watchdog.watch(self, self._started_at + limit)

    def _validate_entry(self) -> None:
        model = self.entry_model
        try:
            model.model_validate(self.entry)
        except Exception as exc:
            errors = getattr(exc, "errors", None)
            if callable(errors):
                problems = [
                    f"{'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg')}"
                    for e in errors(include_input=False, include_url=False)
                ]
            else:
                problems = [type(exc).__name__]
            error = InputRejected(self.task_id, getattr(model, "__name__", str(model)), problems)
            self.guard(
                GuardKind.INPUT_REJECTED,
                action=getattr(model, "__name__", None),
                decision="deny",
                decided_by="entry_model",
                detail=str(error),
            )
            self._finish(
                TaskState.FAILED,
                reason="input_rejected",
                error_type="InputRejected",
                error_detail=str(error),
            )
            raise error from None

    def _on_finished(self) -> None:
        self.safety.kill_switch.leave(self.task_id)

    # -- kills and the watchdog ------------------------------------------------------------

    def kill(self, command: ControlMessage, heard_at: float) -> None:
        """Stop the task for a kill command (called by the kill switch's thread).

        The stop is recorded and the ``on_stop`` hooks run now; the acknowledgement
        follows when the task's code meets the stop (its next SDK call raises
        :class:`TaskKilled`, or its ``with`` block ends), or at once if the task had
        already stopped.
        """
        with self._safety_lock:
            if self._kill is not None:
                return
            self._kill, self._kill_heard = command, heard_at
        reason = f"killed by {command.issued_by or 'an operator'}" + (
            f": {command.reason}" if command.reason else ""
        )
        stopped_now = self.stop(
            TaskKilled(self.task_id, command),
            guard_kind=GuardKind.KILL_REQUESTED,
            decided_by=command.issued_by or "operator",
            reason=reason,
            action=command.command_id,
        )
        if not stopped_now:
            self.acknowledge_kill()

    def acknowledge_kill(self) -> None:
        """Record ``kill_acknowledged`` and tell the operator, once, if the task was killed."""
        with self._safety_lock:
            command = self._kill
            if command is None or self._kill_acked:
                return
            self._kill_acked = True
        # The kill switch's thread may still be recording the stop (guard event, then
        # terminal state): the acknowledgement follows them.
        self.stop_recorded.wait(5.0)
        latency_ms = (time.monotonic() - self._kill_heard) * 1000.0
        self.guard(
            GuardKind.KILL_ACKNOWLEDGED,
            action=command.command_id,
            decision="stop",
            decided_by=command.issued_by or "operator",
            observed_value=latency_ms,
            detail=f"stopped {latency_ms:.1f} ms after the kill was heard",
        )
        self.safety.kill_switch.acknowledge(self.task_id, command, latency_ms)

    def expire(self) -> None:
        """The watchdog's call at the wall-clock deadline: stop the task if still running."""
        limit = self.limits.max_wall_clock_s if self.limits is not None else None
        if self.stopped is not None or self.state in TERMINAL_STATES or limit is None:
            return
        elapsed = time.monotonic() - self._started_at
        self._breach(LimitName.WALL_CLOCK, limit, elapsed)

    # -- confirmations -----------------------------------------------------------------------

    def _digests(self, args: Any) -> tuple[str, str]:
        """(hash that binds a confirmation, hash that may be recorded) of ``args``.

        Both are SHA-256 of the canonical JSON unless the arguments hold something the
        scrubber redacts: then the recorded one is keyed (HMAC), so that a short secret
        such as a phone number cannot be found by hashing every candidate.
        """
        text = to_json({} if args is None else args, sort_keys=True)
        binding = sha256(text.encode()).hexdigest()
        _, found = self.safety.scrubber.scrub(args)
        return binding, self.safety.scrubber.keyed_hash(text) if found else binding

    def _ask(
        self, tool: str, args: Any, policy: ConfirmationPolicy | None, reason: str | None
    ) -> tuple[ConfirmationRequest, ConfirmationPolicy, str]:
        self.check_open()
        chosen = policy or self.safety.confirmation_policy
        if chosen is None:
            raise ValueError(
                f"task.confirm({tool!r}, ...) needs a policy: pass policy=... or give the "
                "Recorder a confirmation_policy."
            )
        binding, recorded = self._digests(args)
        self.guard(
            GuardKind.CONFIRMATION_REQUESTED,
            action=tool,
            decided_by=chosen.name,
            detail=reason,
            original_hash=recorded,
        )
        return (
            ConfirmationRequest(self.task_id, self.task_type, tool, args, binding, reason),
            chosen,
            recorded,
        )

    def _decided(self, request: ConfirmationRequest, decision: Decision, recorded: str) -> Decision:
        if decision.granted:
            self.grants.grant(request.tool, request.args_hash)
        self.guard(
            GuardKind.CONFIRMATION_GRANTED if decision.granted else GuardKind.CONFIRMATION_DENIED,
            action=request.tool,
            decision="allow" if decision.granted else "deny",
            decided_by=decision.decided_by,
            detail=decision.reason,
            original_hash=recorded,
        )
        return decision

    def confirm(
        self,
        tool: str,
        args: Any,
        *,
        policy: ConfirmationPolicy | None = None,
        reason: str | None = None,
    ) -> Decision:
        """Ask ``policy`` to confirm one call of ``tool`` with exactly ``args``.

        Records ``confirmation_requested`` and then ``confirmation_granted`` or
        ``confirmation_denied`` with who or what decided. A grant unlocks one
        irreversible span of this tool with these arguments (by their hash), nothing
        else. Blocks while the policy decides; an async policy is run to completion
        here when no event loop is running in this thread (else use :meth:`aconfirm`).

        Raises:
            ValueError: no policy given and the recorder has none.
            TypeError: an async policy was used from inside a running event loop.
            TaskStopped: the task is stopped.
        """
        request, chosen, recorded = self._ask(tool, args, policy, reason)
        result = chosen.decide(request)
        if inspect.isawaitable(result):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                result = asyncio.run(_await(result))
            else:
                close = getattr(result, "close", None)
                if callable(close):
                    close()
                raise TypeError(
                    f"Confirmation policy {chosen.name!r} is async; inside a running event "
                    "loop use `await task.aconfirm(...)`."
                )
        return self._decided(request, as_decision(result, chosen), recorded)

    async def aconfirm(
        self,
        tool: str,
        args: Any,
        *,
        policy: ConfirmationPolicy | None = None,
        reason: str | None = None,
    ) -> Decision:
        """:meth:`confirm` for async code: awaits an async policy (a sync one is called)."""
        request, chosen, recorded = self._ask(tool, args, policy, reason)
        result = chosen.decide(request)
        if inspect.isawaitable(result):
            result = await result
        return self._decided(request, as_decision(result, chosen), recorded)

    def require_confirmation(self, tool: str, args: Any) -> None:
        """Use up a grant for this irreversible call, or record the refusal and raise.

        Raises:
            ConfirmationDenied: no granted confirmation matches ``tool`` and ``args``.
        """
        binding, recorded = self._digests(args)
        if self.grants.use(tool, binding):
            return
        error = ConfirmationDenied(self.task_id, tool, binding)
        self.guard(
            GuardKind.CONFIRMATION_DENIED,
            action=tool,
            decision="deny",
            decided_by="checkpoint",
            detail="irreversible tool without a granted confirmation for these arguments",
            original_hash=recorded,
        )
        raise error

    # -- escalation --------------------------------------------------------------------------

    def escalate(self, reason: str, *, to: str | None = None) -> None:
        """Hand the task to a human: record ``escalated`` and call the escalation handler.

        The handler (``Recorder(on_escalate=...)``) is called with the task, the reason
        and ``to``; its errors are logged, never raised. The task is not stopped.

        Raises:
            TaskStopped: the task is stopped.
        """
        self.check_open()
        target = to or self.escalation_path
        self._transition(TaskState.ESCALATED, reason=reason)
        self.guard(
            GuardKind.ESCALATION,
            action=target,
            decision="escalate",
            decided_by="agent",
            detail=reason,
        )
        handler = self.safety.on_escalate
        if handler is not None:
            try:
                handler(cast("Task", self), reason, target)
            except Exception:
                log.exception("agenttrail: escalation handler of task %s failed", self.task_id)

    # -- content entering the loop -----------------------------------------------------------

    def observe(self, text: str, *, source: str) -> list[InjectionFlag]:
        """Scan content that enters the loop (a page, a document) for prompt injection.

        Flags are recorded as one ``injection_suspected`` guard event naming the rules
        and the source; then the task's policy applies (record, block, escalate).

        Raises:
            InjectionBlocked: flagged, and the policy is ``block``.
            TaskStopped: the task is stopped.
        """
        self.check_open()
        return self.screen(text, source)

    def screen(self, text: str, source: str) -> list[InjectionFlag]:
        """:meth:`observe` without the stop check."""
        flags = self.safety.injection_detector.scan(text)
        if flags:
            self._flagged(flags, source)
        return flags

    def _flagged(self, flags: list[InjectionFlag], source: str) -> None:
        """Record flags and apply the task's policy (raises under ``block``)."""
        rules = ", ".join(sorted({f.rule for f in flags}))
        policy = self.injection_policy
        self.guard(
            GuardKind.INJECTION_SUSPECTED,
            action=source,
            decision={"record": "allow", "block": "deny", "escalate": "escalate"}[policy.value],
            decided_by=type(self.safety.injection_detector).__name__,
            detail=f"rules: {rules}",
        )
        if policy is InjectionPolicy.BLOCK:
            raise InjectionBlocked(self.task_id, source, flags)
        if policy is InjectionPolicy.ESCALATE:
            self.escalate(f"suspected prompt injection from {source} ({rules})")

    def redact(self, value: Any, *, where: str, tool: str | None = None) -> tuple[Any, list[str]]:
        """Scrub ``value`` (arguments, results, payloads); record what was redacted.

        Returns the redacted copy (or ``value`` untouched) and the JSON paths redacted.
        A ``redaction_applied`` guard event names the kinds and paths, never a value.
        """
        out, found = self.safety.scrubber.scrub(value, tool)
        if not found:
            return value, []
        self._redacted(found, f"{where}:{tool}" if tool else where)
        return out, [r.path for r in found]

    def _redacted(self, found: list[Redaction], action: str) -> None:
        self.guard(
            GuardKind.REDACTION_APPLIED,
            action=action,
            decision="redact",
            decided_by="scrubber",
            detail="; ".join(f"{r.kind} at {r.path}" for r in found),
        )

    def redact_content(self, value: Any, where: str) -> tuple[Any, list[str]]:
        """:meth:`redact` for message content, when the recorder redacts content."""
        if not self.safety.redact_content or value is None:
            return value, []
        return self.redact(value, where=where)

    def redact_error(self, detail: str | None) -> str | None:
        """An error message as recorded: scrubbed (exception texts often quote inputs).

        No guard event: the redaction shows as placeholders in the message itself.
        """
        if not detail:
            return detail
        out, _ = self.safety.scrubber.scrub_text(detail)
        return out

    def inspect_result(self, tool: str, text: str) -> str:
        """A tool result entering the loop: screened for injection, then scrubbed.

        Runs on the agent's thread for every ``span.result`` (a ``block`` policy must
        refuse the result before the call returns), so both scans take their fast path
        for text that holds nothing: see :mod:`._injection` and :mod:`._detectors`.
        """
        safety = self.safety
        flags = safety.injection_detector.scan(text)
        if flags:
            self._flagged(flags, f"tool:{tool}")
        out, found = safety.scrubber.scrub(text, tool)
        if not found:
            return text
        self._redacted(found, f"result:{tool}")
        return str(out)

    def inspect_ascii_result(self, tool: str, text: str) -> str:
        """:meth:`inspect_result` of an ASCII ``text``: the same flags, redactions and
        output, with one ``lower()`` shared by both scans and each one's first search
        (any word some injection rule needs; anything a built-in detector could find)
        made here. The common result holds neither and costs just those two searches.
        Other detectors or scrubbers take :meth:`inspect_result` itself.
        """
        safety = self.safety
        detector = safety.injection_detector
        scrubber = safety.scrubber
        if (
            type(detector) is not RuleDetector
            or type(scrubber) is not Scrubber
            or scrubber.detectors is not BUILTIN_DETECTORS
        ):
            return self.inspect_result(tool, text)
        lowered = text.lower()
        flags = detector.scan_ascii(text, lowered)
        if flags:
            self._flagged(flags, f"tool:{tool}")
        if not may_hold_builtin_lowered(lowered):
            # No built-in detector finds anything here, nor a tool's subset of them.
            return text
        out, found = scrubber.scrub(text, tool)
        if not found:
            return text
        self._redacted(found, f"result:{tool}")
        return str(out)

    def price(
        self, model: str, input_tokens: int, output_tokens: int, cached_tokens: int
    ) -> float | None:
        """The shipped (or user's) price of a call that reported no cost."""
        return self.safety.price(model, input_tokens, output_tokens, cached_tokens)


async def _await(result: Awaitable[PolicyResult]) -> PolicyResult:
    return await result
