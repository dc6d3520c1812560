"""The README stays true: its configuration table and cron table match the code."""

from __future__ import annotations

import re

from jobs.registry import get_spec
from jobs.schedule import SCHEDULE

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_environment_variable_read_by_settings_is_documented():
    source = (ROOT / "yesgoddess" / "settings.py").read_text()
    names = set(re.findall(r'env_[a-z]+\("([A-Z_]+)"', source)) | set(
        re.findall(r'os\.environ\.get\("([A-Z_]+)"', source)
    )
    assert names, "found no variables: the pattern is stale"
    missing = sorted(name for name in names if f"`{name}`" not in README)
    assert missing == []


def test_readme_cron_table_matches_jobs_schedule():
    block = README.split("<!-- cron-table:start -->")[1].split("<!-- cron-table:end -->")[0]
    rows = [line for line in block.strip().splitlines()[2:]]
    documented = [tuple(cell.strip().strip("`") for cell in row.strip("|").split("|"))[:4] for row in rows]
    expected = [(e.id, e.cron, e.job, get_spec(e.job).queue) for e in SCHEDULE]
    assert documented == expected


def test_ci_runs_the_readme_test_command():
    assert "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()
