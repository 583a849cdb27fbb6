"""streamproof: conformance and load testing for streaming LLM APIs."""

__version__ = "0.1.0"
