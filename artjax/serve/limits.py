"""Per-key rate limits: token buckets for requests and for units (generated samples or tokens).

A request for text asks for `n * max_tokens` units, one for images `n` units. Each key has two
buckets, one holding up to `requests_per_minute` requests and one holding up to `units_per_minute`
units; both refill continuously at that many per 60 s, so a key may burst a full minute's worth
and then continues at the steady rate.
"""

import math
import threading
import time
from collections.abc import Callable

from artjax.errors import ArtjaxError

_EPS = 1e-9  # float slack: retrying exactly after the returned wait must pass, not wait 1e-16 s more
_PRUNE_AT = 10_000  # buckets kept before full (idle) ones are dropped


def _rate(value, what: str) -> float | None:
  if value is None or value == 0:
    return None
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ArtjaxError(f"{what} must be a number, got {value!r}") from None
  if not value > 0 or math.isinf(value):  # `not >` also catches NaN
    raise ArtjaxError(f"{what} must be positive and finite (0 or None = unlimited), got {value}")
  return value


class RateLimiter:
  """Token-bucket limits per key id; thread-safe.

  Args:
    requests_per_minute: requests a key may make per minute; None or 0 = unlimited. A fraction
      (0.5 = one request every 2 minutes) works: the request bucket always holds at least 1.
    units_per_minute: units (samples or tokens) a key may ask for per minute; None or 0 =
      unlimited. It is also the most one request may ask for.
    clock: seconds from an arbitrary start (time.monotonic); tests inject a fake one.

  Raises ArtjaxError for negative, NaN or infinite figures.

  Memory: a bucket that has refilled completely is indistinguishable from a new one, so once more
  than 10,000 keys are tracked the full buckets are dropped. What remains are keys that were active
  within the last minute or so, bounded by the request rate the server can take.
  """

  def __init__(self, requests_per_minute: float | None, units_per_minute: float | None,
               clock: Callable[[], float] = time.monotonic):
    self.requests_per_minute = _rate(requests_per_minute, "requests per minute")
    self.units_per_minute = _rate(units_per_minute, "units per minute")
    # A request bucket smaller than 1 could never pass a request.
    self._req_cap = None if self.requests_per_minute is None else max(1.0, self.requests_per_minute)
    self._clock = clock
    self._lock = threading.Lock()
    self._buckets: dict[str, list[float]] = {}  # key id -> [requests, units, last refill time]
    self._prune_at = _PRUNE_AT

  @property
  def unlimited(self) -> bool:
    return self.requests_per_minute is None and self.units_per_minute is None

  def acquire(self, key_id: str, units: int) -> float:
    """Tries to take 1 request and `units` units from `key_id`'s buckets.

    Returns 0.0 if the request may go ahead (and then takes them), otherwise the seconds (> 0)
    after which the same request would pass, taking nothing. Returns math.inf if `units` exceeds
    units_per_minute: such a request can never pass. Raises ArtjaxError for negative `units`.
    """
    if units < 0:
      raise ArtjaxError(f"a request cannot ask for a negative number of units ({units})")
    if self.unlimited:
      return 0.0
    if self.units_per_minute is not None and units > self.units_per_minute:
      return math.inf
    with self._lock:
      now = self._clock()
      bucket = self._buckets.get(key_id)
      if bucket is None:
        if len(self._buckets) >= self._prune_at:
          self._prune(now)
        bucket = self._buckets[key_id] = [self._req_cap or 0.0, self.units_per_minute or 0.0, now]
      else:
        self._refill(bucket, now)
      wait = 0.0
      if self.requests_per_minute is not None and bucket[0] < 1 - _EPS:
        wait = (1 - bucket[0]) * 60.0 / self.requests_per_minute
      if self.units_per_minute is not None and bucket[1] < units - _EPS:
        wait = max(wait, (units - bucket[1]) * 60.0 / self.units_per_minute)
      if wait > 0:
        return wait
      bucket[0] = max(0.0, bucket[0] - 1)
      bucket[1] = max(0.0, bucket[1] - units)
      return 0.0

  def _refill(self, bucket: list[float], now: float) -> None:
    elapsed = max(0.0, now - bucket[2])  # a clock that steps back must not drain the bucket
    if self.requests_per_minute is not None:
      bucket[0] = min(self._req_cap, bucket[0] + elapsed * self.requests_per_minute / 60.0)
    if self.units_per_minute is not None:
      bucket[1] = min(self.units_per_minute, bucket[1] + elapsed * self.units_per_minute / 60.0)
    bucket[2] = max(bucket[2], now)

  def _full(self, bucket: list[float]) -> bool:
    return ((self.requests_per_minute is None or bucket[0] >= self._req_cap - _EPS)
            and (self.units_per_minute is None or bucket[1] >= self.units_per_minute - _EPS))

  def _prune(self, now: float) -> None:
    for key_id in list(self._buckets):
      bucket = self._buckets[key_id]
      self._refill(bucket, now)
      if self._full(bucket):
        del self._buckets[key_id]
    # If most keys are still active, wait until the dict doubles before scanning again, so a
    # flood of new keys costs O(1) amortised per request rather than a scan each.
    self._prune_at = max(_PRUNE_AT, 2 * len(self._buckets))

  def __len__(self) -> int:
    """The number of keys currently tracked."""
    return len(self._buckets)

  def limits(self) -> dict:
    """The configuration: {"requests_per_minute": float | None, "units_per_minute": float | None}
    (None = unlimited), plus a note on what a unit is."""
    return {
        "requests_per_minute": self.requests_per_minute,
        "units_per_minute": self.units_per_minute,
        "units": "generated samples (images) or n * max_tokens (text) per request",
    }
