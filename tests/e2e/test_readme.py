"""The README runs as written: every fenced block is run, checked, or skipped for a stated reason.

- ```python blocks run as a reader runs them (`python block.py`, from the checkout), against a
  server this test starts; the README's address 127.0.0.1:8000 is rewritten to that server's,
  as a reader would on a machine where 8000 is taken. A block that starts a server itself
  (`uvicorn.run`) is started, asked for /healthz (and /sdk when it mounts the SDK), and stopped.
- ```sh blocks are commands: `make X` needs target X in the Makefile, `agent-bridge ...` needs
  every flag it uses in `agent-bridge serve --help`; other programs are named in `OTHER_PROGRAMS`
  with the reason they are not ours to check.
- ```js and ```ts blocks are type-checked with the SDK's own TypeScript (`tsc --strict`) against
  its built `dist/` types, the SDK's import specifiers pointing there.
- ```html blocks are pages: the import map must map the SDK's name to a `dist/index.js` (or the
  bridge's `/sdk/index.js`), and the module script is type-checked as JavaScript (`--checkJs`)
  the same way.
- Any other language must be listed in `SKIPPED_LANGUAGES`, with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from bridge import BridgeSettings, create_app
from bridge.testing import RunningServer, serve_app

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "README.md", ROOT / "clients" / "js" / "README.md"]
JS_DIR = ROOT / "clients" / "js"
TSC = JS_DIR / "node_modules" / ".bin" / "tsc"
BOUND_S = 60
README_ADDRESS = "127.0.0.1:8000"

SKIPPED_LANGUAGES = {
    "json": "data shapes shown to the reader, not a program",
    "text": "output shown to the reader, not a program",
    "haproxy": "a proxy configuration; the scale-out tests start haproxy with their own",
}
# Programs a ```sh block may name that are not this project's: installing or running them is
# the reader's business (and needs the network or a GPU).
OTHER_PROGRAMS = {
    "export": "sets the reader's own environment (their API key)",
    "ollama": "a third-party model server",
    "vllm": "a third-party model server",
    "npm": "the package manager; `npm pack` is tested by the SDK's own tests",
}
# What a block that answers must print (by a phrase of the block that identifies it).
EXPECTED_OUTPUT = {
    "client.run(": "get_weather returned",
    "OpenAIServer(": "Weather in Paris?",
}
# Names a JS snippet uses for the app's own objects; declared so `tsc` checks the rest.
JS_PRELUDE = """\
declare const cart: { locked: boolean; items(): Promise<string[]> };
declare const output: HTMLElement;
declare const badge: HTMLElement;
"""
SDK_SPECIFIERS = ("/sdk/index.js", "agent-bridge-client", "@agent-bridge/client")


@dataclass(frozen=True)
class Block:
    readme: Path
    line: int
    language: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.readme.relative_to(ROOT)}:{self.line}"


_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(readme: Path) -> list[Block]:
    text = readme.read_text()
    return [
        Block(readme, text.count("\n", 0, m.start()) + 1, m.group(1).lower(), m.group(2))
        for m in _FENCE.finditer(text)
    ]


ALL = [b for readme in READMES for b in blocks(readme)]
PYTHON = [b for b in ALL if b.language in ("python", "py")]
SHELL = [b for b in ALL if b.language in ("sh", "bash", "shell", "console")]
SCRIPT = [b for b in ALL if b.language in ("js", "javascript", "ts", "typescript")]
PAGES = [b for b in ALL if b.language == "html"]


def test_every_block_is_run_checked_or_skipped_for_a_reason() -> None:
    handled = set(PYTHON) | set(SHELL) | set(SCRIPT) | set(PAGES)
    unknown = [b.id for b in ALL if b not in handled and b.language not in SKIPPED_LANGUAGES]
    assert unknown == [], f"blocks in a language this test neither runs nor skips: {unknown}"
    # The README has code of each kind; an extraction that found nothing would pass vacuously.
    assert PYTHON and SHELL and SCRIPT


# Python ----------------------------------------------------------------------------------------


@pytest.fixture
async def bridge_server() -> AsyncIterator[RunningServer]:
    """The server the README's client blocks talk to: `agent-bridge serve`'s app, offline."""
    async with serve_app(create_app(BridgeSettings())) as server:
        yield server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _reader_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BRIDGE_"))}
    # A reader embedding a real provider has a key; nothing is sent with it here.
    return {**env, "OPENAI_API_KEY": "sk-readme-test", "PYTHONUNBUFFERED": "1"}


async def _run_to_the_end(path: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        cwd=ROOT,
        env=_reader_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(BOUND_S):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    return out.decode()


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=BOUND_S) as response:  # loopback only
        return int(response.status), response.read().decode()


async def _run_a_server(path: Path, port: int, mounts_sdk: bool) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        cwd=ROOT,
        env=_reader_env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(BOUND_S):
            while not any("Uvicorn running on" in line for line in seen):
                raw = await process.stderr.readline()
                assert raw, f"the block's server exited: {''.join(seen)}"
                seen.append(raw.decode())
            base = f"http://127.0.0.1:{port}"
            assert (await asyncio.to_thread(_get, base + "/healthz"))[0] == 200
            if mounts_sdk:
                status, body = await asyncio.to_thread(_get, base + "/sdk/index.js")
                assert status == 200 and "AgentBridge" in body
    finally:
        if process.returncode is None:
            process.terminate()
        async with asyncio.timeout(BOUND_S):
            await process.wait()


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
async def test_python_block_runs(
    block: Block, bridge_server: RunningServer, tmp_path: Path
) -> None:
    port = bridge_server.port
    starts_a_server = "uvicorn.run(" in block.text
    if starts_a_server:
        # Its own server on a port of its own: the test's server keeps the one it has.
        port = _free_port()
    text = block.text.replace(README_ADDRESS, f"127.0.0.1:{port}")
    text = re.sub(r"\bport=8000\b", f"port={port}", text)
    path = tmp_path / f"readme_line_{block.line}.py"
    path.write_text(text)
    if starts_a_server:
        await _run_a_server(path, port, mounts_sdk='"/sdk"' in text)
        return
    out = await _run_to_the_end(path)
    for phrase, printed in EXPECTED_OUTPUT.items():
        if phrase in block.text:
            assert printed in out, out


# Shell -----------------------------------------------------------------------------------------


def _commands(block: Block) -> list[list[str]]:
    joined = block.text.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        # Comments and continuation lines of a comment (indented under a `#`) are prose.
        code = line.split(" #", 1)[0].strip()
        if code and not code.startswith("#"):
            found.append(shlex.split(code.replace("<", "").replace(">", "")))
    return found


@cache
def _makefile_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.MULTILINE))


@cache
def _serve_help() -> str:
    cli = Path(sys.executable).with_name("agent-bridge")
    done = subprocess.run(
        [str(cli), "serve", "--help"], capture_output=True, text=True, timeout=BOUND_S, check=True
    )
    return done.stdout


@pytest.mark.parametrize("block", SHELL, ids=[b.id for b in SHELL])
def test_shell_block_names_commands_that_exist(block: Block) -> None:
    commands = _commands(block)
    assert commands, f"{block.id}: an empty shell block"
    for words in commands:
        program = words[0]
        if program == "make":
            targets = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
            missing = [t for t in targets or ["(default)"] if t not in _makefile_targets()]
            assert missing == [], f"{block.id}: make {missing} is not a Makefile target"
        elif program == "agent-bridge":
            assert words[1:2] == ["serve"], f"{block.id}: {words}"
            flags = [w.split("=", 1)[0] for w in words if w.startswith("--")]
            unknown = [f for f in flags if f not in _serve_help()]
            assert unknown == [], f"{block.id}: agent-bridge serve has no {unknown}"
        else:
            assert program in OTHER_PROGRAMS, f"{block.id}: what is {program!r}? {words}"


# JavaScript ------------------------------------------------------------------------------------


_MODULE_SCRIPT = re.compile(r'<script type="module">(.*?)</script>', re.DOTALL)
_IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.DOTALL)


def _page_script(block: Block) -> str:
    """The page's module script, once its import map is checked to lead to the SDK's entry."""
    found = _IMPORT_MAP.search(block.text)
    assert found, f"{block.id}: a page without an import map cannot import the SDK by name"
    imports = json.loads(found.group(1))["imports"]
    targets = [imports[name] for name in SDK_SPECIFIERS if name in imports]
    assert targets, f"{block.id}: the import map does not name the SDK: {imports}"
    assert all(t.endswith(("/dist/index.js", "/sdk/index.js")) for t in targets), targets
    scripts = _MODULE_SCRIPT.findall(block.text)
    assert len(scripts) == 1, f"{block.id}: expected one module script, found {len(scripts)}"
    return str(scripts[0])


def test_js_blocks_type_check_against_the_sdk(tmp_path: Path) -> None:
    assert TSC.is_file(), "the SDK's dev dependencies are missing: run `make js`"
    index = JS_DIR / "dist" / "index.js"
    assert index.is_file(), "clients/js/dist is not built"
    files: dict[str, Block] = {}
    for block in SCRIPT:
        text = block.text
        for specifier in SDK_SPECIFIERS:
            text = text.replace(f'"{specifier}"', f'"{index}"')
        name = f"readme_line_{block.line}_{block.readme.parent.name}.ts"
        # Each block is a module of its own, as the page that holds it would be.
        (tmp_path / name).write_text(JS_PRELUDE + text + "\nexport {};\n")
        files[name] = block
    for block in PAGES:
        script = _page_script(block)
        for specifier in SDK_SPECIFIERS:
            script = script.replace(f'"{specifier}"', f'"{index}"')
        # Plain JavaScript, as a page runs it: checked with --checkJs, JSDoc casts and all.
        name = f"readme_line_{block.line}_{block.readme.parent.name}.js"
        (tmp_path / name).write_text(script)
        files[name] = block
    done = subprocess.run(
        [
            str(TSC),
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
            "--lib",
            "es2022,dom,dom.iterable",
            "--skipLibCheck",
            "--allowJs",
            "--checkJs",
            *files,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=BOUND_S,
    )
    report = done.stdout + done.stderr
    for name, block in files.items():
        # Errors name the temp file; say which README line they belong to.
        report = report.replace(name, block.id + " (block)")
    assert done.returncode == 0, report
