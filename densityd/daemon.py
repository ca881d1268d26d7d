"""Wire sources, sampler, scheduler, history, live plan and web server into the running daemon.

The sources and the sampler come from ``collect.build``, as for ``densityd sample``, so that
what the daemon exports and what ``sample`` prints come from the same code.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client.registry import Collector

from densityd import __version__
from densityd.collect.build import SourceSet, build_sampler, build_sources, log_found_sources
from densityd.collect.sampler import SnapshotHolder
from densityd.config import ConfigError, Settings
from densityd.history.recorder import HistoryRecorder
from densityd.history.schema import HISTORY_FILE
from densityd.history.store import HistoryStore
from densityd.plan.live import LivePlan
from densityd.serve.connections import Limits
from densityd.serve.exporter import Exposition
from densityd.serve.web import WebServer, make_app
from densityd.serve.web_config import WebConfigCollector, WebConfigWatcher, exposure_warning

log = logging.getLogger("densityd")


def run_daemon(settings: Settings) -> int:
    """Serve metrics until SIGTERM or SIGINT; return the exit status."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    host, port = settings.listen
    try:
        web_config = (
            WebConfigWatcher(settings.web_config_file) if settings.web_config_file else None
        )
    except ConfigError as exc:
        print(f"densityd: {exc}", file=sys.stderr)
        return 2
    holder = SnapshotHolder()
    recorder = (
        HistoryRecorder(
            lambda: HistoryStore.open(
                settings.state_dir, retention_seconds=settings.retention_seconds
            ),
            settings.state_dir / HISTORY_FILE,
        )
        if settings.history
        else None
    )
    found: list[SourceSet] = []  # filled once the sources are built, after the port is bound
    live_plan = LivePlan(
        settings,
        data_dirs=lambda: found[0].data_dirs() if found else {},
        store=lambda: recorder.store if recorder else None,
    )
    # Listeners run in order: record the pass, plan on it, then render /metrics with both.
    if recorder is not None:
        holder.subscribe(recorder.record)
    holder.subscribe(live_plan.update)
    extra: list[Collector] = [live_plan] if recorder is None else [recorder, live_plan]
    if web_config is not None:
        extra.append(WebConfigCollector(web_config))
    app = make_app(
        Exposition(holder, extra=extra),
        holder,
        max_age=3 * settings.interval + settings.source_timeout,
        plan=live_plan,
    )
    if web_config is not None:
        # bcrypt only with a web config file (its users): most daemons have none.
        from densityd.serve.basic_auth import PasswordChecker, require_basic_auth

        # Half the workers at most wait for bcrypt: the others stay free for scrapes.
        checker = PasswordChecker(max_waiting=max(1, settings.web_workers // 2))
        app = require_basic_auth(app, lambda: web_config.current().users, checker)
    tls = web_config is not None and web_config.current().tls is not None
    # Bind first: a port in use should fail at once, before any backend is touched.
    server = WebServer(
        app,
        host,
        port,
        limits=Limits(
            workers=settings.web_workers,
            max_connections=settings.web_max_connections,
            header_timeout=settings.web_header_timeout,
            body_timeout=settings.web_body_timeout,
            max_request_bytes=settings.web_max_request_bytes,
        ),
        tls_context=web_config.ssl_context if web_config and tls else None,
    )
    scheme = "https" if tls else "http"
    log.info("densityd %s listening on %s://%s:%d/metrics", __version__, scheme, host, server.port)
    warning = exposure_warning(host, web_config.current() if web_config else None)
    if warning:
        log.warning("%s", warning)
    source_set = build_sources(settings)
    found.append(source_set)
    missing = log_found_sources(source_set, settings)
    if recorder is None:
        log.info("history: off (--no-history); plans use the latest passes only")
    sampler = build_sampler(settings, source_set, holder)
    for name, reason in missing.items():
        sampler.mark_down(name, reason)

    scheduler = BackgroundScheduler(timezone=UTC)
    now = datetime.now(UTC)
    scheduler.add_job(
        sampler.run_pass,
        "interval",
        seconds=settings.interval,
        id="sample",
        max_instances=1,
        coalesce=True,
        next_run_time=now,
        misfire_grace_time=max(1, int(settings.interval)),
    )
    scheduler.start()
    server.start()
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        server.stop()
        source_set.close()
        if recorder is not None:
            recorder.close()
    log.info("stopped")
    return 0
