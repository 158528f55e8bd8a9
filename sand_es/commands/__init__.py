"""Commands and their pure deciders."""

from sand_es.commands.decide import decide
from sand_es.commands.types import (
    DEFAULT_POLICY,
    ActivateEndpoint,
    AddEndpoint,
    Command,
    CreateNetwork,
    DeactivateEndpoint,
    DeleteNetwork,
    Policy,
    RemoveEndpoint,
)

__all__ = [
    "DEFAULT_POLICY",
    "ActivateEndpoint",
    "AddEndpoint",
    "Command",
    "CreateNetwork",
    "DeactivateEndpoint",
    "DeleteNetwork",
    "Policy",
    "RemoveEndpoint",
    "decide",
]
