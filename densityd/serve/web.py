"""The HTTP app: ``/metrics``, ``/api/v1/plan``, a landing page at ``/``, ``/healthz``.

Served by ``connections.HTTPServer`` (a bounded pool, timeouts, size limits), so that a slow
or hostile client never holds up the next scrape; every handler reads only in-memory state.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST

from densityd import __version__
from densityd.collect.sampler import SnapshotHolder
from densityd.model import WorkloadKind
from densityd.plan.core.model import View
from densityd.plan.core.quantity import QuantityError, parse_profile
from densityd.plan.live import LivePlan
from densityd.plan.request import KINDS, VIEWS, PlanRequest, PlanRequestError
from densityd.serve.connections import HTTPServer
from densityd.serve.exporter import Exposition
from densityd.serve.http_wire import StartResponse, WSGIApp

__all__ = ["WSGIApp", "WebServer", "health", "make_app", "plan_request_from_query"]


def _landing_page(holder: SnapshotHolder) -> bytes:
    snapshot = holder.latest
    rows = ""
    if snapshot is not None:
        for status in snapshot.sources:
            state = "up" if status.up else f"down: {status.last_error}"
            rows += f"<li>{html.escape(status.name)}: {html.escape(state)}</li>"
    return (
        "<!doctype html><html><head><title>densityd</title></head><body>"
        f"<h1>densityd {html.escape(__version__)}</h1>"
        "<p>Container and VM density metrics for Prometheus.</p>"
        '<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>'
        '<li><a href="api/v1/plan">/api/v1/plan</a></li></ul>'
        f"<h2>Sources</h2><ul>{rows or '<li>no pass has finished yet</li>'}</ul>"
        "</body></html>"
    ).encode()


def health(
    holder: SnapshotHolder, max_age: float, clock: Callable[[], float] = time.time
) -> tuple[bool, str]:
    """Healthy while sampling passes keep finishing (backends being down is not unhealthy)."""
    snapshot = holder.latest
    if snapshot is None:
        return False, "no sampling pass has finished yet"
    age = clock() - snapshot.timestamp
    if age > max_age:
        return False, f"the last sampling pass was {age:.0f}s ago"
    return True, "ok"


def plan_request_from_query(query: str) -> PlanRequest:
    """The plan request of ``/api/v1/plan``'s query: ``profile``, ``like``, ``kind``,
    ``compare`` and ``view``, as the ``plan`` command's flags of the same names."""
    params = {key: values[-1] for key, values in parse_qs(query).items()}
    unknown = set(params) - {"profile", "like", "kind", "compare", "view"}
    if unknown:
        raise PlanRequestError(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    if "profile" in params and "like" in params:
        raise PlanRequestError("give profile or like, not both")
    kind = params.get("kind")
    if kind is not None and kind not in {str(k) for k in KINDS}:
        raise PlanRequestError(f"kind: {kind!r} is not container or vm")
    view = params.get("view", "both")
    if view not in ("both", "demand", "allocation"):
        raise PlanRequestError(f"view: {view!r} is not demand, allocation or both")
    return PlanRequest(
        profile=parse_profile(params["profile"], option="profile") if "profile" in params else None,
        like=params.get("like"),
        kind=WorkloadKind(kind) if kind else None,
        compare=params.get("compare", "").lower() in ("1", "true", "yes"),
        views=VIEWS if view == "both" else (View(view),),
    )


def _json(start_response: StartResponse, status: str, document: Any) -> list[bytes]:
    body = json.dumps(document, indent=2).encode() + b"\n"
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def make_app(
    exposition: Exposition,
    holder: SnapshotHolder,
    max_age: float,
    plan: LivePlan | None = None,
) -> WSGIApp:
    """The WSGI application routing densityd's paths."""

    def plan_api(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if plan is None:
            return _json(start_response, "404 Not Found", {"error": "planning is off"})
        try:
            document = plan.document(plan_request_from_query(environ.get("QUERY_STRING", "")))
        except (PlanRequestError, QuantityError) as exc:
            return _json(start_response, "400 Bad Request", {"error": str(exc)})
        if document is None:
            return _json(
                start_response, "503 Service Unavailable", {"error": "no pass has finished yet"}
            )
        return _json(start_response, "200 OK", document)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/api/v1/plan":
            return plan_api(environ, start_response)
        if path == "/metrics":
            gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
            body = exposition.body(gzipped=gzipped)
            headers = [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))]
            if gzipped:
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [body]
        if path == "/healthz":
            ok, why = health(holder, max_age)
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "text/plain; charset=utf-8")],
            )
            return [why.encode() + b"\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [_landing_page(holder)]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found\n"]

    return app


class WebServer(HTTPServer):
    """Serves the app on background threads until stopped (``connections.HTTPServer``).

    With ``tls_context``, every connection speaks TLS with the context it returns then.
    """
