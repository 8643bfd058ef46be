"""The Warden agent: reports a host's metrics to Warden and runs the actions it sends.

`warden_agent.argv` (templates and digests) has no dependencies; the server imports it.
Everything else needs psutil and never Django.
"""

__version__ = "1.1.0"

# Agent is imported lazily, so `import warden_agent.argv` stays free of psutil.
__all__ = ["Agent", "__version__"]


def __getattr__(name: str) -> object:
    if name == "Agent":
        from warden_agent.agent import Agent

        return Agent
    raise AttributeError(f"module 'warden_agent' has no attribute {name!r}")
