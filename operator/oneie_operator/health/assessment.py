"""From probe outcomes to a health state: online / degraded / offline (pure functions).

* **offline**: the latest ``failureThreshold`` probes failed (default 1: the latest one);
* **degraded**: the latest probe succeeded, but slower than ``degradedThresholdMilliseconds``,
  or the error rate over the last ``window`` probes is above ``errorRateThreshold``;
* **online**: otherwise. **unknown** until the first probe.
"""

from __future__ import annotations

import collections
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["online", "degraded", "offline", "unknown"]


@dataclass(frozen=True)
class Thresholds:
    interval_seconds: float = 300.0
    timeout_seconds: float = 10.0
    degraded_seconds: float = 2.0
    error_rate: float = 0.2
    window: int = 10
    failure_threshold: int = 1
    credential_check_every: int = 1

    @classmethod
    def from_spec(cls, health_check: Mapping[str, Any] | None) -> Thresholds:
        spec = health_check or {}
        return cls(
            interval_seconds=float(spec.get("intervalSeconds", 300)),
            timeout_seconds=float(spec.get("timeoutSeconds", 10)),
            degraded_seconds=float(spec.get("degradedThresholdMilliseconds", 2000)) / 1000,
            error_rate=float(spec.get("errorRateThreshold", 0.2)),
            window=max(1, int(spec.get("window", 10))),
            credential_check_every=max(1, int(spec.get("credentialCheckEvery", 1))),
        )


@dataclass(frozen=True)
class ProbeOutcome:
    ok: bool
    seconds: float
    at: str  # RFC 3339
    reason: str = ""
    message: str = ""  # sanitised; never credentials
    retry_after: float | None = None
    #: The probe also ran the provider's credential test (and it answered, if ``ok``).
    credentials_checked: bool = False


@dataclass(frozen=True)
class LastProbe:
    """What a connection's last probe found, as an earlier process stored it in ``status.health``."""

    at: float
    """When it ran, seconds since the epoch (``lastProbeTime``)."""
    state: State = "unknown"
    consecutive_failures: int = 0

    @classmethod
    def from_status(cls, health: Mapping[str, Any] | None) -> LastProbe | None:
        """From ``status.health`` (as :meth:`HealthTracker.status` writes it); None without a
        readable ``lastProbeTime``."""
        if not isinstance(health, Mapping):
            return None
        stamp = health.get("lastProbeTime")
        try:
            at = datetime.datetime.fromisoformat(str(stamp)).timestamp() if stamp else None
        except ValueError:
            at = None
        if at is None:
            return None
        state = health.get("status")
        failures = health.get("consecutiveFailures")
        return cls(
            at=at,
            state=state if state in ("online", "degraded", "offline") else "unknown",
            consecutive_failures=failures if isinstance(failures, int) and failures > 0 else 0,
        )


@dataclass
class HealthTracker:
    """The rolling window of one connection's probe outcomes."""

    thresholds: Thresholds
    outcomes: collections.deque[ProbeOutcome] = field(default_factory=collections.deque)
    consecutive_failures: int = 0
    state: State = "unknown"
    last_error: ProbeOutcome | None = None

    def record(self, outcome: ProbeOutcome) -> tuple[State, State]:
        """Add an outcome; return (old state, new state). Only the window is kept (bounded memory)."""
        keep = max(self.thresholds.window, self.thresholds.failure_threshold, 1)
        if self.outcomes.maxlen != keep:
            self.outcomes = collections.deque(self.outcomes, maxlen=keep)
        self.outcomes.append(outcome)
        if not outcome.ok:
            self.last_error = outcome
        self.consecutive_failures = 0 if outcome.ok else self.consecutive_failures + 1
        old, self.state = self.state, self.assess()
        return old, self.state

    @property
    def error_rate(self) -> float:
        recent = list(self.outcomes)[-self.thresholds.window :]
        return sum(1 for o in recent if not o.ok) / len(recent) if recent else 0.0

    def assess(self) -> State:
        if not self.outcomes:
            return "unknown"
        if self.consecutive_failures >= self.thresholds.failure_threshold:
            return "offline"
        latest = self.outcomes[-1]
        if latest.seconds > self.thresholds.degraded_seconds or self.error_rate > self.thresholds.error_rate:
            return "degraded"
        return "online"

    def status(self) -> dict[str, Any]:
        """``status.health`` as the CRD describes it."""
        latest = self.outcomes[-1] if self.outcomes else None
        last_error = self.last_error
        result: dict[str, Any] = {
            "status": self.state,
            "errorRate": round(self.error_rate, 3),
            "consecutiveFailures": self.consecutive_failures,
        }
        if latest is not None:
            result["lastProbeTime"] = latest.at
            result["responseTimeMilliseconds"] = round(latest.seconds * 1000)
        if last_error is not None:
            result["lastError"] = f"{last_error.reason}: {last_error.message}"[:512]
        return result
