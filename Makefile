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

test: services
	python -m pytest $(PYTEST_ARGS)

bench: services
	python manage.py migrate --no-input -v 0
	for script in bench/*.py; do python "$$script" || exit 1; done

lint: setup
	ruff check . && ruff format --check .
