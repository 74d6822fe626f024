"""Celery app, tasks, and the analyses they run."""
