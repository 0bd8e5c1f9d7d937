"""How long to wait before a retry: one exponential backoff for every retrying loop (the notifier's
PagerDuty sends, the kube bridge's watches and enforcement)."""

from __future__ import annotations


def backoff_s(attempt: int, *, base_s: float = 0.5, cap_s: float = 30.0, jitter: float = 0.0,
              retry_after_s: float | None = None) -> float:
    """Wait before retry ``attempt`` (1-based): exponential from ``base_s`` up to ``cap_s``, times
    (1 + jitter) with ``jitter`` in [0, 1) supplied by the caller; a server's Retry-After wins when
    longer (at most 300 s)."""
    wait = min(cap_s, base_s * 2.0 ** max(0, attempt - 1)) * (1.0 + jitter)
    if retry_after_s is not None and retry_after_s > wait:
        wait = min(retry_after_s, 300.0)
    return wait
