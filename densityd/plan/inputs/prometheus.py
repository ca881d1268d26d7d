"""A client of the Prometheus HTTP query API: instant and range queries, auth, TLS.

Anything that speaks the API answers (Prometheus, Thanos, Mimir, VictoriaMetrics). Queries
go as POST form data, so long PromQL never meets a URL length limit. Every failure is a
``PrometheusError`` whose message says what went wrong and where, and whose ``exit_code``
is what ``densityd plan`` exits with::

    densityd plan: cannot reach Prometheus at http://prom:9090: connection refused
    densityd plan: Prometheus at http://prom:9090 rejected the query (HTTP 400, bad_data):
        parse error: unexpected "}" in ... (query: densityd_workload_info{job=})

A sample of the responses it parses (``parse_response``)::

    {"status": "success", "data": {"resultType": "vector",
     "result": [{"metric": {"instance": "a:9847"}, "value": [1764590400.0, "2"]}]}}
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

# Exit statuses: the input (a flag, a selector, credentials) is wrong / the server is not there.
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 1

# "[Errno 111] " and the like, before the OS's own words.
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
# How much of a non-JSON error body (a proxy's HTML page, say) goes into a message.
_BODY_EXCERPT = 200


class PrometheusError(Exception):
    """Prometheus could not answer; the message says why, ``exit_code`` what to exit with."""

    exit_code = EXIT_BAD_INPUT


class PrometheusUnreachable(PrometheusError):
    """No answer at all: connection refused, DNS, TLS handshake, timeout."""

    exit_code = EXIT_UNREACHABLE


class PrometheusQueryError(PrometheusError):
    """Prometheus answered with an error: HTTP 4xx is bad input (2), 5xx its trouble (1)."""

    def __init__(self, message: str, *, status: int, error_type: str = "", error: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.error = error
        self.exit_code = EXIT_BAD_INPUT if 400 <= status < 500 else EXIT_UNREACHABLE


class PrometheusConfigError(PrometheusError):
    """A connection setting cannot be used (an unreadable token file, say)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of an instant vector: its labels and value at ``timestamp``."""

    labels: Mapping[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a range query: its labels and ``(timestamp, value)`` points in order."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Connection:
    """Where Prometheus is and how to talk to it.

    ``bearer_token`` and ``username``/``password`` are mutually exclusive; ``ca_file``
    verifies the server against a private CA; ``insecure`` skips verification altogether.
    """

    url: str
    bearer_token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    insecure: bool = False
    timeout: float = 30.0


def read_secret(path: str | Path, flag: str) -> str:
    """A token or password from a file, without its trailing newline; names ``flag`` if not."""
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise PrometheusConfigError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    if not text:
        raise PrometheusConfigError(f"{flag}: {path} is empty")
    return text


def connection(
    url: str,
    *,
    bearer_token_file: str | None = None,
    username: str | None = None,
    password_file: str | None = None,
    ca_file: str | None = None,
    insecure: bool = False,
    timeout: float = 30.0,
) -> Connection:
    """A checked ``Connection`` from the command line's flags; ``PrometheusConfigError`` names
    the flag at fault."""
    if not url.startswith(("http://", "https://")):
        raise PrometheusConfigError(
            f"--prometheus: {url!r} is not an http:// or https:// URL "
            "(example: http://prometheus:9090)"
        )
    if bearer_token_file and (username or password_file):
        raise PrometheusConfigError(
            "--prometheus-bearer-token-file and --prometheus-username: give one way to "
            "authenticate, not both"
        )
    if password_file and not username:
        raise PrometheusConfigError("--prometheus-password-file needs --prometheus-username")
    if not math.isfinite(timeout) or timeout <= 0:
        raise PrometheusConfigError(f"--prometheus-timeout: {timeout} must be more than 0")
    if ca_file is not None and not Path(ca_file).is_file():
        raise PrometheusConfigError(f"--prometheus-ca-file: {ca_file} is not a file")
    return Connection(
        url=url.rstrip("/"),
        bearer_token=(
            read_secret(bearer_token_file, "--prometheus-bearer-token-file")
            if bearer_token_file
            else None
        ),
        username=username,
        password=(
            read_secret(password_file, "--prometheus-password-file") if password_file else None
        ),
        ca_file=Path(ca_file) if ca_file else None,
        insecure=insecure,
        timeout=timeout,
    )


class PrometheusClient:
    """Instant and range queries against one server, over one HTTP session."""

    def __init__(self, conn: Connection, session: requests.Session | None = None) -> None:
        self.conn = conn
        self._session = session or requests.Session()
        if conn.bearer_token:
            self._session.headers["Authorization"] = f"Bearer {conn.bearer_token}"
        elif conn.username:
            self._session.auth = (conn.username, conn.password or "")
        self._verify: bool | str = (
            False if conn.insecure else str(conn.ca_file) if conn.ca_file else True
        )

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, promql: str, at: float) -> list[Sample]:
        """An instant query evaluated at ``at`` (Unix seconds); its vector."""
        data = self._post("query", {"query": promql, "time": _time(at)})
        return parse_vector(data, promql)

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        """A range query from ``start`` to ``end`` every ``step`` seconds; its matrix."""
        form = {"query": promql, "start": _time(start), "end": _time(end), "step": _time(step)}
        data = self._post("query_range", form)
        return parse_matrix(data, promql)

    def _post(self, endpoint: str, form: Mapping[str, str]) -> Any:
        """POST a form to ``/api/v1/ENDPOINT``; the decoded JSON body, checked."""
        url = f"{self.conn.url}/api/v1/{endpoint}"
        try:
            with warnings.catch_warnings():
                # The operator asked for no verification: one warning per query is noise.
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                response = self._session.post(
                    url, data=dict(form), timeout=self.conn.timeout, verify=self._verify
                )
        except requests.exceptions.SSLError as exc:
            raise PrometheusUnreachable(
                f"cannot reach Prometheus at {self.conn.url}: TLS failed ({_reason(exc)}); "
                "--prometheus-ca-file names a CA to trust, --prometheus-insecure-skip-verify "
                "skips the check"
            ) from None
        except requests.exceptions.Timeout:
            raise PrometheusUnreachable(
                f"cannot reach Prometheus at {self.conn.url}: no answer within "
                f"{self.conn.timeout:g} s (--prometheus-timeout)"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise PrometheusUnreachable(
                f"cannot reach Prometheus at {self.conn.url}: {_reason(exc)}"
            ) from None
        return parse_response(
            response.status_code, response.text, server=self.conn.url, query=form["query"]
        )


def parse_response(status: int, body: str, *, server: str, query: str) -> Any:
    """The ``data`` of an API response; ``PrometheusQueryError`` with Prometheus's ``error``."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        excerpt = " ".join(body.split())[:_BODY_EXCERPT] or "an empty body"
        what = "is not the Prometheus HTTP API" if status < 400 else "failed"
        raise PrometheusQueryError(
            f"{server} {what} (HTTP {status}): {excerpt}"
            + (" (a URL with a path? give the server's base URL)" if status == 404 else ""),
            status=status if status >= 400 else 502,
        )
    if status >= 400 or document.get("status") != "success":
        error_type = str(document.get("errorType") or "")
        error = str(document.get("error") or "no error message")
        kind = f"HTTP {status}" + (f", {error_type}" if error_type else "")
        raise PrometheusQueryError(
            f"Prometheus at {server} rejected the query ({kind}): {error} (query: {query})",
            status=status if status >= 400 else 422,
            error_type=error_type,
            error=error,
        )
    return document.get("data")


def parse_vector(data: Any, query: str = "") -> list[Sample]:
    """An instant query's result as samples; non-finite values are left out."""
    result = _result(data, "vector", query)
    samples: list[Sample] = []
    for item in result:
        labels, (timestamp, value) = _labels(item), _point(item.get("value"))
        if math.isfinite(value):
            samples.append(Sample(labels=labels, value=value, timestamp=timestamp))
    return samples


def parse_matrix(data: Any, query: str = "") -> list[Series]:
    """A range query's result as series; non-finite points are left out."""
    result = _result(data, "matrix", query)
    found: list[Series] = []
    for item in result:
        values = item.get("values") or []
        if not isinstance(values, list):
            raise PrometheusQueryError(f"malformed range result for {query}", status=502)
        points = tuple(p for p in (_point(v) for v in values) if math.isfinite(p[1]))
        found.append(Series(labels=_labels(item), points=points))
    return found


def _result(data: Any, expected: str, query: str) -> list[dict[str, Any]]:
    """``data.result`` when ``data.resultType`` is ``expected``."""
    if not isinstance(data, dict) or data.get("resultType") != expected:
        got = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise PrometheusQueryError(
            f"expected a {expected} result, got {got!r} (query: {query})", status=502
        )
    result = data.get("result")
    if not isinstance(result, list) or not all(isinstance(item, dict) for item in result):
        raise PrometheusQueryError(f"malformed {expected} result (query: {query})", status=502)
    return result


def _labels(item: Mapping[str, Any]) -> dict[str, str]:
    metric = item.get("metric") or {}
    if not isinstance(metric, dict):
        raise PrometheusQueryError("malformed series labels", status=502)
    return {str(k): str(v) for k, v in metric.items()}


def _point(raw: Any) -> tuple[float, float]:
    """``[1764590400.0, "2.5"]`` as ``(1764590400.0, 2.5)``; values come as strings."""
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise PrometheusQueryError(f"malformed sample {raw!r}", status=502)
    try:
        return float(raw[0]), float(raw[1])
    except (TypeError, ValueError):
        raise PrometheusQueryError(f"malformed sample {raw!r}", status=502) from None


def _time(seconds: float) -> str:
    """Unix seconds as the API takes them: up to milliseconds, no exponent."""
    return f"{seconds:.3f}"


def _reason(exc: BaseException) -> str:
    """The innermost reason of a requests error, in a few words: ``Connection refused``."""
    reason: BaseException = exc
    seen = {id(exc)}
    while True:
        nested = getattr(reason, "reason", None)
        args = getattr(reason, "args", ())
        inner = nested if isinstance(nested, BaseException) else None
        if inner is None and args and isinstance(args[0], BaseException):
            inner = args[0]
        inner = inner or reason.__cause__ or reason.__context__
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        reason = inner
    text = str(reason)
    # urllib3 wraps the OS's words in its own ("HTTPConnection(...): Failed to ...: [Errno
    # 111] Connection refused"): the tail after the last errno is the useful part.
    text = _ERRNO.split(text)[-1] if _ERRNO.search(text) else text
    return text.strip().strip("\"'") or type(reason).__name__
