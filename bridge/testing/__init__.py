"""Test doubles users want too: a scripted model and a way to run the server on a free port."""

from bridge.testing.scripted import Hang, ScriptedModel, call
from bridge.testing.server import RunningServer, serve_app

__all__ = ["Hang", "RunningServer", "ScriptedModel", "call", "serve_app"]
