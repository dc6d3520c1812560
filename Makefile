# Two commands on a fresh machine: `make run` runs the system, `make test` runs the tests.
SHELL := /bin/bash
export DEBUG ?= 1
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup services run test bench lint

setup:
	scripts/setup.sh

services: setup
	scripts/services.sh

run: services
	python manage.py migrate --no-input
	python manage.py schedule_jobs
	python manage.py collectstatic --no-input -v 0
	honcho start --port 8000 web worker media scheduler

# `make test` runs the suite, then again (less the slow worker tests) with each test
# starting at a date where date arithmetic breaks: the last minute of a year, the last
# minute of a leap day, midnight on the 1st of a month that is a Monday (tests/moved_clock.py).
# CLOCKS= (empty) skips the second part.
CLOCKS ?= 2027-12-31T23:59:00 2028-02-29T23:59:00 2027-11-01T00:00:00
test: services
	python -m pytest $(PYTEST_ARGS)
	for clock in $(CLOCKS); do python -m pytest -q -m "not slow" --clock=$$clock $(PYTEST_ARGS) || exit 1; done

bench: services
	python manage.py migrate --no-input -v 0
	for script in bench/*.py; do python "$$script" || exit 1; done

lint: setup
	ruff check . && ruff format --check .
