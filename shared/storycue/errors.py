"""Error types shared by every layer.

Each carries a stable machine-readable ``code`` so that the CLI and the services can map
it to an exit status or an HTTP error without parsing messages.
"""

from __future__ import annotations


class StorycueError(Exception):
    """Base class of every error storycue raises on purpose."""

    code = "storycue_error"

    def __init__(self, message: str, *, detail: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}


class ConfigurationError(StorycueError):
    code = "configuration_error"


class InvalidInputError(StorycueError):
    """The caller gave something we cannot work with (empty text, bad arguments)."""

    code = "invalid_input"


class AudioDecodeError(InvalidInputError):
    """A file is not decodable audio, or holds no usable signal."""

    code = "audio_decode_error"


class TextDecodeError(InvalidInputError):
    code = "text_decode_error"


class ModelNotFoundError(StorycueError):
    code = "model_not_found"


class ModelMismatchError(StorycueError):
    """Vectors or weights of one model identity were about to meet another's."""

    code = "model_mismatch"


class DatasetNotFoundError(StorycueError):
    code = "dataset_not_found"


class NotFoundError(StorycueError):
    code = "not_found"


class DatasetFormatError(StorycueError):
    """A dataset file exists but does not have the expected format (columns, fields)."""

    code = "dataset_format_error"


class AuthenticationError(StorycueError):
    """No API key, or one that is unknown or revoked."""

    code = "unauthenticated"


class SourceNotAllowedError(InvalidInputError):
    """A well-formed track source that this deployment's policy refuses to read (no allowed
    root, a path outside them, a private address): 403, not a malformed request."""

    code = "source_not_allowed"


class PayloadTooLargeError(InvalidInputError):
    """A request body or upload over the configured size limit."""

    code = "payload_too_large"


class ConflictError(StorycueError):
    """The request conflicts with the current state of a resource."""

    code = "conflict"


class TooManyJobsError(StorycueError):
    """A tenant already has as many unfinished jobs as its limit allows; retry later."""

    code = "too_many_jobs"

    def __init__(
        self, message: str, *, retry_after_s: int = 30, detail: dict[str, object] | None = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.retry_after_s = retry_after_s


class ServiceUnavailableError(StorycueError):
    """A dependency (database, vector store, broker) is down; retry later."""

    code = "service_unavailable"
