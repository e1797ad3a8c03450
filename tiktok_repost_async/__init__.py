"""Fast, resumable asyncio client for the TikTok Research API's reposted-videos endpoint."""

from __future__ import annotations

from .errors import (
    APIError,
    AuthError,
    ProtocolError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    TikTokError,
    TransportError,
    UserNotFoundError,
    UserUnavailableError,
)

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AuthError",
    "ProtocolError",
    "QuotaExhaustedError",
    "RateLimitError",
    "ServerError",
    "TikTokError",
    "TransportError",
    "UserNotFoundError",
    "UserUnavailableError",
    "__version__",
]
