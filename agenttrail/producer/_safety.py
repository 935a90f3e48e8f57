"""The safety plane of one recorder: what its tasks consult before anything is recorded.

Holds the scrubber (redaction), the injection detector and its default policy, the
price table (spend limits without a reported cost), the kill switch, the wall-clock
watchdog, the confirmation policy and the escalation handler. Built by the Recorder
from its settings; binds the same whether or not the recorder can record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agenttrail.events import PriceTable, PriceTableError, load_price_table
from agenttrail.producer._confirm import ConfirmationPolicy
from agenttrail.producer._control import CommandVerifier
from agenttrail.producer._control_channel import ControlChannel
from agenttrail.producer._injection import DEFAULT_DETECTOR, InjectionDetector, InjectionPolicy
from agenttrail.producer._killswitch import KillSwitch
from agenttrail.producer._scrub import Scrubber
from agenttrail.producer._watchdog import Watchdog

if TYPE_CHECKING:
    from agenttrail.producer._task import Task

log = logging.getLogger("agenttrail.producer")

EscalationHandler = Callable[["Task", str, "str | None"], Any]
"""Called by ``task.escalate(reason, to=...)`` with the task, the reason and ``to``."""


class SafetyPlane:
    """Everything the recorder's tasks need to guard themselves. Thread-safe."""

    def __init__(
        self,
        *,
        producer_id: str,
        scrubber: Scrubber,
        redact_content: bool,
        injection_detector: InjectionDetector | None,
        injection_policy: InjectionPolicy,
        price_file: Path | None,
        control: ControlChannel | None,
        control_public_keys: list[str],
        control_catch_up_s: float,
        confirmation_policy: ConfirmationPolicy | None,
        on_escalate: EscalationHandler | None,
    ):
        self.scrubber = scrubber
        self.redact_content = redact_content
        self.injection_detector = injection_detector or DEFAULT_DETECTOR
        self.injection_policy = injection_policy
        self.confirmation_policy = confirmation_policy
        self.on_escalate = on_escalate
        self.kill_switch = KillSwitch(
            control, CommandVerifier(control_public_keys), producer_id, control_catch_up_s
        )
        self.watchdog = Watchdog()
        self._price_file = price_file
        self._prices: PriceTable | None = None
        self._prices_lock = threading.Lock()
        self._unpriced_warned: set[str] = set()

    @property
    def prices(self) -> PriceTable:
        """The shipped price table with the user's price file over it (loaded once).

        A file that cannot be read is logged and the shipped table used alone; no prices
        at all give an empty table (every model unpriced).
        """
        with self._prices_lock:
            if self._prices is None:
                try:
                    self._prices = load_price_table(self._price_file)
                except (PriceTableError, FileNotFoundError) as exc:
                    log.error("agenttrail: %s; spend is counted from reported costs only", exc)
                    try:
                        self._prices = load_price_table(None)
                    except (PriceTableError, FileNotFoundError):
                        self._prices = PriceTable()
            return self._prices

    def price(
        self, model: str, input_tokens: int, output_tokens: int, cached_tokens: int
    ) -> float | None:
        """The cost of a call the agent reported no cost for, priced today (UTC)."""
        cost = self.prices.cost_usd(
            model, datetime.now(UTC).date(), input_tokens, output_tokens, cached_tokens
        )
        if cost is None and model not in self._unpriced_warned:
            self._unpriced_warned.add(model)
            log.warning(
                "agenttrail: model %r has no price, so its calls without cost_usd do not count "
                "toward max_spend_usd; pass cost_usd to respond() or add it to a price file "
                "(AGENTTRAIL_PRICE_FILE).",
                model,
            )
        return cost

    def close(self) -> None:
        self.kill_switch.close()
        self.watchdog.close()
