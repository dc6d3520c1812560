"""Loaded with `-p tests.pytest_env` (pyproject addopts), before pytest-django reads the
settings: gives the test run its own Redis database and the test-only jobs."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("EXTRA_JOB_MODULES", "tests.support_jobs")
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ.setdefault("LOG_LEVEL", "INFO")
# Tests send as fast as they can; tests of the rate limit set it themselves.
os.environ.setdefault("EMAIL_RATE_LIMIT_PER_SECOND", "0")
