"""Job handlers: one module per seed group. Each job function turns a queue message into
one domain call (see jobs/registry.py for the table of jobs)."""
