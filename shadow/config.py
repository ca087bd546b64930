"""The shadow proxy's configuration: routes, mirror and ledger settings.

A configuration file (TOML, or JSON as written by `cutover demo`) declares
one route per reverse-mode listener:

- an `ingress` route sits in front of the storefront's webhook target; its
  upstream is the legacy flow and `mirror_to` is the candidate flow;
- `erp` and `email` routes are taps: a flow sends its ERP or email calls to
  the tap's port, and the tap forwards them to `upstream`. A tap with
  `quarantine = true` answers in place of the upstream and never forwards.

Each route may name a `preset` (see `shadow.presets`) for its platform; the
preset supplies the key rule and the wire conventions, and the route's own
`key`, `path_key`, `submit_methods`, `kind`, `confirmation` and
`pending_notice` settings override it.

Every parse error names the setting, the value and the fix.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jmespath
import jmespath.exceptions
from jmespath.parser import ParsedResult

from cutover.events import Flow
from shadow.presets import (
    DEFAULT_PRESETS,
    PRESETS,
    EmailPreset,
    ErpPreset,
    StorefrontPreset,
    preset_names,
)
from shadow.sampling import parse_fraction

__all__ = [
    "ConfigError",
    "EmailKinds",
    "MirrorSpec",
    "RouteSpec",
    "ShadowConfig",
    "load_config",
    "parse_config",
    "parse_listen",
]

ROLES = ("ingress", "erp", "email")

TOP_LEVEL_KEYS = {"mode", "route", "routes", "mirror", "ledger", "metrics"}
MIRROR_KEYS = {"queue_size", "concurrency", "timeout_s", "max_body_bytes", "sample"}
LEDGER_KEYS = {"url", "run_id", "instance_id"}
_COMMON_ROUTE_KEYS = {"name", "role", "flow", "listen", "upstream", "key", "preset", "host_header"}
ROUTE_KEYS = {
    "ingress": _COMMON_ROUTE_KEYS | {"mirror_to", "mirror_host_header", "legacy_confirmation_from"},
    "erp": _COMMON_ROUTE_KEYS | {"path_key", "submit_methods"},
    "email": _COMMON_ROUTE_KEYS | {"quarantine", "kind", "confirmation", "pending_notice"},
}
ALL_ROUTE_KEYS = set().union(*ROUTE_KEYS.values())
LEDGER_SCHEMES = ("sqlite:///", "postgresql://", "postgresql+psycopg://")
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

DEFAULT_ERP_SUBMIT_METHODS = ("POST", "PUT", "PATCH")

# Sources of a storefront-sent confirmation's time: the webhook's
# trigger-time header, or the order's creation time in the body.
LEGACY_CONFIRMATION_SOURCES = ("triggered_at", "created_at")

Preset = StorefrontPreset | ErpPreset | EmailPreset


class ConfigError(ValueError):
    """The configuration is invalid; the message names the setting and the fix."""


@dataclass(frozen=True)
class EmailKinds:
    """How an email tap tells a confirmation from a pending notice."""

    rule: ParsedResult
    confirmation: frozenset[str]
    pending_notice: frozenset[str]


@dataclass(frozen=True)
class RouteSpec:
    name: str
    role: str
    listen_host: str
    listen_port: int
    upstream: str
    flow: Flow
    key_rule: ParsedResult
    key_rule_text: str
    path_key: re.Pattern[str] | None = None
    mirror_to: str | None = None
    quarantine: bool = False
    submit_methods: tuple[str, ...] = DEFAULT_ERP_SUBMIT_METHODS
    email_kinds: EmailKinds | None = None
    preset: Preset | None = None
    # Ingress only: record the legacy flow's confirmation at the webhook's
    # "triggered_at" header or "created_at" body time, for storefronts that
    # send the confirmation themselves.
    legacy_confirmation_from: str | None = None
    # Host header sent to `upstream`, and on the ingress to `mirror_to`;
    # None sends the upstream's own host and port.
    host_header: str | None = None
    mirror_host_header: str | None = None

    @property
    def mode_spec(self) -> str:
        """The mitmproxy `--mode` value that creates this route's listener."""
        return f"reverse:{self.upstream}@{self.listen_host}:{self.listen_port}"


@dataclass(frozen=True)
class MirrorSpec:
    # Copies waiting to be sent; a full queue drops the copy and counts it.
    queue_size: int = 1000
    # Copies in flight to the candidate at once.
    concurrency: int = 16
    # Seconds to wait for the candidate's answer before counting a failure.
    timeout_s: float = 10.0
    # Largest body mirrored, in bytes; a larger one is recorded as
    # mirror.skipped and only the legacy flow gets it.
    max_body_bytes: int = 16 * 1024 * 1024
    # Share of orders mirrored and recorded, chosen by a hash of the order
    # key; 1.0 takes every order.
    sample: float = 1.0


@dataclass(frozen=True)
class ShadowConfig:
    routes: tuple[RouteSpec, ...]
    mirror: MirrorSpec = field(default_factory=MirrorSpec)
    ledger_url: str = ""
    run_id: str = ""
    instance_id: str = "proxy-1"
    # 'host:port' for the Prometheus endpoint; empty serves none.
    metrics_listen: str = ""

    def route_for_port(self, port: int | None) -> RouteSpec | None:
        for route in self.routes:
            if route.listen_port == port:
                return route
        return None

    @property
    def mode_specs(self) -> list[str]:
        return [route.mode_spec for route in self.routes]


def load_config(path: Path) -> ShadowConfig:
    """Read a TOML or JSON configuration file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Can't read the shadow configuration {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Can't read the shadow configuration {path}: it is not UTF-8 text "
                          f"(invalid byte at offset {exc.start}). Save it as UTF-8.") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except RecursionError as exc:
        raise ConfigError(f"Invalid shadow configuration {path}: nested too deeply to read.") from exc
    except ValueError as exc:  # JSONDecodeError, TOMLDecodeError, an over-long integer
        raise ConfigError(f"Invalid shadow configuration {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Invalid shadow configuration {path}: the top level must be an object "
                          f"with a 'route' list, but got {type(data).__name__}.")
    return parse_config(data, source=str(path))


def parse_config(data: dict[str, Any], *, source: str = "configuration") -> ShadowConfig:
    # A misspelt key must not pass silently: `quarantin = true` would let the
    # candidate's emails reach customers.
    _check_keys(data, TOP_LEVEL_KEYS, "the top level", source)
    routes_data = data.get("route", data.get("routes"))
    if not isinstance(routes_data, list) or not routes_data:
        raise ConfigError(
            f"{source}: no routes. Declare at least one [[route]] table with role = 'ingress'."
        )
    routes = tuple(_parse_route(item, index, source) for index, item in enumerate(routes_data))
    _check_routes(routes, source)

    mirror_data = _table(data, "mirror", source)
    ledger_data = _table(data, "ledger", source)
    _check_keys(mirror_data, MIRROR_KEYS, "[mirror]", source)
    _check_keys(ledger_data, LEDGER_KEYS, "[ledger]", source)
    _check_keys(_table(data, "metrics", source), {"listen"}, "[metrics]", source)
    mirror = MirrorSpec(
        queue_size=_positive_int(mirror_data, "queue_size", MirrorSpec.queue_size, "mirror", source),
        concurrency=_positive_int(mirror_data, "concurrency", MirrorSpec.concurrency, "mirror", source),
        timeout_s=_positive_float(mirror_data, "timeout_s", MirrorSpec.timeout_s, "mirror", source),
        max_body_bytes=_positive_int(
            mirror_data, "max_body_bytes", MirrorSpec.max_body_bytes, "mirror", source
        ),
        sample=_sample(mirror_data, source),
    )
    return ShadowConfig(
        routes=routes,
        mirror=mirror,
        ledger_url=check_ledger_url(str(ledger_data.get("url", "")), f"{source}: [ledger] url"),
        run_id=check_run_id(str(ledger_data.get("run_id", "")), f"{source}: [ledger] run_id"),
        instance_id=str(ledger_data.get("instance_id", "proxy-1")),
        metrics_listen=_metrics_listen(_table(data, "metrics", source), source),
    )


def _sample(table: dict[str, Any], source: str) -> float:
    try:
        return parse_fraction(table.get("sample", 1.0))
    except ValueError as exc:
        raise ConfigError(f"{source}: [mirror] {exc}") from exc


def _metrics_listen(table: dict[str, Any], source: str) -> str:
    listen = table.get("listen", "")
    if listen in ("", None):
        return ""
    host, port = parse_listen(listen, f"{source}: [metrics]")
    return f"{host}:{port}"


def _table(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{name}] must be a table, but got {table!r}")
    return table


def _parse_route(item: Any, index: int, source: str) -> RouteSpec:
    if not isinstance(item, dict):
        raise ConfigError(f"{source}: route #{index + 1} must be a table, but got {item!r}")
    name = str(item.get("name") or f"route-{index + 1}")
    where = f"{source}: route {name!r}"

    role = item.get("role")
    if role is None:
        raise ConfigError(f"{where}: role is missing; set it to one of {', '.join(ROLES)}.")
    if role not in ROLES:
        raise ConfigError(f"{where}: role must be one of {', '.join(ROLES)}, but got {role!r}")
    _check_keys(item, ALL_ROUTE_KEYS, "this route", where)

    listen_host, listen_port = parse_listen(item.get("listen"), where)
    upstream = _parse_url(item.get("upstream"), "upstream", where)

    default_flow = Flow.LEGACY.value
    flow_text = item.get("flow", default_flow)
    try:
        flow = Flow(flow_text)
    except ValueError:
        raise ConfigError(
            f"{where}: flow must be 'legacy' or 'candidate', but got {flow_text!r}"
        ) from None

    preset = _parse_preset(item, role, where)

    key_rule_text = _text_option(item, "key", preset.key, where, "a JMESPath expression such as 'id'")
    key_rule = _compile_jmespath(key_rule_text, "key", where)

    path_key = None
    default_path_key = preset.path_key if isinstance(preset, ErpPreset) else None
    path_key_text = _text_option(item, "path_key", default_path_key, where,
                                 r"a regular expression such as '/eid:([^/?]+)'")
    if path_key_text:
        try:
            path_key = re.compile(path_key_text)
        except re.error as exc:
            raise ConfigError(
                f"{where}: invalid path_key {path_key_text!r}: {exc}. "
                r"Use a regular expression with one group, such as '/eid:([^/?]+)'."
            ) from exc
        if path_key.groups < 1:
            raise ConfigError(
                f"{where}: path_key {path_key_text!r} has no group; wrap the key part in (...)."
            )

    mirror_to = None
    if role == "ingress":
        mirror_to = _parse_url(item.get("mirror_to"), "mirror_to", where)
    elif "mirror_to" in item or "mirror_host_header" in item:
        raise ConfigError(f"{where}: mirror_to and mirror_host_header are only valid on the "
                          "ingress route.")
    host_header = _host_header(item, "host_header", where)
    mirror_host_header = _host_header(item, "mirror_host_header", where)

    quarantine = item.get("quarantine", False)
    if not isinstance(quarantine, bool):
        raise ConfigError(f"{where}: quarantine must be true or false, but got {quarantine!r}")
    if quarantine and role != "email":
        raise ConfigError(f"{where}: quarantine is only valid on an email route.")

    default_methods = (preset.submit_methods if isinstance(preset, ErpPreset)
                       else DEFAULT_ERP_SUBMIT_METHODS)
    methods = item.get("submit_methods", list(default_methods))
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise ConfigError(f"{where}: submit_methods must be a list of HTTP methods, but got {methods!r}")

    email_kinds = None
    if isinstance(preset, EmailPreset):
        email_kinds = _parse_email_kinds(item, preset, where)

    legacy_confirmation_from = _parse_legacy_confirmation(item, preset, where)

    # Checked last, so the specific messages above come first.
    misplaced = sorted(set(item) - ROUTE_KEYS[role])
    if misplaced:
        owners = {key: [r for r in ROLES if key in ROUTE_KEYS[r]] for key in misplaced}
        raise ConfigError(f"{where}: " + "; ".join(
            f"{key} is only valid on {' or '.join(owners[key])} routes" for key in misplaced
        ) + f", not on a route with role = {role!r}.")

    return RouteSpec(
        name=name,
        role=role,
        listen_host=listen_host,
        listen_port=listen_port,
        upstream=upstream,
        flow=flow,
        key_rule=key_rule,
        key_rule_text=key_rule_text,
        path_key=path_key,
        mirror_to=mirror_to,
        quarantine=quarantine,
        submit_methods=tuple(m.upper() for m in methods),
        email_kinds=email_kinds,
        preset=preset,
        legacy_confirmation_from=legacy_confirmation_from,
        host_header=host_header,
        mirror_host_header=mirror_host_header,
    )


def _text_option(item: dict[str, Any], option: str, default: str | None, where: str,
                 example: str) -> str | None:
    value = item.get(option, default)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: {option} must be {example}, but got {value!r}")
    return value


def _host_header(item: dict[str, Any], option: str, where: str) -> str | None:
    value = item.get(option)
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(c in value for c in " \r\n/"):
        raise ConfigError(
            f"{where}: {option} must be a host name with an optional port, such as "
            f"'shop.example.com' or 'erp.internal:8443', but got {value!r}"
        )
    return value


def _parse_preset(item: dict[str, Any], role: str, where: str) -> Preset:
    name = item.get("preset", DEFAULT_PRESETS[role])
    preset = PRESETS.get(name) if isinstance(name, str) else None
    if preset is None or preset.role != role:
        raise ConfigError(
            f"{where}: unknown preset {name!r} for role {role}. "
            f"Use one of {', '.join(preset_names(role))}, or leave preset out for "
            f"{DEFAULT_PRESETS[role]}."
        )
    return preset


def _parse_legacy_confirmation(item: dict[str, Any], preset: Preset, where: str) -> str | None:
    source = item.get("legacy_confirmation_from")
    if source is None:
        return None
    if not isinstance(preset, StorefrontPreset):
        raise ConfigError(f"{where}: legacy_confirmation_from is only valid on the ingress route.")
    if source not in LEGACY_CONFIRMATION_SOURCES:
        raise ConfigError(
            f"{where}: legacy_confirmation_from must be one of "
            f"{', '.join(LEGACY_CONFIRMATION_SOURCES)}, but got {source!r}"
        )
    if source == "triggered_at" and not preset.triggered_at_headers:
        raise ConfigError(
            f"{where}: preset {preset.name!r} sends no trigger-time header; "
            "set legacy_confirmation_from = 'created_at'."
        )
    if source == "created_at" and preset.created_at_rule is None:
        raise ConfigError(
            f"{where}: preset {preset.name!r} has no order creation time; "
            "set legacy_confirmation_from = 'triggered_at'."
        )
    return source


def _parse_email_kinds(item: dict[str, Any], preset: EmailPreset, where: str) -> EmailKinds:
    rule_text = _text_option(item, "kind", preset.kind, where, "a JMESPath expression such as 'categories[0]'")
    confirmation = item.get("confirmation", list(preset.confirmation))
    pending = item.get("pending_notice", list(preset.pending_notice))
    for option, values in (("confirmation", confirmation), ("pending_notice", pending)):
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{where}: {option} must be a list of strings, but got {values!r}")
    return EmailKinds(
        rule=_compile_jmespath(rule_text, "kind", where),
        confirmation=frozenset(confirmation),
        pending_notice=frozenset(pending),
    )


def parse_listen(value: Any, where: str) -> tuple[str, int]:
    """Parse `listen` as a port or 'host:port'; the host defaults to 127.0.0.1."""
    host, port_text = "127.0.0.1", value
    if isinstance(value, str) and ":" in value:
        host, _, port_text = value.rpartition(":")
        host = host.strip("[]")
    port = -1
    # int() would also take 8080.9 and True; neither names a port.
    if isinstance(port_text, int) and not isinstance(port_text, bool):
        port = port_text
    elif isinstance(port_text, str) and port_text.strip().isascii() and port_text.strip().isdigit():
        # Five digits at most: int() refuses strings of more than 4300 digits.
        port = int(port_text) if len(port_text.strip()) <= 5 else -1
    if not 1 <= port <= 65535:
        raise ConfigError(
            f"{where}: listen must be a port (1-65535) or 'host:port', but got {value!r}"
        )
    return host, port


def _parse_url(value: Any, option: str, where: str) -> str:
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
        hostname = parts.hostname if parts is not None else None
    except ValueError:  # such as an invalid IPv6 address or port
        parts, hostname = None, None
    if parts is None or parts.scheme not in ("http", "https") or not hostname:
        raise ConfigError(
            f"{where}: {option} must be an http(s) URL such as 'http://127.0.0.1:8081', "
            f"but got {_without_password(value)!r}"
        )
    if parts.username is not None or parts.password is not None:
        # The URL would reach mitmdump's command line, which every local user can read.
        raise ConfigError(
            f"{where}: {option} must not contain credentials (user:password@), but got "
            f"{_without_password(value)!r}. Let the flow send its own Authorization header."
        )
    return value.rstrip("/")


def _without_password(value: Any) -> Any:
    """Return a URL with the password of its user information replaced by '***'."""
    if not isinstance(value, str) or "@" not in value:
        return value
    scheme, separator, rest = value.rpartition("://")
    authority, slash, tail = rest.partition("/")
    user_info, at, host = authority.rpartition("@")
    if not at:
        return value
    user = user_info.partition(":")[0]
    return f"{scheme}{separator}{user}:***@{host}{slash}{tail}"


def _compile_jmespath(text: str, option: str, where: str) -> ParsedResult:
    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        raise ConfigError(
            f"{where}: invalid {option} rule {text!r}: {exc.__class__.__name__}. "
            "Use a JMESPath expression such as 'id' or 'custom_args.order_id'."
        ) from exc


def _positive_int(table: dict[str, Any], name: str, default: int, section: str, source: str) -> int:
    value = table.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{source}: [{section}] {name} must be a positive integer, but got {value!r}")
    return value


def _positive_float(
    table: dict[str, Any], name: str, default: float, section: str, source: str
) -> float:
    value = table.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{source}: [{section}] {name} must be a positive number, but got {value!r}")
    return float(value)


def _check_keys(table: dict[str, Any], known: set[str], where: str, source: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))} in {where}; "
            f"the known keys are {', '.join(sorted(known))}. Check the spelling."
        )


def check_ledger_url(url: str, where: str) -> str:
    """Accept an empty URL (the default SQLite file) or a SQLite or PostgreSQL URL."""
    if url and not url.startswith(LEDGER_SCHEMES):
        raise ConfigError(
            f"{where} must start with sqlite:/// or postgresql://, but got {url.split('@')[-1]!r}"
        )
    return url


def check_run_id(run_id: str, where: str) -> str:
    """Accept an empty id (a new one is made) or letters, digits, '.', '_' and '-'."""
    if run_id and (not RUN_ID_PATTERN.fullmatch(run_id) or run_id.startswith(".")):
        raise ConfigError(
            f"{where} may hold only letters, digits, '.', '_' and '-' (it names a folder "
            f"under runs/), but got {run_id!r}"
        )
    return run_id


def _check_routes(routes: tuple[RouteSpec, ...], source: str) -> None:
    names = [route.name for route in routes]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{source}: route name(s) {', '.join(map(repr, repeated))} used more "
                          "than once; give each route its own name, the ledger records it.")
    ports: dict[int, str] = {}
    for route in routes:
        if route.listen_port in ports:
            raise ConfigError(
                f"{source}: routes {ports[route.listen_port]!r} and {route.name!r} both listen on "
                f"port {route.listen_port}; give each route its own port."
            )
        ports[route.listen_port] = route.name
    if not any(route.role == "ingress" for route in routes):
        raise ConfigError(f"{source}: no route has role = 'ingress'; the proxy needs one.")
