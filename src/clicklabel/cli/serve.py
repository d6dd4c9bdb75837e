"""``clicklabel serve``: the image encoder as a service for a team (Ray Serve; the clicklabel[ray] extra).
Clients use ``--engine remote --server URL`` (CLI) or the engine box's "remote" choice (GUI)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .common import DEFAULT_MODEL, MODEL_HELP, count, positive_float, positive_int


def cmd_serve(args) -> int:
    from ..cluster import ray_session
    from ..cluster.serving import server_token, start_server, stop_server
    from ..files import cache_root

    token, where = server_token(args.token_file, args.no_auth, args.host)  # before Ray: a refusal costs nothing
    spec = {"engine": "sam", "model": args.model or DEFAULT_MODEL,
            "checkpoint": str(args.checkpoint) if args.checkpoint else None, "device": args.device,
            "encoder": args.encoder}
    cache = str(args.cache or cache_root() / "embeddings")
    stop = threading.Event()
    with ray_session(args.ray):
        url = start_server(spec, cache, token, host=args.host, port=args.port, replicas=args.replicas,
                           replica_cpus=args.replica_cpus, max_upload_mb=args.max_upload_mb)
        print(f"clicklabel serve: {url} ({spec['model']}, {args.replicas} replica(s)); "
              + (f"token: {where}" if token else "NO TOKEN: loopback only"), flush=True)
        print(f"clients: clicklabel gui --engine remote --server {url} --model {spec['model']}"
              + (f" --token-file {where}" if token and not where.startswith("$") else ""), flush=True)
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            stop_server()
            print("clicklabel serve: stopped", file=sys.stderr, flush=True)
    return 0


def port_number(text: str) -> int:
    """argparse type: 0-65535."""
    value = count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="encode images for a team on this (GPU) machine: Ray Serve, bearer token; "
                                     "clients use --engine remote --server URL")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--checkpoint", help="your own checkpoint file (no hash check)")
    p.add_argument("--device", default="auto", help="auto (a GPU per replica when the cluster has GPUs), cpu, cuda")
    p.add_argument("--encoder", default="auto", choices=["auto", "fast", "stock"])
    p.add_argument("--replicas", type=positive_int, default=1, help="model copies (one GPU each)")
    p.add_argument("--replica-cpus", type=positive_float, help="CPUs reserved per replica (default 1)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback: this machine only)")
    p.add_argument("--port", type=port_number, default=8765, help="0: any free port")
    p.add_argument("--token-file", help="the bearer token clients must send (default $CLICKLABEL_SERVE_TOKEN, "
                                        "else one made once in your config folder)")
    p.add_argument("--no-auth", action="store_true", help="no token: only with a loopback --host")
    p.add_argument("--max-upload-mb", type=positive_float, default=32, help="largest image accepted")
    p.add_argument("--cache", help="the server's embedding cache folder (default: the user cache's embeddings/)")
    p.add_argument("--ray", nargs="?", const="local", default="local", metavar="ADDRESS",
                   help="run on this Ray cluster (default: a private local one)")
    p.set_defaults(func=cmd_serve)
