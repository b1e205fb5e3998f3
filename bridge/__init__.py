"""agent-bridge: a server-side LLM agent calling tools that live in the user's frontend."""

from bridge.agent.server_tools import ServerTools
from bridge.protocol import PROTOCOL_VERSION
from bridge.server.app import Bridge, create_app
from bridge.server.settings import BridgeSettings

__all__ = ["PROTOCOL_VERSION", "Bridge", "BridgeSettings", "ServerTools", "create_app"]
__version__ = "0.1.0"
