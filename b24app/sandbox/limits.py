"""The two REST limits of spec §4, kept on the `Portal` and driven by the sandbox clock.

- Leaky bucket (§4.1): every request adds 1, the level drains by `rate` per second, and a request
  that would lift it above `burst` is refused (503 QUERY_LIMIT_EXCEEDED) without counting. A batch
  is one request. The real limiter also keys on the caller's IP; the sandbox has one caller per
  portal in practice, so it keys on the portal only.
- Execution budget (§4.2): per method, the server time of each call is added to ten buckets per
  window: a bucket opens with the first call after the previous one closed, takes calls for a tenth
  of `op_window_s` and expires `op_window_s` after it opened. With the default window of 600 s these
  are the server's one-minute buckets kept for ten minutes; a shorter window (`--op-window-s 60`)
  scales the buckets with it rather than keeping one-minute buckets that would each outlive most
  of the window. A call is refused (429 OPERATION_TIME_LIMIT) when the sum already *exceeds*
  `op_budget_s`; the call that crosses still completes. The sandbox charges `op_cost_ms` per
  executed call instead of measuring; kept in integer microseconds so that sums compare exactly.
"""

from __future__ import annotations

from b24app.sandbox.state import Portal

__all__ = ["bucket_take", "operating_charge", "operating_state", "operating_blocked"]

BUCKETS_PER_WINDOW = 10


def bucket_take(portal: Portal, *, now: float, rate: float, burst: int) -> bool:
    """Count one request; False (and nothing counted) when the bucket is full."""
    elapsed = max(0.0, now - portal.bucket_at)
    level = max(0.0, portal.bucket_level - elapsed * rate)
    portal.bucket_at = max(now, portal.bucket_at)
    if level + 1 > burst:
        portal.bucket_level = level
        return False
    portal.bucket_level = level + 1
    return True


def _live(portal: Portal, method: str, now: float, window: float) -> list[list[float]]:
    buckets = [b for b in portal.operating.get(method, []) if b[0] + window > now]
    portal.operating[method] = buckets
    return buckets


def operating_state(portal: Portal, method: str, *, now: float, window: float) -> tuple[float, int]:
    """`(operating seconds, operating_reset_at)` for a method right now."""
    buckets = _live(portal, method, now, window)
    used = sum(int(b[1]) for b in buckets) / 1_000_000
    reset_at = int(buckets[0][0] + window) if buckets else int(now + window)
    return used, reset_at


def operating_blocked(
    portal: Portal, method: str, *, now: float, window: float, budget: float
) -> bool:
    """The method has already used more than its budget within the window."""
    buckets = _live(portal, method, now, window)
    return sum(int(b[1]) for b in buckets) > round(budget * 1_000_000)


def operating_charge(
    portal: Portal, method: str, *, now: float, window: float, cost_ms: float
) -> None:
    """Add one call's server time to the method's current bucket (one minute by default)."""
    buckets = _live(portal, method, now, window)
    micro = round(cost_ms * 1000)
    if buckets and buckets[-1][0] + window / BUCKETS_PER_WINDOW > now:
        buckets[-1][1] = int(buckets[-1][1]) + micro
    else:
        buckets.append([now, micro])
