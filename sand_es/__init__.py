"""sand-es: an event-sourced re-implementation of Scalingo's SAND overlay-network daemon."""

__version__ = "0.1.0"
