"""Running the same work in two places at the same moment (two workers racing)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection


def run_at_once(*calls: Callable[[], object]) -> list[object]:
    """Run each call in its own thread, released together; each thread has its own
    database connection (closed at the end). Returns each call's result, or the exception
    it raised, in the order of `calls`. Needs `django_db(transaction=True)`."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            outcomes[index] = call()
        except BaseException as exc:  # returned to the test, which decides
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def run_twice_at_once(call: Callable[[], object]) -> list[object]:
    """`call` twice at the same moment; fails the test if either raised."""
    outcomes = run_at_once(call, call)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, errors
    return outcomes
