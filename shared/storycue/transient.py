"""Which failures are worth retrying: a dependency that is down, not bad input."""

from __future__ import annotations

from storycue.errors import StorycueError


class DependencyUnavailableError(StorycueError):
    """A dependency (database, vector store, broker) did not answer; retry later."""

    code = "dependency_unavailable"


def _transient_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ConnectionError, TimeoutError, DependencyUnavailableError]
    try:
        from sqlalchemy import exc as sa

        types += [sa.OperationalError, sa.InterfaceError, sa.DisconnectionError, sa.TimeoutError]
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        pass
    try:
        import psycopg

        types += [psycopg.OperationalError, psycopg.InterfaceError]
    except ImportError:  # pragma: no cover
        pass
    try:
        from redis import exceptions as rex

        types += [rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError]
    except ImportError:  # pragma: no cover
        pass
    try:
        from kombu.exceptions import OperationalError as KombuOperationalError

        types.append(KombuOperationalError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import httpx

        types.append(httpx.TransportError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from qdrant_client.http.exceptions import ResponseHandlingException

        types.append(ResponseHandlingException)
    except ImportError:  # pragma: no cover
        pass
    try:
        from kafka import errors as kerr

        types += [kerr.KafkaConnectionError, kerr.KafkaTimeoutError, kerr.BrokerNotAvailableError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


#: Exception types that mean "a dependency is unavailable right now".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = _transient_types()


def _is_transient_one(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    try:
        from qdrant_client.http.exceptions import UnexpectedResponse
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, UnexpectedResponse) and exc.status_code in (429, 502, 503, 504)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a transient dependency error."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if _is_transient_one(cur):
            return True
        if isinstance(cur, StorycueError):
            return False  # storycue already judged it (bad input, missing schema ...)
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False
