"""The exceptions credcheck raises on purpose; all derive from :class:`CredcheckError`.

Messages name the file, line or prefix at fault and never contain a password or a full hash.
"""

from __future__ import annotations

import enum

__all__ = [
    "ArtifactError",
    "ArtifactNotFoundError",
    "CapacityError",
    "ClosedError",
    "CredcheckError",
    "CryptoError",
    "DependencyError",
    "InputError",
    "ProofError",
    "RemoteError",
    "RemoteErrorCode",
    "ServiceError",
    "StorageError",
    "UsageError",
]


class CredcheckError(Exception):
    """Root of every exception credcheck raises on purpose; never raised directly."""


class UsageError(CredcheckError, ValueError):
    """A command or call that cannot be carried out as given: options that do not go together, a missing target."""


class ServiceError(CredcheckError, RuntimeError):
    """A server runner that could not start or stopped on its own (a crashed gunicorn, a missing server package)."""


class InputError(CredcheckError, ValueError):
    """Leaked-set input that cannot be used: a bad line under ``strict``, a count too large, a wrong scheme."""


class ArtifactError(CredcheckError, ValueError):
    """A filter or store file that is not what it claims: wrong magic, unknown version, truncated, corrupt."""


class StorageError(CredcheckError, OSError):
    """An artefact could not be written or read: a full disk, a missing file, no permission."""

    def __str__(self) -> str:
        # made with an errno (StorageError(errno.ENOENT, message)): the message, without OSError's "[Errno 2] "
        if self.strerror is not None and self.filename is None:
            return str(self.strerror)
        return super().__str__()


class ArtifactNotFoundError(StorageError, FileNotFoundError):
    """A filter or store file that is not there (a :class:`StorageError` and a ``FileNotFoundError``)."""


class CapacityError(CredcheckError, ValueError):
    """A filter asked to hold more than it was designed for (its false-positive rate would drift)."""


class ClosedError(CredcheckError, ValueError):
    """A checker, a filter or an open artefact asked something after it was closed (as a closed file raises
    ValueError)."""


class RemoteErrorCode(enum.Enum):
    """Why a range API could not answer."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_STATUS = "http_status"
    BAD_RESPONSE = "bad_response"


class RemoteError(CredcheckError, OSError):
    """A range API or pair service did not give a usable answer (an ``OSError``, as every failed exchange with
    another machine); ``code`` says why. Never read as "not compromised"."""

    def __init__(self, message: str, code: RemoteErrorCode) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, RemoteErrorCode]]:
        return type(self), (str(self), self.code)


class DependencyError(CredcheckError, ImportError):
    """An optional dependency is missing; the message names the extra (and any system package) to install."""


class CryptoError(CredcheckError, ValueError):
    """A cryptographic value that cannot be used: an invalid or identity element, a scalar out of range."""


class ProofError(CryptoError):
    """A VOPRF proof that does not verify: the evaluation was made with another key, or altered on the way."""
