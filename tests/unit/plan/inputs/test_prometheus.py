"""The Prometheus API client: responses parsed, errors named, auth and TLS on the wire.

The parser is checked against recorded API answers; the client against a local HTTP(S)
server that records what it was sent, so form encoding, headers and TLS are real.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import pytest

from densityd.plan.inputs.prometheus import (
    EXIT_BAD_INPUT,
    EXIT_UNREACHABLE,
    PrometheusClient,
    PrometheusConfigError,
    PrometheusQueryError,
    PrometheusUnreachable,
    connection,
    parse_matrix,
    parse_response,
    parse_vector,
)
from tests.integration.backends import free_port

# Recorded from Prometheus 2.42 (densityd_plan_capacity_bytes and a range of rate()).
VECTOR = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [
            {
                "metric": {
                    "__name__": "densityd_plan_capacity_bytes",
                    "instance": "127.0.0.1:19101",
                    "job": "densityd",
                    "kind": "container",
                    "resource": "memory",
                },
                "value": [1795966730.183, "2147483648"],
            },
            {"metric": {"instance": "b"}, "value": [1795966730.183, "NaN"]},
            {"metric": {"instance": "c"}, "value": [1795966730.183, "+Inf"]},
        ],
    },
}
MATRIX = {
    "status": "success",
    "data": {
        "resultType": "matrix",
        "result": [
            {
                "metric": {"id": "abc", "instance": "a:9847", "kind": "container"},
                "values": [[1795966700, "0.5"], [1795966705, "NaN"], [1795966710, "1.25"]],
            }
        ],
    },
}
BAD_DATA = {
    "status": "error",
    "errorType": "bad_data",
    "error": 'invalid parameter "query": 1:216: parse error: unexpected "}" in label matching',
}


def test_a_vector_parses_and_non_finite_values_are_left_out() -> None:
    data = parse_response(200, json.dumps(VECTOR), server="http://p", query="q")
    samples = parse_vector(data)
    assert len(samples) == 1
    assert samples[0].labels["resource"] == "memory"
    assert samples[0].value == 2147483648.0
    assert samples[0].timestamp == 1795966730.183


def test_a_matrix_parses_into_points_in_order() -> None:
    (series,) = parse_matrix(parse_response(200, json.dumps(MATRIX), server="s", query="q"))
    assert series.labels == {"id": "abc", "instance": "a:9847", "kind": "container"}
    assert series.points == ((1795966700.0, 0.5), (1795966710.0, 1.25))


def test_the_wrong_result_type_is_an_error() -> None:
    with pytest.raises(PrometheusQueryError, match="expected a matrix result, got 'vector'"):
        parse_matrix(VECTOR["data"], "up")


def test_an_error_answer_carries_prometheus_error_and_the_query() -> None:
    with pytest.raises(PrometheusQueryError) as caught:
        parse_response(400, json.dumps(BAD_DATA), server="http://p:9090", query="up{job=}")
    error = caught.value
    message = str(error)
    assert "http://p:9090" in message and "HTTP 400, bad_data" in message
    assert "parse error" in message and "up{job=}" in message
    assert error.exit_code == EXIT_BAD_INPUT and error.error_type == "bad_data"


def test_a_server_error_exits_1_and_a_non_json_body_is_quoted() -> None:
    with pytest.raises(PrometheusQueryError) as caught:
        parse_response(502, "<html>\n<h1>Bad   Gateway</h1></html>", server="http://p", query="q")
    assert "HTTP 502" in str(caught.value) and "<h1>Bad Gateway</h1>" in str(caught.value)
    assert caught.value.exit_code == EXIT_UNREACHABLE
    with pytest.raises(PrometheusQueryError, match="base URL"):
        parse_response(404, "404 page not found", server="http://p/x", query="q")
    with pytest.raises(PrometheusQueryError, match="is not the Prometheus HTTP API"):
        parse_response(200, "<html>login</html>", server="http://p", query="q")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"url": "prom:9090"}, "--prometheus"),
        ({"bearer_token_file": "/dev/null", "username": "u"}, "not both"),
        ({"password_file": "/dev/null"}, "--prometheus-username"),
        ({"timeout": 0.0}, "--prometheus-timeout"),
        ({"ca_file": "/nonexistent/ca.pem"}, "--prometheus-ca-file"),
        ({"bearer_token_file": "/nonexistent/token"}, "--prometheus-bearer-token-file"),
    ],
)
def test_bad_connection_flags_name_the_flag(kwargs: dict[str, Any], named: str) -> None:
    url = kwargs.pop("url", "http://prom:9090")
    with pytest.raises(PrometheusConfigError, match=named) as caught:
        connection(url, **kwargs)
    assert caught.value.exit_code == EXIT_BAD_INPUT


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("\n")
    with pytest.raises(PrometheusConfigError, match="empty"):
        connection("http://p", bearer_token_file=str(token))


# -- against a local server --------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """Answers every POST with the recorded vector (or matrix) and keeps what it was sent."""

    seen: ClassVar[list[dict[str, Any]]] = []
    delay: ClassVar[float] = 0.0

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        Recorder.seen.append(
            {
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "authorization": self.headers.get("Authorization"),
                "form": {k: v[-1] for k, v in parse_qs(body).items()},
            }
        )
        if Recorder.delay:
            threading.Event().wait(Recorder.delay)
        answer = MATRIX if self.path.endswith("query_range") else VECTOR
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(context: ssl.SSLContext | None = None) -> Iterator[str]:
    Recorder.seen = []
    Recorder.delay = 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    scheme = "http"
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server() -> Iterator[str]:
    yield from _serve()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    yield from _serve(context)


def test_queries_are_posted_as_forms(server: str) -> None:
    with PrometheusClient(connection(server + "/")) as client:
        samples = client.query('up{job="x"}', at=1795966730.5)
        series = client.query_range("rate(x[1m])", start=100.0, end=200.0, step=60.0)
    assert [s.value for s in samples] == [2147483648.0]
    assert series[0].points[-1] == (1795966710.0, 1.25)
    instant, ranged = Recorder.seen
    assert instant["path"] == "/api/v1/query"
    assert instant["content_type"] == "application/x-www-form-urlencoded"
    assert instant["form"] == {"query": 'up{job="x"}', "time": "1795966730.500"}
    assert ranged["path"] == "/api/v1/query_range"
    assert ranged["form"] == {
        "query": "rate(x[1m])",
        "start": "100.000",
        "end": "200.000",
        "step": "60.000",
    }
    assert instant["authorization"] is None


def test_a_bearer_token_is_sent(server: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with PrometheusClient(connection(server, bearer_token_file=str(token))) as client:
        client.query("up", at=0)
    assert Recorder.seen[0]["authorization"] == "Bearer s3cret"


def test_basic_auth_is_sent(server: str, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("hunter2")
    conn = connection(server, username="ops", password_file=str(password))
    assert "hunter2" not in repr(conn)
    with PrometheusClient(conn) as client:
        client.query("up", at=0)
    expected = base64.b64encode(b"ops:hunter2").decode()
    assert Recorder.seen[0]["authorization"] == f"Basic {expected}"


def test_a_slow_server_times_out_naming_the_flag(server: str) -> None:
    Recorder.delay = 1.0
    with (
        PrometheusClient(connection(server, timeout=0.2)) as client,
        pytest.raises(PrometheusUnreachable, match="--prometheus-timeout") as caught,
    ):
        client.query("up", at=0)
    assert caught.value.exit_code == EXIT_UNREACHABLE


def test_an_unreachable_server_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        PrometheusClient(connection(url)) as client,
        pytest.raises(PrometheusUnreachable) as caught,
    ):
        client.query("up", at=0)
    assert str(caught.value) == f"cannot reach Prometheus at {url}: Connection refused"
    assert caught.value.exit_code == EXIT_UNREACHABLE


def test_tls_is_verified_against_the_ca_file(
    tls_server: str, certificate: tuple[Path, Path]
) -> None:
    with (
        PrometheusClient(connection(tls_server)) as client,
        pytest.raises(PrometheusUnreachable, match=r"TLS failed.*--prometheus-ca-file"),
    ):
        client.query("up", at=0)
    with PrometheusClient(connection(tls_server, ca_file=str(certificate[0]))) as client:
        assert client.query("up", at=0)


def test_tls_verification_can_be_skipped(tls_server: str) -> None:
    with PrometheusClient(connection(tls_server, insecure=True)) as client:
        assert client.query("up", at=0)
