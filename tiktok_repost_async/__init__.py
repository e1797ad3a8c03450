"""Fast, resumable asyncio client for the TikTok Research API's reposted-videos endpoint."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .auth import Credentials
    from .client import ClientStats, RepostClient, make_limiter
    from .diff import DiffError, VideoChange, diff_rounds
    from .errors import (
        APIError,
        AuthError,
        CertificateError,
        InvalidCursorError,
        ProtocolError,
        QuotaExhaustedError,
        RateLimitError,
        ServerError,
        TikTokError,
        TokenExpiredError,
        TransportError,
        UserNotFoundError,
        UserUnavailableError,
    )
    from .harvest import Harvester, HarvestProgress, HarvestStopped, UserOutcome, harvest
    from .models import (
        DEFAULT_FIELDS,
        VIDEO_FIELDS,
        EffectInfo,
        HashtagInfo,
        RepostedVideosPage,
        StickerInfo,
        Video,
        VideoLabel,
        VideoProblem,
        VideoTag,
        decode_video,
    )
    from .protocol import DEFAULT_BASE_URL, normalize_fields, normalize_username
    from .quota import DailyQuota, QuotaPolicy
    from .retry import RetryPolicy
    from .store import (
        RoundRecord,
        RunRecord,
        Store,
        StoreError,
        StoreLockedError,
        StoreMismatchError,
        UserRecord,
        UserState,
    )

__version__ = "0.2.0"

# Submodules load on first use: the pytest plugin that this package registers is imported in
# every test session of everyone who installs it, and `import tiktok_repost_async` should not
# pull in aiohttp there, nor slow a command's --help.
_LAZY: dict[str, str] = {
    "HarvestProgress": "harvest",
    "HarvestStopped": "harvest",
    "Harvester": "harvest",
    "UserOutcome": "harvest",
    "harvest": "harvest",
    "Credentials": "auth",
    "ClientStats": "client",
    "RepostClient": "client",
    "make_limiter": "client",
    "APIError": "errors",
    "AuthError": "errors",
    "CertificateError": "errors",
    "InvalidCursorError": "errors",
    "ProtocolError": "errors",
    "QuotaExhaustedError": "errors",
    "RateLimitError": "errors",
    "ServerError": "errors",
    "TikTokError": "errors",
    "TokenExpiredError": "errors",
    "TransportError": "errors",
    "UserNotFoundError": "errors",
    "UserUnavailableError": "errors",
    "DEFAULT_FIELDS": "models",
    "VIDEO_FIELDS": "models",
    "EffectInfo": "models",
    "HashtagInfo": "models",
    "RepostedVideosPage": "models",
    "StickerInfo": "models",
    "Video": "models",
    "VideoLabel": "models",
    "VideoProblem": "models",
    "VideoTag": "models",
    "decode_video": "models",
    "DEFAULT_BASE_URL": "protocol",
    "normalize_fields": "protocol",
    "normalize_username": "protocol",
    "DailyQuota": "quota",
    "QuotaPolicy": "quota",
    "RetryPolicy": "retry",
    "RoundRecord": "store",
    "RunRecord": "store",
    "DiffError": "diff",
    "VideoChange": "diff",
    "diff_rounds": "diff",
    "Store": "store",
    "StoreError": "store",
    "StoreLockedError": "store",
    "StoreMismatchError": "store",
    "UserRecord": "store",
    "UserState": "store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_FIELDS",
    "VIDEO_FIELDS",
    "APIError",
    "AuthError",
    "CertificateError",
    "ClientStats",
    "Credentials",
    "DailyQuota",
    "DiffError",
    "EffectInfo",
    "HarvestProgress",
    "HarvestStopped",
    "Harvester",
    "HashtagInfo",
    "InvalidCursorError",
    "ProtocolError",
    "QuotaExhaustedError",
    "QuotaPolicy",
    "RateLimitError",
    "RepostClient",
    "RepostedVideosPage",
    "RetryPolicy",
    "RoundRecord",
    "RunRecord",
    "ServerError",
    "StickerInfo",
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreMismatchError",
    "TikTokError",
    "TokenExpiredError",
    "TransportError",
    "UserNotFoundError",
    "UserOutcome",
    "UserRecord",
    "UserState",
    "UserUnavailableError",
    "Video",
    "VideoChange",
    "VideoLabel",
    "VideoProblem",
    "VideoTag",
    "__version__",
    "decode_video",
    "diff_rounds",
    "harvest",
    "make_limiter",
    "normalize_fields",
    "normalize_username",
]
