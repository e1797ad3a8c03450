"""Fast, resumable asyncio client for the TikTok Research API's reposted-videos endpoint."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .auth import Credentials
    from .client import ClientStats, RepostClient, make_limiter
    from .diff import DiffError, VideoChange, diff_rounds
    from .engine import NameSkipped, PageEvent, UserDone, WalkEvent, WalkGuard, WalkState
    from .errors import (
        APIError,
        AuthError,
        CertificateError,
        ClientClosedError,
        ConnectError,
        ExportError,
        HarvestStopped,
        InvalidCursorError,
        InvalidFieldsError,
        ProtocolError,
        QuotaExhaustedError,
        RateLimitError,
        RequestTimeoutError,
        ServerError,
        StopReason,
        StoreError,
        TikTokError,
        TokenExpiredError,
        TransportError,
        UserNotFoundError,
        UserUnavailableError,
        WalkStopped,
    )
    from .harvester import Harvester, HarvestProgress, UserOutcome, harvest
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
    "NameSkipped": "engine",
    "PageEvent": "engine",
    "UserDone": "engine",
    "WalkEvent": "engine",
    "WalkGuard": "engine",
    "WalkState": "engine",
    "HarvestProgress": "harvester",
    "Harvester": "harvester",
    "UserOutcome": "harvester",
    "harvest": "harvester",
    "Credentials": "auth",
    "ClientStats": "client",
    "RepostClient": "client",
    "make_limiter": "client",
    "APIError": "errors",
    "AuthError": "errors",
    "CertificateError": "errors",
    "ClientClosedError": "errors",
    "ConnectError": "errors",
    "ExportError": "errors",
    "HarvestStopped": "errors",
    "InvalidCursorError": "errors",
    "InvalidFieldsError": "errors",
    "ProtocolError": "errors",
    "QuotaExhaustedError": "errors",
    "RateLimitError": "errors",
    "RequestTimeoutError": "errors",
    "ServerError": "errors",
    "StopReason": "errors",
    "StoreError": "errors",
    "TikTokError": "errors",
    "TokenExpiredError": "errors",
    "TransportError": "errors",
    "UserNotFoundError": "errors",
    "UserUnavailableError": "errors",
    "WalkStopped": "errors",
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
    "ClientClosedError",
    "ClientStats",
    "ConnectError",
    "Credentials",
    "DailyQuota",
    "DiffError",
    "EffectInfo",
    "ExportError",
    "HarvestProgress",
    "HarvestStopped",
    "Harvester",
    "HashtagInfo",
    "InvalidCursorError",
    "InvalidFieldsError",
    "NameSkipped",
    "PageEvent",
    "ProtocolError",
    "QuotaExhaustedError",
    "QuotaPolicy",
    "RateLimitError",
    "RepostClient",
    "RepostedVideosPage",
    "RequestTimeoutError",
    "RetryPolicy",
    "RoundRecord",
    "RunRecord",
    "ServerError",
    "StickerInfo",
    "StopReason",
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreMismatchError",
    "TikTokError",
    "TokenExpiredError",
    "TransportError",
    "UserDone",
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
    "WalkEvent",
    "WalkGuard",
    "WalkState",
    "WalkStopped",
    "__version__",
    "decode_video",
    "diff_rounds",
    "harvest",
    "make_limiter",
    "normalize_fields",
    "normalize_username",
]
