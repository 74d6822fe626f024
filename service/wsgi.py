"""WSGI entry point for gunicorn: `gunicorn service.wsgi:app`."""

from newsdesk import logs
from newsdesk.settings import Settings
from service.app import create_app

settings = Settings.from_env()
logs.configure(settings.log_level, settings.log_format)
app = create_app(settings)
