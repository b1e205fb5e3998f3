"""The app factory and the router a user can mount into an existing FastAPI app."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import re
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.middleware.cors import CORSMiddleware

from bridge.agent.runtime import SessionRuntime
from bridge.agent.server_tools import ServerTools
from bridge.approvals import ApprovalPolicy, mode_policy
from bridge.errors import CloseCode, ConnectionRefused, ErrorCode
from bridge.limits import wire_limits
from bridge.models.base import Model
from bridge.models.offline import OfflineModel
from bridge.protocol import HelloMessage
from bridge.ratelimit import AddressGate
from bridge.server.auth import AuthHook, Principal, TokenAuth, allow_all, as_principal
from bridge.server.cluster_hub import ClusterHub
from bridge.server.connection import Connection, Greeter
from bridge.server.headers import SecurityHeaders
from bridge.server.hub import SessionHub
from bridge.server.logs import install_redaction
from bridge.server.origins import OriginPolicy
from bridge.server.scaleout import check_redis, cluster_from
from bridge.server.settings import BridgeSettings
from bridge.server.shared_tickets import SharedTickets, UnshareableClaims
from bridge.server.tickets import LocalTickets, TicketBook, Tickets
from bridge.store import SessionStore

__all__ = ["Bridge", "create_app"]

_SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# What a client asking for a ticket while the cluster's Redis is away is told to wait.
_TICKET_STORE_RETRY_S = 2

log = logging.getLogger(__name__)

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
        # Whether clients prove who they are: a token, or the app's own hook. Without either,
        # every client is the anonymous principal and counts are shown to this machine only.
        self.authenticated = authenticate is not None or self.settings.token is not None
        if authenticate is None:
            token = self.settings.token
            authenticate = TokenAuth(token.get_secret_value()) if token else allow_all
        self._authenticate = authenticate
        self.origins = OriginPolicy.build(
            self.settings.allowed_origins, bind_host=self.settings.host
        )
        session_limits = self.settings.session_limits()
        self._connection_limits = self.settings.connection_limits()
        self.cluster = cluster_from(self.settings) if store is None else None
        if self.cluster is not None:
            store = self.cluster.store
        access = self.settings.access_limits()
        # In a cluster the ticket and the socket may reach different workers: tickets are
        # kept where every worker finds them.
        self.tickets: Tickets
        if self.cluster is not None:
            self.tickets = SharedTickets(
                self.cluster.store,
                ttl_s=access.ticket_ttl_s,
                per_principal=access.tickets_per_principal,
            )
        else:
            self.tickets = LocalTickets(
                TicketBook(
                    ttl_s=access.ticket_ttl_s,
                    max_tickets=access.max_tickets,
                    per_principal=access.tickets_per_principal,
                )
            )
        hub: dict[str, Any] = {
            "limits": session_limits,
            "wire_limits": wire_limits(session_limits, self._connection_limits),
            "queue_size": self._connection_limits.send_queue_size,
            "server_tools": self.server_tools,
            "approval": approval or mode_policy(self.settings.approval),
            "model_for": self._model_for,
            "max_sessions": self.settings.max_sessions,
            "store": store,
        }
        self.hub: SessionHub = (
            SessionHub(**hub)
            if self.cluster is None
            else ClusterHub(
                cluster=self.cluster,
                session_copies_bytes=self.settings.session_copies_bytes,
                **hub,
            )
        )
        limits = self._connection_limits
        self.addresses = AddressGate.from_limits(limits)
        self.router = APIRouter()
        self.router.add_api_websocket_route("/ws/agent", self._new_session_endpoint)
        self.router.add_api_websocket_route("/ws/agent/{session_id}", self._endpoint)
        self.router.add_api_route("/healthz", self._health, methods=["GET"])
        self.router.add_api_route("/stats", self._stats, methods=["GET"])
        self.router.add_api_route("/ws-ticket", self._ticket, methods=["POST"])

    async def _health(self) -> JSONResponse:
        # A liveness probe anyone may call (load balancers do): it tells nothing else, but
        # whether the cluster's Redis answers (without it no new client can be served here).
        if self.cluster is None:
            return JSONResponse({"status": "ok"})
        if await self.cluster.store.healthy():
            return JSONResponse({"status": "ok", "redis": "up"})
        return JSONResponse({"status": "degraded", "redis": "down"}, status_code=503)

    async def aclose(self) -> None:
        """Server shutdown: sessions end, or move to other workers when there is a cluster."""
        await self.hub.close()
        if self.cluster is not None:
            await self.cluster.store.close()

    async def _stats(self, request: Request) -> JSONResponse:
        """Session counts, for a client the auth hook accepts (or this machine, without auth)."""
        principal = as_principal(await self._authenticate(request))
        client = request.client.host if request.client is not None else ""
        allowed = principal is not None if self.authenticated else _is_loopback_ip(client)
        if not allowed:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        counts = {"sessions": len(self.hub), "connected": self.hub.connected, "held": self.hub.held}
        return JSONResponse({"status": "ok", **counts}, headers={"cache-control": "no-store"})

    async def _ticket(self, request: Request) -> JSONResponse:
        """A single-use, short-lived ticket for `?ticket=`, for whoever the hook says asks."""
        no_store = {"cache-control": "no-store"}
        # Browsers send Origin with every POST: a page elsewhere cannot even have one issued
        # with the user's cookies (it could not read it, but it would fill the book).
        if not self.origins.allows(request.headers.get("origin"), request.headers.get("host")):
            return JSONResponse({"error": "origin not allowed"}, status_code=403, headers=no_store)
        principal = as_principal(await self._authenticate(request))
        if principal is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401, headers=no_store)
        try:
            ticket = await self.tickets.issue(principal)
        except ConnectionError:
            log.warning("a ticket was refused: the ticket store cannot be reached")
            headers = {**no_store, "retry-after": str(_TICKET_STORE_RETRY_S)}
            down = "tickets cannot be issued now: the ticket store cannot be reached"
            return JSONResponse({"error": down}, status_code=503, headers=headers)
        except UnshareableClaims as exc:
            # The auth hook's doing, not the client's: the operator reads why.
            log.error("a ticket was refused: %s", exc)
            refused = "no ticket can be issued for this principal (see the server log)"
            return JSONResponse({"error": refused}, status_code=500, headers=no_store)
        if ticket is None:
            headers = {**no_store, "retry-after": str(math.ceil(self.tickets.ttl_s))}
            return JSONResponse({"error": "too many tickets"}, status_code=503, headers=headers)
        body = {"ticket": ticket, "expires_in": self.tickets.ttl_s}
        return JSONResponse(body, headers=no_store)

    async def _new_session_endpoint(self, websocket: WebSocket) -> None:
        # A server-made id: unguessable, so the id alone names the session to nobody else.
        await self._endpoint(websocket, f"s-{secrets.token_urlsafe(24)}")

    async def _principal(self, websocket: WebSocket) -> Principal | None:
        """Who the client is: from its ticket when it brings one (only then), else the hook."""
        ticket = websocket.query_params.get("ticket")
        if ticket is None:
            return as_principal(await self._authenticate(websocket))
        try:
            return await self.tickets.redeem(ticket)
        except ConnectionError:
            # Fails closed, and says "later" rather than "unauthorized": the ticket may be good.
            raise ConnectionRefused(
                "the ticket store cannot be reached; try again later", close_code=CloseCode.BUSY
            ) from None

    async def _endpoint(self, websocket: WebSocket, session_id: str) -> None:
        if not _SESSION_ID.fullmatch(session_id):
            await _refuse(websocket, CloseCode.POLICY, "invalid session id")
            return
        address = websocket.client.host if websocket.client is not None else ""
        origin = websocket.headers.get("origin")
        if not self.origins.allows(origin, websocket.headers.get("host")):
            # Per address in the log limiter: a page cycling through origins is one source.
            log.warning(
                "refused a WebSocket from origin %r (not in BRIDGE_ALLOWED_ORIGINS)",
                (origin or "")[:100],
                extra={"conn": ("origin", address)},
            )
            await _refuse(websocket, CloseCode.FORBIDDEN, "origin not allowed")
            return
        try:
            principal = await self._principal(websocket)
        except ConnectionRefused as refused:
            log.warning(
                "refused a WebSocket: %s", refused.message, extra={"conn": ("tickets", address)}
            )
            await _refuse(websocket, refused.close_code, refused.message)
            return
        if principal is None:
            # Browsers cannot read an HTTP status from a failed handshake, but they do see a
            # close code, so the refusal is decided before accept and told after it.
            await _refuse(websocket, CloseCode.UNAUTHORIZED, "unauthorized")
            return
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


def _is_loopback_ip(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


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
    install_redaction(log_frames=(settings or BridgeSettings()).log_frames)
    bridge = Bridge(
        settings,
        model=model,
        server_tools=server_tools,
        authenticate=authenticate,
        store=store,
        approval=approval,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await check_redis(bridge.settings)
        yield
        await bridge.aclose()

    app = FastAPI(title="agent-bridge", lifespan=lifespan)
    app.state.bridge = bridge
    app.include_router(bridge.router)
    # The origins allowed to connect may also load the SDK and ask for a ticket (with cookies
    # or a bearer header); any other page gets no CORS headers and its browser keeps the
    # answer from it. WebSocket handshakes pass through untouched: the origin check is theirs.
    app.add_middleware(
        CORSMiddleware,
        **bridge.origins.cors_options(),
        allow_credentials=True,
        allow_methods=["GET", "HEAD", "POST"],
        allow_headers=["authorization", "content-type"],
        max_age=600,
    )
    # Mounted before `/`, which would otherwise answer every path.
    for prefix, directory in (static_mounts or {}).items():
        static = SecurityHeaders(StaticFiles(directory=directory))
        app.mount(prefix, static, name=f"static:{prefix}")
    if static_dir is not None:
        demo = SecurityHeaders(StaticFiles(directory=static_dir, html=True))
        app.mount("/", demo, name="demo")
    return app
