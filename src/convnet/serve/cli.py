"""The ``convnet serve`` subcommand; :func:`add_commands` adds it to the main parser
(src/convnet/cli.py). A thin main(args) over :func:`convnet.serve.create_app` and uvicorn."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

EXAMPLES = """examples:
  convnet serve --run runs/lenet5-digits-...            # http://127.0.0.1:8000/ (this machine only)
  curl -F file=@digit.png http://127.0.0.1:8000/predict
  curl --data-binary @digit.png -H 'Content-Type: image/png' 'http://127.0.0.1:8000/predict?cam=1'
  convnet serve --run runs/a --max-batch 32 --max-wait-ms 10 --threads 4
  convnet serve --run runs/a --host 0.0.0.0 --port 8080  # reachable from other machines: no authentication!
"""

log = logging.getLogger("convnet.serve")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import ServeSettings, create_app

    try:
        import uvicorn
        import starlette  # noqa: F401
    except ImportError:
        print("convnet serve: error: serving needs the 'serve' extra: pip install 'convnet[serve]'", file=sys.stderr)
        return 2
    settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, queue=args.queue,
                             timeout_s=args.timeout_s, threads=args.threads, read_threads=args.read_threads,
                             max_body_mb=args.max_body_mb,
                             max_pixels=args.max_pixels)
    app = create_app(args.run, settings)
    service = app.state.service
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not is_loopback(args.host):
        log.warning("listening on %s: any machine that reaches this address can send inputs (there is no "
                    "authentication); the default --host 127.0.0.1 accepts this machine only", args.host)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {service.run_name} ({service.info()['model'].get('name')}, task {service.task.name}) "
          f"on http://{shown}:{args.port}/", flush=True)
    # One process: the model lives in it once; the batching worker is the parallelism.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
                timeout_keep_alive=5, server_header=False)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``convnet`` subcommand parser ``sub``."""
    s = sub.add_parser("serve", help="HTTP service and web page for a run: POST /predict, /info, /healthz, /metrics",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--run", required=True, help="a finished training run directory (model.safetensors + config.json)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; anything else must be asked for)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-batch", type=int, default=16, help="most inputs per forward pass (1: no batching)")
    s.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch's first input waits for others")
    s.add_argument("--queue", type=int, default=64,
                   help="most prediction requests in progress at once; more are answered 503 at once")
    s.add_argument("--timeout-s", type=float, default=10.0, help="per-request limit, upload to answer (504 after)")
    s.add_argument("--threads", type=int, help="torch threads for inference (default: torch's, one per core)")
    s.add_argument("--read-threads", type=int,
                   help="threads that decode uploads (default: as many as --threads, at most 4)")
    s.add_argument("--max-body-mb", type=float, default=10.0, help="largest request body (413 above), chunked too")
    s.add_argument("--max-pixels", type=int, default=4096 * 4096,
                   help="largest image (width x height) or .npy (values), refused from the header (413); 0: no cap")
    s.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    s.add_argument("--access-log", action="store_true", help="log every request")
    s.set_defaults(fn=cmd_serve)
