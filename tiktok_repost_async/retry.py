"""Decide which failures of one page fetch are retried, and how long to wait between attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .errors import (
    CertificateError,
    InvalidCursorError,
    ProtocolError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    TikTokError,
    TokenExpiredError,
    TransportError,
    UnknownListKeyError,
)

__all__ = ["RetryPolicy"]

# Failures that a second identical request can cure. Everything else (bad input, a missing or
# private user, revoked authorisation, a spent daily quota) would fail the same way again and
# only burn quota, so it surfaces at once.
_RETRYABLE: tuple[type[TikTokError], ...] = (
    RateLimitError,
    ServerError,
    TransportError,
    ProtocolError,
    InvalidCursorError,
    TokenExpiredError,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bound the attempts of one page fetch; space them by exponential backoff with full jitter.

    :param max_attempts: attempts of one request at most, the first included (each costs quota).
    :param base_delay: seconds of the first backoff's ceiling, doubled at each retry.
    :param max_delay: the most a backoff's ceiling grows to, in seconds.
    :param max_retry_after: the longest ``Retry-After`` wait honoured, in seconds; a server may ask
        for a long pause, but a worker is never parked longer than this.
    :param rng: the random source of the jitter (seed one for reproducible waits).
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    # A server may ask for a long pause; honour it, but never park a worker for longer than this.
    max_retry_after: float = 900.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError(f"max_attempts must be an int, not {type(self.max_attempts).__name__}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("retry delays must not be negative")

    def is_retryable(self, error: BaseException) -> bool:
        """Tell whether repeating the same request may succeed.

        :param error: the failure of the request.
        """
        if isinstance(error, QuotaExhaustedError | CertificateError | UnknownListKeyError):
            # The daily quota comes back at midnight UTC, not after a backoff: the caller
            # decides. A certificate that does not verify will not on a second try either, nor
            # will an answer whose list sits under a key this version does not know.
            return False
        return isinstance(error, _RETRYABLE)

    def ceiling(self, attempt: int, error: BaseException | None = None) -> float:
        """Return the longest wait after failed attempt number ``attempt``, without jitter.

        :param attempt: the failed attempt's number, from 1.
        :param error: its failure, whose ``Retry-After`` (a 429's) is honoured up to
            ``max_retry_after`` (None: no failure to read).
        """
        if isinstance(error, TokenExpiredError):
            # A fresh token cures it at once; waiting would only slow every worker.
            return 0.0
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_retry_after)
        return min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))

    def delay(self, attempt: int, error: BaseException | None = None) -> float:
        """Return the wait before the attempt that follows failed attempt number ``attempt``.

        :param attempt: the failed attempt's number, from 1.
        :param error: its failure, whose ``Retry-After`` (a 429's) is honoured up to
            ``max_retry_after`` (None: no failure to read).
        """
        ceiling = self.ceiling(attempt, error)
        if isinstance(error, TokenExpiredError | RateLimitError) and (
            isinstance(error, TokenExpiredError) or error.retry_after is not None
        ):
            return ceiling  # no wait, or the server's own wait, exactly
        # Full jitter (AWS architecture blog): spreads the retries of many workers that failed
        # together, so that they do not return to the API in one burst.
        return self.rng.uniform(0.0, ceiling)
