"""The operator's admin in a real browser (issue 22 point 6).

The site runs as deployed: `collectstatic` into a STATIC_ROOT of its own, then gunicorn
with DEBUG=0 on a loopback port of its own, against the test database and Redis. Headless
Chromium (Debian `chromium` + `chromium-driver`, installed by scripts/setup.sh; nothing is
downloaded at run time) logs in as staff, opens the django-rq dashboard, the cron page and
an asset's page, and triggers "run now" and an asset rescan. Each page is checked from
what the browser rendered: the admin's stylesheet applied (a computed style) and the data
there. Screenshots are kept for a person to look at; the path is printed.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from jobs.api import enqueue
from jobs.cron_runs import run_ended, run_started
from jobs.schedule import SCHEDULE
from jobs.scheduling import reconcile

from .conftest import ROOT, SIMPLE, manage, wait_until, worker_env
from .license_factories import make_asset, make_brand, make_creator, make_license, make_project
from .smtp_server import free_port

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs the Debian packages chromium and chromium-driver (scripts/setup.sh installs them)",
    ),
]

# Django admin's header colour (--header-bg: #417690 in admin/css/base.css, light theme).
# Without the stylesheet the header has no background: rgba(0, 0, 0, 0).
ADMIN_HEADER_BG = "rgb(65, 118, 144)"
PASSWORD = secrets.token_urlsafe(12)


@pytest.fixture(scope="module")
def site(django_db_setup, tmp_path_factory) -> Iterator[str]:
    """The project as `make run` / the Procfile serve it: collectstatic, then gunicorn
    with DEBUG=0. Returns its base URL."""
    workdir = tmp_path_factory.mktemp("deployed-site")
    env = {
        **worker_env(),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "STATIC_ROOT": str(workdir / "static"),
        "ALLOWED_HOSTS": "127.0.0.1",
        "MEDIA_ROOT": str(workdir / "media"),
    }
    collected = manage("collectstatic", "--no-input", "-v", "0", env=env, timeout=300)
    assert collected.returncode == 0, collected.stderr[-3000:]
    port = free_port()
    log_path = workdir / "gunicorn.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "yesgoddess.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/admin/login/", server, log_path), timeout=60, what="gunicorn to answer")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _answers(url: str, server: subprocess.Popen, log_path: Path) -> bool:
    if server.poll() is not None:
        raise AssertionError(f"gunicorn exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1600,1000",
    ):
        options.add_argument(argument)
    # The Debian driver, named explicitly: Selenium Manager would try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    # Not under pytest's tmp_path: pytest keeps only its last three runs' folders, and a
    # person should find these after the suite has moved on.
    return Path(tempfile.mkdtemp(prefix="yesgoddess-admin-screenshots-"))


@pytest.fixture(scope="module", autouse=True)
def say_where_screenshots_are(screenshots: Path, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    # Past pytest's capture, so that a passing run shows it too.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nadmin screenshots: {screenshots}", flush=True)


@pytest.fixture
def admin(site: str, browser: WebDriver, screenshots: Path) -> Callable[..., WebDriver]:
    """Log in as a staff user; returns `open(path, shot=None)` that loads a page, checks
    it is styled by the admin's stylesheet, and saves a screenshot named `shot`."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("operator", "operator@example.test", PASSWORD)
    browser.delete_all_cookies()
    browser.get(f"{site}/admin/login/")
    assert header_background(browser) == ADMIN_HEADER_BG, "the login page is unstyled"
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_until(lambda: "/admin/login/" not in browser.current_url, timeout=20, what="the login")

    def open_page(path: str, shot: str | None = None) -> WebDriver:
        browser.get(f"{site}{path}")
        assert "/admin/login/" not in browser.current_url, f"{path} sent the staff user to the login page"
        check_styled(browser)
        if shot:
            save(browser, screenshots, shot)
        return browser

    return open_page


def header_background(browser: WebDriver) -> str:
    return browser.execute_script("return getComputedStyle(document.querySelector('#header')).backgroundColor")


def check_styled(browser: WebDriver) -> None:
    assert header_background(browser) == ADMIN_HEADER_BG, f"{browser.current_url} is unstyled"
    # base.css itself arrived (served by WhiteNoise) and was parsed into rules.
    rules = browser.execute_script(
        "return Array.from(document.styleSheets)"
        ".filter(s => s.href && s.href.includes('/static/admin/css/base'))"
        ".map(s => s.cssRules.length)"
    )
    assert rules and rules[0] > 100, f"admin/css/base.css not loaded on {browser.current_url}: {rules}"


def save(browser: WebDriver, folder: Path, name: str) -> None:
    # The whole page, not only the window: tables run long.
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1600, min(max(height, 1000), 6000))
    browser.save_screenshot(str(folder / f"{name}.png"))
    browser.set_window_size(1600, 1000)


def text(browser: WebDriver, selector: str = "body") -> str:
    return browser.find_element(By.CSS_SELECTOR, selector).text


# --- the pages --------------------------------------------------------------------------


def test_admin_index_is_styled_and_links_the_domain_and_the_cron_page(admin):
    page = admin("/admin/", shot="01-admin-index")
    links = {urlparse(a.get_attribute("href")).path for a in page.find_elements(By.CSS_SELECTOR, "#content-main a")}
    assert {"/admin/jobs/cron/", "/admin/assets/ipasset/", "/admin/django_rq/dashboard/"} <= links
    assert "Cron table" in text(page, "#content-main")


def test_django_rq_dashboard_shows_the_queues_and_their_jobs(admin):
    enqueue("ping")  # one job waiting on `default`
    page = admin("/admin/django_rq/dashboard/", shot="02-django-rq-dashboard")
    queued = {
        cells[0].text.strip(): cells[1].text.strip()
        for row in page.find_elements(By.CSS_SELECTOR, "#results_list tbody tr")
        if len(cells := row.find_elements(By.TAG_NAME, "th")) > 1
    }
    assert set(settings.JOB_QUEUES) <= set(queued)
    assert queued["default"] == "1" and queued["critical"] == "0"


def test_cron_page_lists_the_table_and_run_now_queues_a_recorded_run(admin, run_worker):
    from django.utils import timezone

    reconcile()  # what the release step's schedule_jobs does
    run_started("notification-cleanup", "job-earlier", timezone.now())
    run_ended("notification-cleanup", "job-earlier", "ok", 2300, timezone.now())
    page = admin("/admin/jobs/cron/", shot="03-cron-table")
    rows = page.find_elements(By.CSS_SELECTOR, "#cron-table tbody tr")
    assert [row.get_attribute("data-entry") for row in rows] == [entry.id for entry in SCHEDULE]
    assert "not in rq-scheduler" not in text(page, "#content-main")
    earlier = page.find_element(By.ID, "cron-notification-cleanup")
    assert "ok" in earlier.text and "2.3 s" in earlier.text
    token = page.find_element(By.ID, "cron-token-cleanup")
    assert "never ran" in token.text and "0 * * * *" in token.text

    token.find_element(By.CSS_SELECTOR, "input.run-now").click()
    wait_until(lambda: page.find_elements(By.CSS_SELECTOR, "ul.messagelist li.success"), timeout=20, what="message")
    check_styled(page)
    assert "Cron entry token-cleanup: queued token-cleanup as job" in text(page, "ul.messagelist")

    run_worker("scheduled", worker_class=SIMPLE)
    page = admin("/admin/jobs/cron/", shot="04-cron-table-after-run-now")
    ran = page.find_element(By.ID, "cron-token-cleanup")
    assert "never ran" not in ran.text and " ok " in f" {ran.text} "


def test_asset_page_shows_its_owner_licences_and_the_rescan_it_was_given(admin):
    creator = make_creator("Ada Lens")
    brand = make_brand("Northwind")
    asset = make_asset((creator, 10_000), title="Harbour at dawn", project=make_project(brand))
    make_license(brand=brand, asset=asset)

    page = admin("/admin/assets/ipasset/", shot="05-asset-list")
    assert "Harbour at dawn" in text(page, "#result_list")
    page.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{asset.pk}']").click()
    Select(page.find_element(By.NAME, "action")).select_by_value("rescan")
    page.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    wait_until(lambda: page.find_elements(By.CSS_SELECTOR, "ul.messagelist li"), timeout=20, what="message")
    assert f"rescan queued for asset(s) {asset.pk}" in text(page, "ul.messagelist").lower()

    page = admin(f"/admin/assets/ipasset/{asset.pk}/change/", shot="06-asset-page")
    assert page.find_element(By.NAME, "title").get_attribute("value") == "Harbour at dawn"
    body = text(page, "#content-main")
    assert "Ada Lens" in body and "Spring campaign" in body and "Northwind" in body, body
    jobs = [
        [cell.text.strip() for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in page.find_elements(By.CSS_SELECTOR, "table.job-list tbody tr")
    ]
    assert [job[:2] for job in jobs] == [["asset-virus-scan", "queued"]]
