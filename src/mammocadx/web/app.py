"""A local reader's page: upload a mammogram, mark the lesion, see the score and why.

:func:`create_app` wires three parts into a FastAPI application that is a thin
shell over the library:

- :mod:`mammocadx.web.store`: the image store (uploads under a private folder,
  decoded with :func:`mammocadx.io.read_image`, bounded, evicted);
- :mod:`mammocadx.web.runner`: the model runner (a
  :class:`~mammocadx.web.predictor.Predictor`, by default
  :class:`~mammocadx.web.predictor.CADxPredictor` over ``CADx.load(model_dir)``,
  in one worker thread under a timeout and a queue bound);
- :mod:`mammocadx.web.routes`: the routes;

guarded by :mod:`mammocadx.web.guards` (Host and Origin, body size and JSON
depth, response headers). Every
error is JSON ``{"detail": sentence, "error": code}`` (:mod:`mammocadx.web.api_errors`).
"""
from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from mammocadx import __version__
from mammocadx.web.api_errors import install_error_handlers
from mammocadx.web.card import NOTICE
from mammocadx.web.config import WebConfig
from mammocadx.web.guards import BodySizeLimit, HostOriginGuard, SecurityHeaders
from mammocadx.web.predictor import CADxPredictor, Predictor
from mammocadx.web.routes import STATIC_DIR, build_router
from mammocadx.web.runner import ModelRunner
from mammocadx.web.schemas import ErrorResponse
from mammocadx.web.store import ImageStore, make_upload_folder

__all__ = ["WebConfig", "create_app"]


def create_app(model_dir: Path | None = None, predictor: Predictor | None = None,
               config: WebConfig | None = None) -> FastAPI:
    """Build the web application.

    Parameters
    ----------
    model_dir : Path, optional
        A saved model folder, loaded with ``CADx.load`` (ignored when
        ``predictor`` is given).
    predictor : Predictor, optional
        Any object with ``predict``, ``explain`` and ``card`` (see
        :class:`~mammocadx.web.predictor.Predictor`); tests inject fakes.
    config : WebConfig, optional
        Upload cap, timeout and queue limits.

    Returns
    -------
    fastapi.FastAPI
        The app; ``app.state.tmpdir`` is its private upload folder.

    Raises
    ------
    ValueError
        If neither ``model_dir`` nor ``predictor`` is given.
    ModelError
        If ``model_dir`` cannot be loaded (raised by the library).
    """
    if predictor is None:
        if model_dir is None:
            raise ValueError("create_app needs a model_dir or a predictor")
        predictor = CADxPredictor.load(model_dir)
    cfg = config or WebConfig()
    tmpdir = make_upload_folder()
    store = ImageStore(tmpdir, cfg)
    runner = ModelRunner(predictor, cfg)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            runner.shutdown()
            shutil.rmtree(tmpdir, ignore_errors=True)

    app = FastAPI(
        title="mammocadx reader",
        version=__version__,
        description=(
            "Score a breast lesion on a mammogram (benign vs malignant) and see the Grad-CAM of the decision. "
            "Coordinates are image pixels, x from the left, y from the top. " + NOTICE
        ),
        # Swagger UI and ReDoc load their scripts from a CDN; this tool fetches nothing from the internet.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        responses={400: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
                   422: {"model": ErrorResponse}},
    )
    app.state.tmpdir = tmpdir
    app.state.config = cfg
    app.state.predictor = predictor
    app.state.store = store
    app.state.runner = runner
    install_error_handlers(app)
    app.include_router(build_router(store, runner, cfg))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # The last added runs first: headers on every answer, then Host/Origin, then the body caps.
    app.add_middleware(BodySizeLimit, max_bytes=cfg.max_upload_bytes + 1024 * 1024, limit_shown=cfg.max_upload_bytes,
                       max_json_bytes=cfg.max_json_bytes, max_json_depth=cfg.max_json_depth)
    app.add_middleware(HostOriginGuard, hosts=cfg.host_names())
    app.add_middleware(SecurityHeaders)
    return app
