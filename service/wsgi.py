"""WSGI entry point for gunicorn: `gunicorn -k newsdesk.gunicorn_app.ProblemWorker service.wsgi:app`.

Without that worker class (threads with `--threads`), the requests gunicorn refuses itself (a request
line or header over its limits, a malformed one) get gunicorn's HTML page instead of problem+json;
`newsdesk api` uses it.
"""

from newsdesk import logs
from newsdesk.settings import Settings
from service.app import create_app

settings = Settings.from_env()
logs.configure(settings.log_level, settings.log_format)
app = create_app(settings)
