"""Settings resolution: explicit argument, then environment, then the user config file,
then the default. Secrets are wrapped in :class:`Secret` so no repr, str, log line or
error message can show them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._errors import ConfigError


class Secret:
    """An API key. ``str()`` and ``repr()`` never show it; call :meth:`reveal` to send it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:
        # Pickling would write the key to disk; nothing in llm_nb needs it.
        raise TypeError("a Secret cannot be pickled")


def config_path() -> Path:
    env = os.environ.get("LLM_NB_CONFIG")
    if env:
        return Path(env)
    from platformdirs import user_config_dir

    return Path(user_config_dir("llm_nb")) / "config.toml"


@cache
def _file_config(path: Path) -> Mapping[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or remove it") from exc


def file_setting(section: str, key: str) -> Any:
    """``[section] key = ...`` from the user config file, or None."""
    table = _file_config(config_path()).get(section, {})
    return table.get(key) if isinstance(table, Mapping) else None


def resolve(
    explicit: Any, env_names: tuple[str, ...], section: str, key: str, default: Any = None
) -> Any:
    if explicit is not None:
        return explicit
    for name in env_names:
        value = os.environ.get(name)
        if value:
            return value
    value = file_setting(section, key)
    return default if value is None else value


def resolve_secret(
    explicit: str | Secret | None, env_names: tuple[str, ...], section: str
) -> Secret | None:
    value = resolve(explicit, env_names, section, "api_key")
    if value is None or value == "":
        return None
    return value if isinstance(value, Secret) else Secret(str(value))


def normalize_url(url: str, default_scheme: str = "http") -> str:
    """Add a scheme if missing, drop a trailing slash, and refuse credentials in the URL
    (they would end up in error messages and logs)."""
    url = url.strip()
    if "://" not in url:
        url = f"{default_scheme}://{url}"
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigError(
            "put the API key in api_key= or the environment, not in the URL "
            f"({parts.scheme}://{parts.hostname}...)"
        )
    if not parts.hostname:
        raise ConfigError(f"{url!r} has no host name; give it as host:port or http://host:port")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))


def host_of(url: str) -> str:
    """``host:port`` of a base URL, as model ids and tables show it."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"
