"""Serve the minimal page and the bridge on one origin: `python examples/minimal-page/serve.py`.

Open http://127.0.0.1:8000 and ask "What time is it?". Without OPENAI_API_KEY the offline model
answers; `BRIDGE_*` variables configure the bridge as usual. The page imports the browser SDK
from `/sdk`, which is `clients/js/dist` mounted next to the page.
"""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from bridge import BridgeSettings, create_app
from bridge.models.choose import choose_model

HERE = Path(__file__).resolve().parent
SDK = HERE.parents[1] / "clients" / "js" / "dist"


def make_app() -> FastAPI:
    settings = BridgeSettings()
    model = choose_model(model=settings.model, base_url=None, api=settings.model_api)
    # static_dir serves this folder at /, static_mounts the SDK at /sdk.
    return create_app(settings, model=model, static_dir=HERE, static_mounts={"/sdk": SDK})


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    uvicorn.run(make_app(), host="127.0.0.1", port=port)
