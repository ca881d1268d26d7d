"""densityd's settings: one field, one ``DENSITYD_*`` variable, one flag, one TOML key.

Precedence, highest first: command-line flags, environment variables, the TOML file
(``--config``, default ``/etc/densityd/densityd.toml`` when it exists), the defaults below.
A bad value from any of them raises ``ConfigError`` naming the field, which the CLI turns
into one line on stderr and exit status 2.
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from densityd.plan.core.cost import GUEST_OS_BASELINES
from densityd.plan.core.model import RESOURCES, PartialResources, PlanSettings, Resources
from densityd.plan.core.quantity import parse_duration, parse_profile, parse_resources

ENV_PREFIX = "DENSITYD_"
DEFAULT_CONFIG_FILE = Path("/etc/densityd/densityd.toml")

_config_file: ContextVar[Path | None] = ContextVar("densityd_config_file", default=None)


class ConfigError(Exception):
    """A setting is invalid; the message names it and says what is wrong."""


def default_state_dir() -> Path:
    """``/var/lib/densityd`` as root, else the XDG state directory."""
    if os.geteuid() == 0:
        return Path("/var/lib/densityd")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "densityd"


def split_listen_address(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:9847`` for IPv6; an empty host means all interfaces)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError("must be HOST:PORT, for example 0.0.0.0:9847 or [::1]:9847")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", port


class Settings(BaseSettings):
    """Every setting of the daemon and of ``densityd sample``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    listen_address: str = Field(
        "0.0.0.0:9847", description="Address to serve /metrics on, as HOST:PORT."
    )
    web_config_file: Path | None = Field(
        None,
        description="exporter-toolkit web config file (YAML) for TLS and basic auth; "
        "re-read when it or the certificates change (default: plain HTTP, no auth).",
    )
    web_workers: int = Field(
        8, ge=1, le=256, description="Threads that answer HTTP requests (a fixed pool)."
    )
    web_max_connections: int = Field(
        1024,
        ge=1,
        description="Most HTTP connections open at once; one more is answered 503 and "
        "closed (lowered to fit the file descriptor limit).",
    )
    web_header_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a client has to send a whole request head (from connecting, "
        "or from the previous answer on a kept-alive connection).",
    )
    web_body_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a client has to send a request body, and to take an answer.",
    )
    web_max_request_bytes: int = Field(
        8192,
        ge=1024,
        description="Largest request, head and body together; larger ones get 431 or 413.",
    )
    interval: float = Field(15.0, gt=0, description="Seconds between sampling passes.")
    disk_interval: float = Field(
        300.0,
        gt=0,
        description="Seconds between writable-layer size scans (containers(size=True)).",
    )
    source_timeout: float = Field(
        10.0,
        gt=0,
        description="Deadline in seconds for one source's call and one data filesystem's "
        "statvfs; past it the source (or path) is down until it answers again.",
    )
    disk_timeout: float = Field(
        600.0, gt=0, description="Deadline in seconds for one writable-layer size scan."
    )
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Directory for local state (/var/lib/densityd as root, else the XDG "
        "state directory).",
    )
    docker: bool = Field(True, description="Sample Docker containers when Docker is reachable.")
    docker_host: str | None = Field(
        None, description="Docker Engine address (default: DOCKER_HOST, else the local socket)."
    )
    docker_stats_mode: Literal["auto", "cgroup", "api"] = Field(
        "auto",
        description="Where container usage comes from: cgroup files, the Engine "
        "stats API, or auto (cgroup files when the engine is local and they are readable).",
    )
    docker_api_workers: int = Field(
        16, ge=1, le=256, description="Threads for Engine stats API calls (fallback path)."
    )
    docker_timeout: float = Field(
        10.0,
        gt=0,
        description="Timeout of one Docker API call of a pass (the writable-layer scan has "
        "disk_timeout).",
    )
    docker_resync_interval: float = Field(
        300.0,
        gt=0,
        description="Seconds between full lists of the containers although the Engine's "
        "event stream said nothing (a safety net; a frozen Engine is found at the next one).",
    )
    docker_label_allowlist: list[str] = Field(
        default_factory=list,
        description="Container label keys exported on densityd_workload_info as "
        "label_<key> (other labels are never read; default: none).",
    )
    libvirt: bool = Field(True, description="Sample libvirt VMs when libvirt is reachable.")
    libvirt_uri: str = Field(
        "qemu:///system", description="libvirt connection URI (opened read-only)."
    )
    cgroup_root: Path = Field(
        Path("/sys/fs/cgroup"), description="Where the host's cgroup tree is mounted."
    )
    proc_root: Path = Field(
        Path("/proc"), description="Where the host's /proc is mounted (for /proc/meminfo)."
    )
    sys_root: Path = Field(
        Path("/sys"),
        description="Where the host's /sys is mounted (block device names, "
        "/sys/dev/block/MAJ:MIN/uevent).",
    )
    host_disk_paths: list[str] = Field(
        default_factory=list,
        description="More directories whose filesystem size and free "
        "space to export (the Docker data root is always included when local).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    history: bool = Field(
        True, description="Record every pass in the local history (STATE_DIR/history.sqlite3)."
    )
    retention: str = Field(
        "14d", description="How long the history is kept, e.g. 14d or 36h (older rows go)."
    )
    capacity: str | None = Field(
        None,
        description="Declared capacity to plan against instead of the host's, e.g. "
        "cpu=8,memory=32Gi,disk=500G (any subset): a slice, a quota, a host being sized. "
        "Against it only workloads count (and a reserve given explicitly), no system usage "
        "and no containerd shims.",
    )
    scopes: list[str] = Field(
        default_factory=list,
        description="Glob on workload names (or IDs): only matching workloads count "
        "in plans (default: all).",
    )
    reserved: str = Field(
        "cpu=0,memory=512Mi,disk=0",
        description="Host resources kept back from workloads (keys not given keep these "
        "defaults); within a declared --capacity only the keys given here are kept back.",
    )
    ratio: str = Field(
        "cpu=4,memory=1,disk=1",
        description="Overcommit ratios of the allocation view (keys not given keep "
        "these defaults).",
    )
    target_fill: float = Field(
        0.9, gt=0, le=1, description="Fill the usable capacity only up to this fraction."
    )
    window: str = Field(
        "14d", description="History window the demand view and the trend look at, e.g. 14d."
    )
    percentile: float = Field(
        95.0,
        gt=0,
        le=100,
        description="Percentile of the CPU rate the demand view uses (95 or 0.95 both mean p95).",
    )
    guest_os: str = Field(
        "debian",
        description="Guest OS whose RAM and disk baseline a container-shaped app pays "
        "when planned as a VM; 'measured' takes the RAM from the running VMs' guests "
        "(the median guest used memory).",
    )
    plan_profiles: list[str] = Field(
        default_factory=list,
        description="Shapes whose remaining slots the daemon exports as "
        "densityd_plan_remaining, e.g. web=cpu=0.5,memory=512Mi (default: the median "
        "container and the median VM).",
    )

    @field_validator("listen_address")
    @classmethod
    def _check_listen_address(cls, value: str) -> str:
        split_listen_address(value)
        return value

    @field_validator("retention", "window")
    @classmethod
    def _check_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("capacity")
    @classmethod
    def _check_capacity(cls, value: str | None) -> str | None:
        if value is not None:
            parse_resources(value, option="capacity", kind="capacity")
        return value

    @field_validator("reserved")
    @classmethod
    def _check_reserved(cls, value: str) -> str:
        parse_resources(value, option="reserved", kind="reserved")
        return value

    @field_validator("ratio")
    @classmethod
    def _check_ratio(cls, value: str) -> str:
        parse_resources(value, option="ratio", kind="ratio")
        return value

    @field_validator("plan_profiles")
    @classmethod
    def _check_profiles(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_profile(text, option="plan_profiles")
        return value

    @field_validator("guest_os")
    @classmethod
    def _check_guest_os(cls, value: str) -> str:
        known = [*GUEST_OS_BASELINES, "measured"]
        if value not in known:
            raise ValueError(f"unknown guest OS; known: {', '.join(sorted(known))}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def listen(self) -> tuple[str, int]:
        """The listen address as (host, port)."""
        return split_listen_address(self.listen_address)

    @property
    def retention_seconds(self) -> float:
        """``retention`` in seconds."""
        return parse_duration(self.retention)

    @property
    def window_seconds(self) -> float:
        """``window`` in seconds."""
        return parse_duration(self.window)

    @property
    def percentile_fraction(self) -> float:
        """``percentile`` as a fraction: 95 and 0.95 both give 0.95."""
        return self.percentile / 100 if self.percentile > 1 else self.percentile

    @property
    def declared_capacity(self) -> PartialResources | None:
        """``capacity`` parsed, ``None`` when not declared."""
        if self.capacity is None:
            return None
        return parse_resources(self.capacity, option="capacity", kind="capacity")

    def plan_settings(self) -> PlanSettings:
        """The planner's assumptions from these settings (keys not given keep the defaults)."""
        defaults = PlanSettings()
        reserved = parse_resources(self.reserved, option="reserved", kind="reserved")
        ratio = parse_resources(self.ratio, option="ratio", kind="ratio")
        # Only a reserve the user gave applies within a declared capacity (slots.for_host).
        given = "reserved" in self.model_fields_set
        return replace(
            defaults,
            reserved=_fill(reserved, defaults.reserved),
            reserved_given=frozenset(r for r in RESOURCES if given and reserved.get(r) is not None),
            ratio=_fill(ratio, defaults.ratio),
            target_fill=self.target_fill,
            percentile=self.percentile_fraction,
            window_seconds=self.window_seconds,
            guest_os=self.guest_os,
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (passed as init values) > environment > TOML file > defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def _fill(given: PartialResources, defaults: Resources) -> Resources:
    """Given values where present, the defaults elsewhere."""
    values = (given.get(r) for r in RESOURCES)
    return Resources(
        *(defaults.get(r) if v is None else v for r, v in zip(RESOURCES, values, strict=True))
    )


def flag_name(field: str) -> str:
    """The flag of a field: ``disk_interval`` -> ``--disk-interval``.

    A list field takes one value per flag, so its flag is singular and repeatable:
    ``host_disk_paths`` -> ``--host-disk-path``.
    """
    flag = "--" + field.replace("_", "-")
    info = Settings.model_fields.get(field)
    if info is not None and typing.get_origin(info.annotation) is list:
        flag = flag.removesuffix("s")
    return flag


def env_name(field: str) -> str:
    """The environment variable of a field: ``disk_interval`` -> ``DENSITYD_DISK_INTERVAL``."""
    return ENV_PREFIX + field.upper()


def _describe_error(error: Mapping[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    field = loc[0] if loc else "settings"
    where = (
        f"{field} ({flag_name(field)}, {env_name(field)})"
        if field in Settings.model_fields
        else field
    )
    if error.get("type") == "extra_forbidden":
        return f"unknown setting {field!r} in the config file"
    value = error.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
    return f"invalid {where}: {error.get('msg', 'invalid value')}{shown}"


def resolve_config_file(explicit: str | None) -> Path | None:
    """The TOML file to read: the flag, else ``DENSITYD_CONFIG``, else the default if present."""
    named = explicit or os.environ.get(ENV_PREFIX + "CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(flags: Mapping[str, Any], config_file: Path | None = None) -> Settings:
    """Build the settings from flags, environment and file; raise ``ConfigError`` if invalid."""
    token = _config_file.set(config_file)
    try:
        return Settings(**flags)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe_error(e) for e in exc.errors())) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
    except SettingsError as exc:  # a list field's env value that is not JSON, for one
        raise ConfigError(f"invalid setting: {exc}") from None
    finally:
        _config_file.reset(token)
