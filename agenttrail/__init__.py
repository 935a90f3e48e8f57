"""agenttrail: the flight recorder for AI agents in production.

The package is split so that agents install only what they need:
``agenttrail.events`` (the contract) and ``agenttrail.producer`` (the SDK) depend on
kafka-python, fastavro and pydantic only; the backend lives in the other subpackages.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
