"""The app factory and the router a user can mount into an existing FastAPI app."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from bridge.agent.runtime import SessionRuntime
from bridge.agent.server_tools import ServerTools
from bridge.approvals import ApprovalPolicy, mode_policy
from bridge.errors import CloseCode, ConnectionRefused, ErrorCode
from bridge.limits import wire_limits
from bridge.models.base import Model
from bridge.models.offline import OfflineModel
from bridge.protocol import HelloMessage
from bridge.ratelimit import AddressGate
from bridge.server.auth import AuthHook, TokenAuth, allow_all, as_principal
from bridge.server.connection import Connection, Greeter
from bridge.server.hub import SessionHub
from bridge.server.logs import install_redaction
from bridge.server.settings import BridgeSettings
from bridge.store import SessionStore

__all__ = ["Bridge", "create_app"]

_SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

ModelSource = Model | Callable[[str], Model]


class Bridge:
    """Everything one server needs: settings, the model, server tools, sessions, the router."""

    def __init__(
        self,
        settings: BridgeSettings | None = None,
        *,
        model: ModelSource | None = None,
        server_tools: ServerTools | None = None,
        authenticate: AuthHook | None = None,
        store: SessionStore | None = None,
        approval: ApprovalPolicy | None = None,
    ) -> None:
        self.settings = settings or BridgeSettings()
        self.server_tools = server_tools or ServerTools(self.settings.tool_limits())
        source: ModelSource = model if model is not None else OfflineModel()
        self._model_for: Callable[[str], Model] = (
            (lambda _session_id: source) if isinstance(source, Model) else source
        )
        if authenticate is None:
            token = self.settings.token
            authenticate = TokenAuth(token.get_secret_value()) if token else allow_all
        self._authenticate = authenticate
        session_limits = self.settings.session_limits()
        self._connection_limits = self.settings.connection_limits()
        self.hub = SessionHub(
            limits=session_limits,
            wire_limits=wire_limits(session_limits, self._connection_limits),
            queue_size=self._connection_limits.send_queue_size,
            server_tools=self.server_tools,
            approval=approval or mode_policy(self.settings.approval),
            model_for=self._model_for,
            max_sessions=self.settings.max_sessions,
            store=store,
        )
        limits = self._connection_limits
        self.addresses = AddressGate.from_limits(limits)
        self.router = APIRouter()
        self.router.add_api_websocket_route("/ws/agent/{session_id}", self._endpoint)
        self.router.add_api_route("/healthz", self._health, methods=["GET"])

    async def _health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "sessions": len(self.hub),
            "connected": self.hub.connected,
            "held": self.hub.held,
        }

    async def _endpoint(self, websocket: WebSocket, session_id: str) -> None:
        if not _SESSION_ID.fullmatch(session_id):
            await _refuse(websocket, CloseCode.POLICY, "invalid session id")
            return
        principal = as_principal(await self._authenticate(websocket))
        if principal is None:
            # Browsers cannot read an HTTP status from a failed handshake, but they do see a
            # close code, so the refusal is decided before accept and told after it.
            await _refuse(websocket, CloseCode.UNAUTHORIZED, "unauthorized")
            return
        address = websocket.client.host if websocket.client is not None else ""
        # Counted before accept, so a refused socket never gets a connection's tasks or queues.
        admission = self.addresses.open(address)
        if admission.flood is None:
            retry = f"; retry in {math.ceil(admission.retry_after_s)} s"
            await _refuse(websocket, CloseCode.TOO_MANY, admission.refusal + retry)
            return
        try:
            await websocket.accept()
            connection = Connection(
                websocket,
                session_id,
                self._connection_limits,
                self._greeter(address),
                self.hub.leave,
                principal,
                flood=admission.flood,
            )
            await connection.run()
        finally:
            self.addresses.close(admission)

    def _greeter(self, address: str) -> Greeter:
        """The hub's greeting, metered per address when the hello would start a new session."""

        async def greet(
            connection: Connection, hello: HelloMessage
        ) -> tuple[SessionRuntime, list[BaseModel]]:
            # A hello for a session that exists resumes or takes it over and creates nothing.
            if self.hub.runtime(connection.session_id) is not None:
                return await self.hub.greet(connection, hello)
            if not self.addresses.take_new_session(address):
                raise ConnectionRefused(
                    "too many new sessions from this address; try again in a minute",
                    close_code=CloseCode.TOO_MANY,
                    code=ErrorCode.RATE_LIMITED,
                )
            try:
                return await self.hub.greet(connection, hello)
            except BaseException:
                self.addresses.give_back_session(address)
                raise

        return greet


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    await websocket.accept()
    await websocket.close(code, reason)


def create_app(
    settings: BridgeSettings | None = None,
    *,
    model: ModelSource | None = None,
    server_tools: ServerTools | None = None,
    authenticate: AuthHook | None = None,
    static_dir: Path | None = None,
    static_mounts: Mapping[str, Path] | None = None,
    store: SessionStore | None = None,
    approval: ApprovalPolicy | None = None,
) -> FastAPI:
    """A FastAPI app serving the bridge, and the demo page at `/` when `static_dir` is given.

    `static_mounts` maps URL prefixes to directories (the demo's SDK at `/sdk`, for example).
    """
    # The server starts here, so this is where log lines learn to hide secrets; constructing a
    # Bridge to mount its router elsewhere changes no global logging.
    install_redaction()
    bridge = Bridge(
        settings,
        model=model,
        server_tools=server_tools,
        authenticate=authenticate,
        store=store,
        approval=approval,
    )
    app = FastAPI(title="agent-bridge")
    app.state.bridge = bridge
    app.include_router(bridge.router)
    # Mounted before `/`, which would otherwise answer every path.
    for prefix, directory in (static_mounts or {}).items():
        app.mount(prefix, StaticFiles(directory=directory), name=f"static:{prefix}")
    if static_dir is not None:
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="demo")
    return app
