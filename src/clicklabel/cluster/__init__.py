"""Batch jobs on a Ray cluster (the optional ``clicklabel[ray]`` extra).

Ray is imported only at the point of use (``require_ray``), never by ``import clicklabel``; without the extra
every ``--ray`` use fails with one line naming it. Remote code lives in this installed package, because Ray
workers import actor classes by module name.
"""

from __future__ import annotations

import contextlib
import logging
import os

from ..errors import ClickLabelError

EXTRA_HINT = "pip install 'clicklabel[ray]'"
MIN_RAY = (2, 51)


class ClusterError(ClickLabelError):
    """Ray is missing, the cluster cannot be reached, or a worker does not come back."""


def _env_defaults() -> None:
    # Before the first `import ray` in the process: Ray reads RAY_AUTH_MODE into its C++ config at import, and
    # setting it afterwards makes ray.init() fail after ~20 s ("Failed to start GCS").
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def require_ray(feature: str = "--ray"):
    """The ``ray`` module, or a ClusterError naming the extra."""
    _env_defaults()
    try:
        import ray
    except ImportError:
        raise ClusterError(f"{feature} needs Ray, which is not installed: {EXTRA_HINT}") from None
    version = tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_RAY:
        raise ClusterError(f"{feature} needs Ray >= {'.'.join(map(str, MIN_RAY))} (found {ray.__version__}): "
                           f"{EXTRA_HINT} --upgrade")
    return ray


def last_line(exc: BaseException) -> str:
    """The line of an exception's text that says what went wrong (Ray's messages carry whole tracebacks)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, object_store_mb: int = 512):
    """``--ray`` (address None or 'local'): a private local cluster for this run, shut down at the end.
    ``--ray ADDRESS``: join that cluster (its token in RAY_AUTH_TOKEN or ~/.ray/auth_token; clicklabel installed
    on every node). Inside an already initialised Ray (tests, a notebook) the session is reused and left up."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    kw = dict(log_to_driver=False, logging_level=logging.WARNING)
    try:
        if address and address != "local":
            ray.init(address=address, **kw)
        else:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=object_store_mb * 2**20, **kw)
    except Exception as exc:  # noqa: BLE001 - Ray fails to start in many ways (timeouts, GCS, raylet, sockets)
        hint = " (check the cluster token: RAY_AUTH_TOKEN or ~/.ray/auth_token)" if address else \
            " (a loaded machine can be too slow for Ray's start-up: try again)"
        with contextlib.suppress(Exception):
            ray.shutdown()  # whatever did start (GCS, raylet) is stopped, not left running
        raise ClusterError(f"cannot start or join the Ray cluster {address or 'local'}: {last_line(exc)}{hint}") \
            from None
    reaper = None
    if not address or address == "local":  # our own cluster: its agents go when this program is killed
        from .reaper import start_reaper

        reaper = start_reaper()
    try:
        yield ray
    finally:
        ray.shutdown()
        if reaper is not None:
            reaper.kill()
            reaper.wait()
