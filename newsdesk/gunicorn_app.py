"""Run the API under gunicorn from Python, with the settings `newsdesk api` was given."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from newsdesk.settings import API_GRACEFUL_TIMEOUT, Settings
from service.app import create_app


def log_config(settings: Settings) -> dict[str, Any]:
    """gunicorn's own messages through the application's one-line formatter.

    Requests are logged by the app itself (with the article id bound), so gunicorn's access log is off.
    """
    formatter = "JsonFormatter" if settings.log_format == "json" else "KeyValueFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": f"newsdesk.logs.{formatter}"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": settings.log_level, "propagate": False}
        },
        "root": {"handlers": ["stderr"], "level": settings.log_level},
    }


class AppLogsRequests(Logger):  # type: ignore[misc]
    """gunicorn's logger without its access log, which the app's own request line replaces.

    gunicorn builds every request's access-log fields even when no handler will print them (whenever a
    logging configuration is given, as here); that alone cost a tenth of a small request's CPU.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # a setting of a newer gunicorn than the one installed is moot
                self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app(self.settings)


def serve(settings: Settings, *, host: str, port: int, workers: int, threads: int) -> None:
    _Gunicorn(
        settings,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "gthread",
            "threads": threads,
            "timeout": 30,
            "graceful_timeout": API_GRACEFUL_TIMEOUT,
            "logconfig_dict": log_config(settings),
            "logger_class": AppLogsRequests,
            # Each worker builds its own app (and Redis connections) after the fork.
            "preload_app": False,
            # gunicorn 25+ opens a control socket at $HOME/.gunicorn/gunicorn.ctl, one path for every
            # `newsdesk api` of the user on the host; nothing here uses it.
            "control_socket_disable": True,
        },
    ).run()
