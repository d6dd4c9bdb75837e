"""Starting ``clicklabel serve``: the token rules, the loopback rule, and the deployment on Ray Serve.

- Authentication is on by default: the token comes from ``--token-file``, else ``$CLICKLABEL_SERVE_TOKEN``, else
  one is generated once into the user's config folder (mode 0600) and its path printed, for the team to share.
- ``--no-auth`` is refused unless the server binds a loopback address: anyone who can reach a public port could
  otherwise use the GPU and read embeddings of other people's images.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from pathlib import Path

from ..errors import ClickLabelError
from . import ClusterError, last_line, require_ray

MIN_TOKEN = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_token_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("clicklabel")) / "serve-token"


def server_token(token_file: str | Path | None, no_auth: bool, host: str) -> tuple[str | None, str]:
    """(token or None, where it came from). Raises for ``--no-auth`` off loopback, a short or missing token."""
    from ..segment.remote import TOKEN_ENV, read_token

    if no_auth:
        if not is_loopback(host):
            raise ClickLabelError(f"--no-auth is only allowed on a loopback address, not {host}: anyone who can "
                                  "reach the port could use the server; give the team a --token-file instead")
        return None, "no token (loopback only)"
    if token_file:
        if not Path(token_file).is_file():
            raise ClickLabelError(f"--token-file {token_file} does not exist (leave it out and one is made for you)")
        token, where = read_token(token_file), str(token_file)
    elif os.environ.get(TOKEN_ENV, "").strip():
        token, where = read_token(None), f"${TOKEN_ENV}"
    else:
        p = default_token_file()
        if not p.is_file():
            p.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another server made it meanwhile: read theirs
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(32) + "\n")
        token, where = read_token(p), str(p)
    if token is None or len(token) < MIN_TOKEN:
        raise ClickLabelError(f"the token in {where} is too short: use at least {MIN_TOKEN} characters")
    return token, where


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_server(spec: dict, cache_dir: str | Path, token: str | None, host: str = "127.0.0.1", port: int = 8765,
                 replicas: int = 1, replica_cpus: float | None = None, max_upload_mb: float = 32) -> str:
    """Deploy the encoder on the current Ray session (``cluster.ray_session``) and return its URL once every
    replica has loaded the model. One GPU per replica when the cluster has GPUs."""
    import logging

    ray = require_ray("clicklabel serve")
    try:
        from ray import serve

        from . import serve_app
    except ImportError as exc:
        raise ClusterError(f"clicklabel serve needs Ray Serve ({exc}): pip install 'clicklabel[ray]'") from None
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = 1 if replica_cpus is None else replica_cpus
    options = {"num_gpus": 1, "num_cpus": cpus} if gpus else {"num_cpus": cpus}
    spec = dict(spec)
    if gpus and spec.get("device", "auto") == "auto":
        spec["device"] = "cuda"
    port = free_port(host) if port == 0 else port
    try:
        serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
        serve.run(serve_app.build(spec, str(cache_dir), token, replicas, options, int(max_upload_mb * 2**20)),
                  name="clicklabel", route_prefix="/", blocking=False, logging_config={"log_level": "WARNING"})
    except Exception as exc:  # noqa: BLE001 - a replica that cannot load the model, a port in use, Ray's own failures
        raise ClusterError(f"the encoding server did not start: {last_line(exc)}") from None
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def stop_server() -> None:
    from ray import serve

    try:
        serve.delete("clicklabel")  # the replicas first: the controller then shuts down without a retried task
    except Exception:  # noqa: BLE001 - not deployed (a failed start): shutting down is all that is left
        pass
    serve.shutdown()
