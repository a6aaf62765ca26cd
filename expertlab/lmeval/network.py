"""offline(): Hugging Face libraries in offline mode and every connection beyond loopback refused, for an lm-eval run."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "HF_UPDATE_DOWNLOAD_COUNTS": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


class NetworkAccessError(RuntimeError):
    """Code running under `offline()` tried to reach a host other than this machine."""


def _is_local(host: Any) -> bool:
    if host is None or isinstance(host, bytes) or host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _check_address(address: Any) -> None:
    # AF_UNIX addresses are paths (str or bytes); inet addresses are (host, port, ...) tuples.
    host = address[0] if isinstance(address, tuple) and address else None
    if isinstance(address, tuple) and not _is_local(host):
        raise NetworkAccessError(
            f"lm-eval run tried to reach {address!r}: expertlab runs lm-eval offline, on local data and local models only"
        )


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Hugging Face libraries in offline mode, and any socket connection or name lookup beyond loopback
    raising NetworkAccessError (process-wide, for the duration)."""
    saved_environment = {key: os.environ.get(key) for key in OFFLINE_ENVIRONMENT}
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> None:
        _check_address(address)
        return connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        _check_address(address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local(host):
            raise NetworkAccessError(f"lm-eval run tried to resolve {host!r}: expertlab runs lm-eval offline")
        return getaddrinfo(host, *args, **kwargs)

    os.environ.update(OFFLINE_ENVIRONMENT)
    socket.socket.connect, socket.socket.connect_ex = guarded_connect, guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
        for key, value in saved_environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
