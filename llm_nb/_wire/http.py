"""One httpx configuration for every provider: timeouts, pool limits and the client itself.

Retries are in :mod:`.retry`; which exception an error reply is, in :mod:`.errors`; connection
failures and timeouts as messages, in :mod:`.connection`.
"""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass

import httpx

from .transport import RenewingTransport

#: The longest wait for a server to start answering. Loading a model and reading a long
#: prompt both happen before the first byte on llama-server and Ollama, and on a CPU that
#: takes minutes (thousands of prompt tokens at tens of tokens per second), so this is the
#: generous one; %%llm shows how long it has been waiting meanwhile.
DEFAULT_TIMEOUT_S = 600.0
#: The longest silence once an answer streams. A working server sends a token every few
#: hundred milliseconds even on a CPU; a minute without one means it is stuck.
DEFAULT_READ_TIMEOUT_S = 60.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class HTTPConfig:
    """Timeouts and pool limits, in seconds.

    ``start_s`` bounds the wait for the response to begin (the headers: llama-server and
    Ollama send them with the first token, after loading the model and reading the prompt);
    ``read_s`` bounds each wait for more of the body after that, not the whole answer, so
    long generations are fine while a stalled server still fails within a minute. ``None``
    for ``start_s`` means the same as ``read_s``.
    """

    connect_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_s: float = DEFAULT_READ_TIMEOUT_S
    write_s: float = 30.0
    pool_s: float = 30.0
    max_connections: int = 256
    start_s: float | None = DEFAULT_TIMEOUT_S

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_s, read=self.read_s, write=self.write_s, pool=self.pool_s
        )

    def with_limits(
        self,
        timeout: float | None = None,
        read_timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> HTTPConfig:
        """A copy with the public settings applied (None keeps the current value)."""
        return dataclasses.replace(
            self,
            start_s=self.start_s if timeout is None else timeout,
            read_s=self.read_s if read_timeout is None else read_timeout,
            connect_s=self.connect_s if connect_timeout is None else connect_timeout,
        )

    @property
    def first_read_s(self) -> float:
        return self.read_s if self.start_s is None else self.start_s

    def phases(self) -> tuple[dict[str, float], dict[str, float]]:
        """httpx ``timeout`` extensions: one for sending and waiting for the response to
        start, one for reading its body (only the read limit differs)."""
        start = {
            "connect": self.connect_s,
            "read": self.first_read_s,
            "write": self.write_s,
            "pool": self.pool_s,
        }
        return start, {**start, "read": self.read_s}


def make_client(
    base_url: str,
    headers: dict[str, str],
    config: HTTPConfig,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    if transport is None:
        limits = httpx.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=min(64, config.max_connections),
        )
        transport = RenewingTransport(
            lambda: httpx.AsyncHTTPTransport(
                retries=0,
                limits=limits,
                # Nagle's algorithm can hold small request writes back by tens of
                # milliseconds, which would show up as fake time-to-first-token.
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            )
        )
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=config.timeout(),
        transport=transport,
        trust_env=False,
    )
