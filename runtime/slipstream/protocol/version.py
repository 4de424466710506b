"""The Slipstream version: the package, the runtime server and the SSH bootstrap compare it."""

__version__ = "0.1.0"
