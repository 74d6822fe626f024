"""Pure analysis code: no Flask, no Celery, no Redis."""
