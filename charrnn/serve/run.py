"""Bind, say where, serve until Ctrl-C or SIGTERM, then drain the streams in flight."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType, ModuleType

from charrnn.atomic import StrPath
from charrnn.errors import CharrnnError
from charrnn.serve.app import LOOPBACK, Served, make_app
from charrnn.serve.request import Limits
from charrnn.store.loader import load

EXTRA = "pip install 'charrnn-lab[serve]'"


def serve(
    path: StrPath,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    checkpoint: StrPath = "best",
    max_streams: int = 16,
    max_chars: int = 10_000,
    max_body: int = 65_536,
    timeout: float = 300.0,
    max_children: int = 2,
    api_key: str | None = None,
    ssl_certfile: StrPath | None = None,
    ssl_keyfile: StrPath | None = None,
    cors_origin: str | None = None,
    verbose: bool = False,
    on_info: Callable[[str], None] = print,
    on_warning: Callable[[str], None] | None = None,
) -> None:
    try:
        import uvicorn
    except ImportError:
        raise CharrnnError(
            f"`charrnn serve` needs the Python packages 'starlette' and 'uvicorn'; "
            f"install them with {EXTRA}"
        ) from None
    if cors_origin and not api_key:
        raise CharrnnError(
            "--cors-origin lets a web page call the server: give it an --api-key "
            "(or CHARRNN_API_KEY) too"
        )
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise CharrnnError("HTTPS needs both --ssl-certfile and --ssl-keyfile")
    scheme = "https" if ssl_certfile else "http"
    if ssl_certfile:
        _check_tls(ssl_certfile, ssl_keyfile)
    if host not in LOOPBACK and not api_key:
        (on_warning or on_info)(
            f"--host {host} lets other machines reach the server and it has no API key: "
            "anyone who can reach it can use it; give --api-key (or CHARRNN_API_KEY)"
        )
    served = Served(path, checkpoint, lambda p, c: load(p, c, on_warning=on_warning))
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    limits = Limits(
        max_chars=max_chars,
        max_body=max_body,
        max_streams=max_streams,
        timeout=timeout,
        max_children=max_children,
    )
    said = limits.describe(served.loaded)
    app, engine = make_app(
        served,
        host=host,
        port=port,
        limits=limits,
        api_key=api_key,
        cors_origin=cors_origin,
        scheme=scheme,
    )
    m = served.loaded.model_args
    where = (
        f"on {scheme}://{host}:{port} on every interface: other machines can reach it (--host)"
        if host in ("0.0.0.0", "::")
        else f"on {scheme}://{_url_host(host)}:{port} (this machine only; --host 0.0.0.0 opens it "
        "to others)"
    )
    on_info(
        f"Serving {path} ({m['cell']} {m['num_layers']}x{m['rnn_size']}, "
        f"{served.loaded.short_checkpoint}, step {served.loaded.step}) {where}; "
        f"up to {max_streams} streams, memory at most {said['memory_bound_mb']:,} MB above "
        f"idle (up to {max_children} TensorFlow child process(es) of {said['child_memory_mb']:,} "
        f"MB included){'; an API key is needed' if api_key else ''}. Ctrl-C stops."
    )
    config = uvicorn.Config(
        app,
        log_level="info" if verbose else "warning",
        access_log=verbose,
        lifespan="off",
        timeout_graceful_shutdown=timeout,
        limit_concurrency=limits.connections,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    server = _server_class(uvicorn)(config)
    server.on_stop = lambda: on_info(
        f"Stopping: finishing {engine.active} request(s) in "
        "flight, taking no new ones (Ctrl-C again: stop now)"
    )
    server.run(sockets=[sock])
    on_info("Stopped.")


def _server_class(uvicorn: ModuleType) -> type:
    class Server(uvicorn.Server):
        """uvicorn's server, but a signal ends it with exit status 0 once the streams in
        flight are done (uvicorn raises the signal again after its graceful shutdown)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit:
                self.on_stop()
            super().handle_exit(sig, frame)

    return Server


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise CharrnnError(
            f"cannot listen on {host}:{port} ({e.strerror}); choose another "
            "--port (0: any free one) or --host"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _check_tls(certfile: StrPath, keyfile: StrPath) -> None:
    """One error line for a certificate or key uvicorn could not load (else a traceback)."""
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as e:
        raise CharrnnError(
            f"cannot use --ssl-certfile {certfile} with --ssl-keyfile {keyfile}: {e}"
        ) from None
