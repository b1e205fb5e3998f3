"""Test doubles users want too: a scripted model, a way to run the server on a free port, and
an OpenAI-compatible HTTP server driven by a script."""

from bridge.testing.memory import MemoryClient, ResumeDenied, memory_runtime
from bridge.testing.openai_server import OpenAIServer, RecordedRequest
from bridge.testing.openai_wire import Fail, Reply, ScriptedCall, TokenUsage, tool_call
from bridge.testing.proxy import CutRecord, FaultProxy, ProxyConnection, Trigger
from bridge.testing.scripted import Hang, ScriptedModel, call
from bridge.testing.server import RunningServer, serve_app

__all__ = [
    "CutRecord",
    "Fail",
    "FaultProxy",
    "Hang",
    "MemoryClient",
    "OpenAIServer",
    "ProxyConnection",
    "RecordedRequest",
    "Reply",
    "ResumeDenied",
    "RunningServer",
    "ScriptedCall",
    "ScriptedModel",
    "TokenUsage",
    "Trigger",
    "call",
    "memory_runtime",
    "serve_app",
    "tool_call",
]
