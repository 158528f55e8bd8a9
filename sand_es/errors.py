"""One error root, split in two: "you asked for something impossible" and "the world failed".

`Rejected` errors come from the pure deciders: the request cannot be honoured as
asked, retrying it unchanged will not help, and nothing was written. The HTTP layer
maps their three families to 400, 404 and 409.

`InfraError`s come from the shell: etcd unreachable, a conflict that outlived its
retries, an append whose outcome could not be learned. They are worth retrying
later (HTTP 503).
"""

from __future__ import annotations


class SandError(Exception):
    """Root of every error sand-es raises on purpose."""


class Rejected(SandError):
    """The command was refused by the domain rules; nothing was appended."""


class Invalid(Rejected):
    """The command is malformed or out of bounds (HTTP 400)."""


class NotFound(Rejected):
    """The command names something that does not exist (HTTP 404)."""


class Conflicting(Rejected):
    """The command clashes with the current state (HTTP 409)."""


class KeyReused(Conflicting):
    """A command id (an Idempotency-Key) already used for a different request (HTTP 422)."""


class InfraError(SandError):
    """The infrastructure failed; the command may be retried later (HTTP 503)."""


class LogUnavailable(InfraError):
    """etcd could not be reached, or answered with an error."""


class OutcomeUnknown(InfraError):
    """An append was sent but its outcome could not be learned (timeout, lost reply)."""


class ConflictRetriesExhausted(InfraError):
    """Other writers kept moving the log head faster than this command could be decided."""


class LogCorrupt(InfraError):
    """The log holds something that cannot be read back: a gap, or an undecodable event."""


class Conflict(InfraError):
    """The log moved past the position a batch was decided at; decide again.

    `known_commands` lists command ids of the batch that the log already holds
    (a caller retrying a command that went through).
    """

    def __init__(self, message: str, *, known_commands: frozenset[str] = frozenset()) -> None:
        super().__init__(message)
        self.known_commands = known_commands


class ConfigError(SandError):
    """A setting is missing or malformed; the message names the variable."""
