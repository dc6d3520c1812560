"""Imported at start-up by Python processes that the tests launch under `--clock`
(tests/moved_clock.py puts this folder on PYTHONPATH): moves their clock to the
test run's moved clock."""

import os

if os.environ.get("YG_TEST_CLOCK"):
    import time_machine

    time_machine.travel(float(os.environ["YG_TEST_CLOCK"]), tick=True).start()
