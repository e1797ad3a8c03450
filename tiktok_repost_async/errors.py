"""The exception tree of tiktok_repost_async."""

from __future__ import annotations

import enum

__all__ = [
    "APIError",
    "AuthError",
    "CertificateError",
    "ClientClosedError",
    "ConnectError",
    "ExportError",
    "HarvestStopped",
    "InvalidCursorError",
    "InvalidFieldsError",
    "InvalidFileUploadError",
    "LedgerError",
    "ProtocolError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "StopReason",
    "StoreError",
    "TikTokError",
    "TokenExpiredError",
    "TransportError",
    "UnknownListKeyError",
    "UserNotFoundError",
    "UserUnavailableError",
    "WalkStopped",
]


class TikTokError(Exception):
    """Root of every error this library raises."""


class APIError(TikTokError):
    """Report an error answer of the Research API."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        log_id: str | None = None,
        username: str | None = None,
    ) -> None:
        """Describe an error answer.

        :param message: the API's message (or ours, for an answer it could not be read from).
        :param status: the HTTP status, when there was an answer.
        :param code: the API's error code (``invalid_params``, ``rate_limit_exceeded``...).
        :param log_id: the answer's ``log_id``, to quote to TikTok's support.
        :param username: the user whose request failed, when it was about one.
        """
        self.message = message
        self.status = status
        self.code = code
        self.log_id = log_id
        self.username = username
        super().__init__(self._render())

    def _render(self) -> str:
        # One line that says who, what and where to look it up; never the request's headers,
        # so no token can leak through str(error).
        parts = [self.message or "(no message)"]
        details = []
        if self.username is not None:
            details.append(f"user={self.username!r}")
        if self.status is not None:
            details.append(f"status={self.status}")
        if self.code:
            details.append(f"code={self.code}")
        if self.log_id:
            details.append(f"log_id={self.log_id}")
        if details:
            parts.append("(" + ", ".join(details) + ")")
        return " ".join(parts)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments do not survive the default pickling of exceptions.
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[APIError], message: str, state: dict[str, object]) -> APIError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, err._render())
    return err


class AuthError(APIError):
    """Report rejected credentials, an unusable token or a missing authorisation."""


class TokenExpiredError(AuthError):
    """Report a missing, expired or unknown access token: fetch a new one and resend."""


class RateLimitError(APIError):
    """Report an HTTP 429; ``retry_after`` holds the server's requested wait, if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        code: str | None = None,
        log_id: str | None = None,
        username: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Describe a 429 answer.

        :param message: the API's message (or ours, for an answer it could not be read from).
        :param status: the HTTP status, when there was an answer.
        :param code: the API's error code (``invalid_params``, ``rate_limit_exceeded``...).
        :param log_id: the answer's ``log_id``, to quote to TikTok's support.
        :param username: the user whose request failed, when it was about one.
        :param retry_after: the seconds its ``Retry-After`` header asked to wait, if any.
        """
        self.retry_after = retry_after
        super().__init__(message, status=status, code=code, log_id=log_id, username=username)


class QuotaExhaustedError(RateLimitError):
    """Report that the daily request quota is spent."""


class UserNotFoundError(APIError):
    """Report a username that does not exist (or was deleted)."""


class UserUnavailableError(APIError):
    """Report a user whose data the API refuses to return (private, under 18, opted out)."""


class InvalidCursorError(APIError):
    """Report the API's transient "Invalid count or cursor" answer: the same request may succeed."""


class InvalidFieldsError(APIError):
    """Report fields the API no longer accepts (400 "Invalid fields: x"): every user fails alike.

    ``fields`` holds the names the API gave, in its order. No retry can cure it, and no other
    user would fare better: a walk of many users ends at once.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        log_id: str | None = None,
        username: str | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        """Describe a refusal of the requested fields.

        :param message: the API's message (or ours, for an answer it could not be read from).
        :param status: the HTTP status, when there was an answer.
        :param code: the API's error code (``invalid_params``, ``rate_limit_exceeded``...).
        :param log_id: the answer's ``log_id``, to quote to TikTok's support.
        :param username: the user whose request failed, when it was about one.
        :param fields: the field names the API refused, in its order.
        """
        self.fields = fields
        super().__init__(message, status=status, code=code, log_id=log_id, username=username)


class InvalidFileUploadError(APIError):
    """Report a file of ids the compliance endpoint refused (400 ``invalid_file_upload``).

    The same file would be refused again: it is never retried.
    """


class ServerError(APIError):
    """Report a server-side failure: a 5xx answer or a gateway page."""


class TransportError(TikTokError):
    """Report a failed connection, a dropped answer or a timeout.

    ``sent`` tells whether the request may have reached the server (and so cost quota): True
    unless the connection was never made (`ConnectError`).
    """

    #: Whether the request may have reached the server.
    sent: bool = True


class ConnectError(TransportError):
    """Report a connection that was never made (refused, unreachable, no DNS): nothing was sent."""

    sent = False


class RequestTimeoutError(TransportError):
    """Report a request that got no complete answer within the client's timeout."""


class CertificateError(TransportError):
    """Report a TLS certificate that does not verify; retrying cannot cure it."""


class ProtocolError(APIError):
    """Report an answer whose body cannot be decoded as the API's JSON."""


class UnknownListKeyError(ProtocolError):
    """Report an answer whose videos sit under a key this version does not know: protocol drift.

    ``key`` is the unknown key of the ``data`` object that holds a list of objects while neither
    documented list key is there. Every user's answer would be misread as "no reposts" alike, so
    no retry can cure it and a walk of many users ends at once.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str,
        status: int | None = None,
        log_id: str | None = None,
        username: str | None = None,
    ) -> None:
        """Describe an answer whose list of videos sits under an unknown key.

        :param message: one line saying what was found.
        :param key: the unknown key of the ``data`` object that holds a list of objects.
        :param status: the HTTP status of the answer.
        :param log_id: the answer's ``log_id``.
        :param username: the user whose answer it was.
        """
        self.key = key
        super().__init__(message, status=status, log_id=log_id, username=username)


class ClientClosedError(TikTokError, RuntimeError):
    """Refuse a request on a client that was closed: a closed client never opens a new session."""


class StoreError(TikTokError):
    """Root of every error the harvest store raises."""


class LedgerError(TikTokError):
    """Report a shared request ledger that cannot be opened, read or written.

    Its message names the ledger with any password masked (`mask_url`), never the password.
    """


class ExportError(TikTokError):
    """Report a video that cannot be written in the chosen format."""


class StopReason(enum.StrEnum):
    """Name why a walk of many users stopped before its input ran out."""

    #: The daily request quota is spent: by our own count, or the API answered its daily 429.
    QUOTA = "quota"
    #: Someone asked the run to stop (``Harvester.stop()``, a signal handler).
    REQUESTED = "requested"
    #: The API stayed unhealthy (5xx, gateway pages, timeouts, no connection) for longer than
    #: the circuit breaker waits (`engine.BREAKER_GIVE_UP`).
    UNHEALTHY = "unhealthy"
    #: In a repeat round of a panel, users who had reposts before kept coming back with none and
    #: no error (the API's silent empty; see `harvester.EMPTY_ALARM_SEEN`): nothing was recorded.
    EMPTY = "empty"
    #: The organisation's shared ledger could not be reached or written: a request that cannot
    #: be booked is not sent.
    LEDGER = "ledger"


class WalkStopped(TikTokError):
    """Signal that a walk of many users stopped early, for the run-wide ``reason`` given.

    ``detail``: one line for the researcher, saying why and what to do (a quota stop says when
    to try again); ``str()`` of the error is that line, or the reason when there is none.
    ``retry_at``: epoch seconds after which running again may succeed, when known.
    """

    def __init__(
        self, reason: StopReason | str, detail: str | None = None, retry_at: float | None = None
    ) -> None:
        """Describe why the walk stopped.

        :param reason: the run-wide `StopReason` (or its value).
        :param detail: one line for the researcher: why, and what to do.
        :param retry_at: epoch seconds after which running again may succeed, when known.
        """
        self.reason = StopReason(reason)
        self.detail = detail
        self.retry_at = retry_at
        super().__init__(detail or self.reason.value)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reason.value, self.detail, self.retry_at))


class HarvestStopped(WalkStopped):
    """Signal that a harvest stopped early and can be resumed by running it again."""
