"""The operator API (token and session auth, Idempotency-Key) and the admin panel."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from jobs.api import get_queue, redis_connection
from jobs.rq_classes import JSONJob
from yesgoddess.accounts.models import ApiToken
from yesgoddess.core.models import IdempotencyKey

from .conftest import manage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff():
    return get_user_model().objects.create_superuser("ops", "ops@example.test", "pw")


@pytest.fixture
def member():
    return get_user_model().objects.create_user("creator", "c@example.test", "pw")


def bearer(user) -> dict[str, str]:
    _, raw = ApiToken.objects.issue(user)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def post(client: Client, body: dict, **headers):
    return client.post("/api/jobs/", json.dumps(body), content_type="application/json", **headers)


def test_create_api_token_prints_only_the_token_and_stores_its_hash(staff):
    result = manage("create_api_token", "ops")
    assert result.returncode == 0, result.stderr
    raw = result.stdout.strip()
    assert raw.startswith("yg_") and "\n" not in raw
    token = ApiToken.objects.get(user=staff)
    assert token.key_hash != raw and raw not in token.key_hash
    assert ApiToken.objects.user_for(raw) == staff


def test_create_api_token_for_an_unknown_user_fails_clearly():
    result = manage("create_api_token", "nobody")
    assert result.returncode != 0 and "No user named 'nobody'" in result.stderr


def test_staff_enqueues_with_a_token_and_follows_the_job(staff, run_worker):
    client = Client()
    headers = bearer(staff)
    response = post(client, {"name": "ping"}, **headers)
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    assert get_queue("default").get_job_ids() == [job_id]
    assert client.get(f"/api/jobs/{job_id}/", **headers).json()["status"] == "queued"
    run_worker("default")
    status = client.get(f"/api/jobs/{job_id}/", **headers).json()
    assert status["status"] == "finished" and status["result"] == {"pong": "ok"}


def test_requests_without_valid_credentials_are_refused(staff):
    client = Client()
    assert post(client, {"name": "ping"}).status_code == 401
    assert post(client, {"name": "ping"}, HTTP_AUTHORIZATION="Bearer yg_wrong").status_code == 401
    assert post(client, {"name": "ping"}, HTTP_AUTHORIZATION="Basic abc").status_code == 401
    token, raw = ApiToken.objects.issue(staff)
    ApiToken.objects.filter(pk=token.pk).update(revoked_at="2026-01-01T00:00:00Z")
    assert post(client, {"name": "ping"}, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert get_queue("default").get_job_ids() == []


def test_a_non_staff_user_cannot_see_or_start_jobs(member):
    client = Client()
    headers = bearer(member)
    assert post(client, {"name": "ping"}, **headers).status_code == 404
    assert client.get("/api/jobs/whatever/", **headers).status_code == 404
    assert get_queue("default").get_job_ids() == []


def test_bad_requests_get_a_clear_error(staff):
    client, headers = Client(), bearer(staff)
    assert "Unknown job" in post(client, {"name": "nope"}, **headers).json()["error"]
    response = post(client, {"name": "ping", "kwargs": [1]}, **headers)
    assert response.status_code == 400 and "Send {'name'" in response.json()["error"]
    response = client.post("/api/jobs/", "{not json", content_type="application/json", **headers)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    response = post(client, {"name": "ping", "kwargs": {"colour": "red"}}, **headers)
    assert response.status_code == 400 and "colour" in response.json()["error"]
    assert client.get("/api/jobs/", **headers).status_code == 405


def test_session_auth_works_and_enforces_csrf(staff):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert post(client, {"name": "ping"}).status_code == 403
    client.get("/admin/")  # its logout form sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    assert post(client, {"name": "ping"}, HTTP_X_CSRFTOKEN=token).status_code == 202


def test_same_idempotency_key_and_body_replays_the_first_response(staff):
    client, headers = Client(), bearer(staff)
    first = post(client, {"name": "ping"}, HTTP_IDEMPOTENCY_KEY="abc", **headers)
    second = post(client, {"name": "ping"}, HTTP_IDEMPOTENCY_KEY="abc", **headers)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert get_queue("default").get_job_ids() == [first.json()["job_id"]]
    key = IdempotencyKey.objects.get(key="abc")
    assert key.processed and key.entity_id == first.json()["job_id"] and key.response_status == 202


def test_same_idempotency_key_with_another_body_is_a_422(staff):
    client, headers = Client(), bearer(staff)
    post(client, {"name": "ping"}, HTTP_IDEMPOTENCY_KEY="abc", **headers)
    other = post(client, {"name": "idempotency-cleanup"}, HTTP_IDEMPOTENCY_KEY="abc", **headers)
    assert other.status_code == 422
    assert len(get_queue("default").get_job_ids()) + len(get_queue("scheduled").get_job_ids()) == 1


def test_idempotency_keys_are_per_user(staff):
    other_staff = get_user_model().objects.create_superuser("ops2", "o2@example.test", "pw")
    client = Client()
    a = post(client, {"name": "ping"}, HTTP_IDEMPOTENCY_KEY="shared", **bearer(staff))
    b = post(client, {"name": "ping"}, HTTP_IDEMPOTENCY_KEY="shared", **bearer(other_staff))
    assert a.json()["job_id"] != b.json()["job_id"]


def test_a_refused_request_does_not_burn_the_key(staff):
    client, headers = Client(), bearer(staff)
    assert post(client, {"name": "nope"}, HTTP_IDEMPOTENCY_KEY="k", **headers).status_code == 400
    # a 4xx answer is replayed too (same request, same answer) ...
    assert post(client, {"name": "nope"}, HTTP_IDEMPOTENCY_KEY="k", **headers).status_code == 400
    assert get_queue("default").get_job_ids() == []


ADMIN_PAGES = [
    "/admin/",
    "/admin/django_rq/dashboard/",
    "/admin/django_rq/dashboard/queues/0/",
    "/admin/django_rq/dashboard/queues/0/failed/",
    "/admin/django_rq/dashboard/queues/0/scheduled/",
    "/admin/django_rq/dashboard/workers/0/",
    "/admin/django_rq/dashboard/schedulers/0/",
]


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_admin_panel_pages_answer_staff(staff, page):
    client = Client()
    client.force_login(staff)
    assert client.get(page).status_code == 200


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_admin_panel_refuses_anonymous_and_non_staff(member, page):
    anonymous = Client().get(page)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    client = Client()
    client.force_login(member)
    assert client.get(page).status_code == 302


def test_admin_shows_cron_entries_with_their_next_run_and_job_details(staff, run_worker):
    call_command("schedule_jobs", stdout=None)
    client = Client()
    client.force_login(staff)
    from jobs.registry import QUEUES

    index = list(QUEUES).index("scheduled")
    page = client.get(f"/admin/django_rq/dashboard/schedulers/{index}/").content.decode()
    assert "yg-cron-idempotency-cleanup" in page and "yg-cron-notification-cleanup" in page
    job_id = post(client, {"name": "ping"}, **bearer(staff)).json()["job_id"]
    run_worker("default")
    detail = client.get(f"/admin/django_rq/dashboard/queues/{list(QUEUES).index('default')}/{job_id}/")
    assert detail.status_code == 200 and job_id in detail.content.decode()
    assert JSONJob.fetch(job_id, connection=redis_connection()).get_status() == "finished"


def test_a_failed_job_shows_its_error_in_the_status(staff, run_worker):
    client, headers = Client(), bearer(staff)
    job_id = post(client, {"name": "test-reject-input", "kwargs": {"user_id": 424242}}, **headers).json()["job_id"]
    run_worker("default")
    status = client.get(f"/api/jobs/{job_id}/", **headers).json()
    assert status["status"] == "failed" and status["result"] is None
    assert status["error"] == "jobs.errors.JobInputError: user 424242 does not exist"
