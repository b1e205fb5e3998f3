"""The browser SDK's wire types are generated from the protocol's JSON Schema; keep them current."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from bridge.wire import protocol_json_schema

JS_DIR = Path(__file__).resolve().parents[2] / "clients" / "js"


def node() -> str:
    found = shutil.which("node")
    assert found is not None, "Node.js 20+ is needed for the browser SDK (see README)"
    return found


def test_protocol_types_match_the_live_schema() -> None:
    generated = subprocess.run(
        [node(), str(JS_DIR / "scripts" / "gen-protocol.mjs")],
        input=json.dumps(protocol_json_schema()),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    committed = (JS_DIR / "src" / "protocol.ts").read_text()
    assert committed == generated, "run `npm run gen:protocol && npm run build` in clients/js"


def test_every_message_type_is_in_the_sdk_types() -> None:
    schema = protocol_json_schema()
    declared = (JS_DIR / "dist" / "protocol.d.ts").read_text()
    for name in schema["$defs"]:
        assert f" {name} " in declared, name
