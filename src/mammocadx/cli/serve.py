"""``mammocadx serve``: the local reader's web page."""
from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` sub-command."""
    p = subparsers.add_parser(
        "serve",
        help="run the reader's web page for a saved model (localhost only by default)",
        description=(
            "Serve a local web page where a reader opens a mammogram (DICOM, PNG, PGM, JPEG, TIFF), marks the "
            "lesion and sees the malignancy score at the model's operating point, the pseudocolour ROI, the "
            "Grad-CAM of the decision and the model card; a button saves a JSON report of the case. "
            "The JSON API is described at /openapi.json. Research use only, not a medical device."
        ),
        epilog="Example: mammocadx serve runs/model --port 8000, then open http://127.0.0.1:8000/",
    )
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="a saved model folder (from 'mammocadx train')")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; other addresses expose "
                        "the page to the network without authentication)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name the page may be opened under besides localhost/127.0.0.1/[::1] (repeatable; "
                        "requests naming any other host are refused, against DNS rebinding)")
    p.add_argument("--max-upload-mb", type=float, default=64.0, help="largest accepted upload in MiB (default 64)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds a prediction may take, queueing included, before it is abandoned (default 60)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    """Load the model, build the app and run it under uvicorn until interrupted."""
    import uvicorn

    from mammocadx.web.app import WebConfig, create_app

    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        log.warning("serving on %s: the page is reachable from the network and has no authentication", args.host)
    named = [] if args.host in {"0.0.0.0", "::", ""} else [args.host]  # a wildcard address names no host
    config = WebConfig(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), timeout_s=args.timeout,
                       allowed_hosts=tuple(named + list(args.allow_host)))
    app = create_app(model_dir=args.model_dir, config=config)
    warm_up = getattr(app.state.predictor, "warm_up", None)
    if warm_up is not None:
        log.info("loading the network (first prediction) ...")
        warm_up()
    log.info("mammocadx reader on http://%s:%d/ (Ctrl+C to stop)", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
