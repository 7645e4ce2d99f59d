"""``OllamaContractServer``: an Ollama-compatible server on 127.0.0.1 for tests, whose every
reply is checked by the official ``ollama`` types before it is sent.

It wires the parts together: the model store (``store``), the chat and embed routes (``chat``,
``embed``), the real model behind them when a llama-server is given (``backend``) or the fake
one (``fake``), the check (``contract``) and the HTTP side (``handler``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from pydantic import BaseModel

from .backend import Backend
from .catalogue import ModelSpec
from .chat import Chat
from .contract import VersionBody, contract_problems
from .embed import embed
from .handler import Faults, Handler, HTTPServer, RecordedRequest
from .store import ModelStore
from .wire import JSON, APIError, Reply, StreamReply, dumps

_Route = Callable[[Any], Reply | StreamReply]


class OllamaContractServer:
    """An Ollama-compatible server on 127.0.0.1 whose every reply is checked by ollama's types.

    >>> with OllamaContractServer(None) as server:
    ...     client = ollama.Client(host=server.url)

    ``requests`` logs what clients sent; ``violations`` lists replies that broke the contract
    (tests should assert it stays empty); ``faults`` injects failures; ``disconnects`` counts
    streams the client abandoned (their upstream request is closed at once).
    ``backend_transport`` lets tests script a llama-server (httpx.MockTransport) to exercise
    the real-backend code path without the binary.
    """

    def __init__(
        self,
        backend_url: str | None,
        *,
        models: Mapping[str, ModelSpec] | None = None,
        registry: Mapping[str, ModelSpec] | None = None,
        version: str = "0.12.10",
        backend_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.backend = Backend(backend_url, backend_transport) if backend_url else None
        self.version = version
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.faults = Faults()
        self.disconnects = 0
        self._lock = threading.Lock()
        self.store = ModelStore(models, registry)
        chat = Chat(self.store, self.backend)
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes: dict[str, dict[str, _Route]] = {
            "/": {"GET": self._root, "HEAD": self._root},
            "/api/version": {"GET": self._version, "HEAD": self._version},
            "/api/tags": {"GET": self.store.tags, "HEAD": self.store.tags},
            "/api/ps": {"GET": self.store.ps},
            "/api/show": {"POST": self.store.show},
            "/api/chat": {"POST": chat},
            "/api/embed": {"POST": lambda body: embed(body, self.store, self.backend)},
            "/api/pull": {"POST": self.store.pull},
            "/api/delete": {"DELETE": self.store.delete},
        }

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started; call start() first")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def backend_url(self) -> str | None:
        return self.backend.url if self.backend is not None else None

    def start(self) -> OllamaContractServer:
        if self.backend is not None:
            n_ctx, spec = self.backend.probe(describe_model=not self.store.explicit)
            self.store.backend_n_ctx = n_ctx
            if spec is not None:
                self.store.replace_models({"smollm2:135m": spec})
        self._httpd = HTTPServer(("127.0.0.1", 0), Handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="ollama-contract-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.backend is not None:
            self.backend.close()

    def __enter__(self) -> OllamaContractServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def loaded_models(self) -> list[str]:
        """Names /api/ps would list now."""
        return self.store.loaded_models

    def count_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    # -- validation ------------------------------------------------------------------------

    def encode(self, where: str, obj: JSON, schema: type[BaseModel]) -> bytes | None:
        """Serialize ``obj`` and check those exact bytes against ``schema``; None on violation."""
        data = dumps(obj)
        problems = contract_problems(data, schema)
        if problems:
            self.violations.append(f"{where}: {schema.__name__}: {'; '.join(problems)}: {obj}")
            return None
        return data

    # -- routes ----------------------------------------------------------------------------

    def route(self, method: str, path: str, body: Any) -> Reply | StreamReply:
        methods = self._routes.get(path)
        if methods is None:
            return Reply(404, text="404 page not found")  # gin's NoRoute answer, plain text
        handler = methods.get(method)
        if handler is None:
            return Reply(405, text="405 method not allowed")
        if method in ("POST", "DELETE") and body is None:
            raise APIError(400, "missing request body")
        return handler(body)

    def _root(self, _body: Any) -> Reply:
        return Reply(200, text="Ollama is running")

    def _version(self, _body: Any) -> Reply:
        return Reply(200, {"version": self.version}, VersionBody)
