"""The newsdesk HTTP API (Flask)."""

from service.app import create_app

__all__ = ["create_app"]
