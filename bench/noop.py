"""The bare function bare RQ runs in bench/job_overhead.py."""


def noop() -> dict[str, str]:
    return {"pong": "ok"}
