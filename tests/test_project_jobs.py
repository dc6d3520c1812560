"""Project jobs: creator matching (mapping, preferences, once-only, fan-out, bad input,
status changes that start it) and the expiry check (boundary, archive once, notices)."""

from __future__ import annotations

import json
import smtplib
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client

from jobs.api import get_queue, redis_connection
from jobs.handlers.projects import match_project_creators
from jobs.rq_classes import JSONJob
from yesgoddess.analytics.models import Event
from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.models import AuditEvent
from yesgoddess.creators.models import SPECIALTIES, Creator
from yesgoddess.licensing.expiry import expire_due_licenses
from yesgoddess.notifications.models import Notification, NotificationPreference
from yesgoddess.notifications.services import render_email
from yesgoddess.projects.expiry import archive_email_context, expire_projects
from yesgoddess.projects.matching import budget_range, match_creators, match_email_context
from yesgoddess.projects.models import MatchEmail, Project, ProjectMatch, ProjectStatus
from yesgoddess.projects.services import (
    ALLOWED_TRANSITIONS,
    ASSET_TYPE_SPECIALTIES,
    SPECIALTY_ASSET_TYPE,
    InvalidProjectTransition,
    asset_types_for,
    change_status,
    specialties_for,
    transition_projects,
)

from .concurrency import run_twice_at_once
from .email_backends import FlakyBackend, use_flaky_backend
from .license_factories import make_brand, make_creator, make_license, make_project, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def creator(*specialties: str, status: str = "approved", email: str | None = None, **fields) -> Creator:
    c = make_creator()
    Creator.objects.filter(pk=c.pk).update(specialties=list(specialties), verification_status=status, **fields)
    if email is not None:
        c.user.email = email
        c.user.save(update_fields=["email"])
    c.refresh_from_db()
    return c


def active_project(*asset_types: str, **fields) -> Project:
    brand = fields.pop("brand", None) or make_brand("Acme")
    return make_project(
        brand,
        name=fields.pop("name", "Spring campaign"),
        status=fields.pop("status", ProjectStatus.ACTIVE),
        requirements=fields.pop("requirements", {"assetTypes": list(asset_types)}),
        **fields,
    )


def to(address: str) -> list[str]:
    return [m.subject for m in mail.outbox if address in m.to]


# --- mapping ----------------------------------------------------------------------------


def test_specialty_mapping_both_ways():
    assert ASSET_TYPE_SPECIALTIES == {
        "image": ("photography", "illustration", "graphic-design", "3d-design", "art-direction"),
        "video": ("videography", "motion-graphics", "animation"),
        "audio": ("music-composition", "sound-design"),
        "document": ("copywriting", "brand-strategy"),
    }
    # Every specialty of the vocabulary belongs to exactly one asset type.
    assert sorted(SPECIALTY_ASSET_TYPE) == sorted(SPECIALTIES)
    for asset_type, specialties in ASSET_TYPE_SPECIALTIES.items():
        assert asset_types_for(specialties) == [asset_type]
        assert specialties_for([asset_type]) == list(specialties)
    for specialty in SPECIALTIES:
        assert specialty in specialties_for(asset_types_for([specialty]))
    assert asset_types_for(["unknown"]) == [] and specialties_for(["hologram"]) == []


@pytest.mark.parametrize("asset_type", sorted(ASSET_TYPE_SPECIALTIES))
def test_project_matches_exactly_the_creators_of_its_asset_types_specialties(asset_type):
    by_specialty = {s: creator(s) for s in SPECIALTIES}
    project = active_project(asset_type.upper())  # case does not matter
    result = match_project_creators(project_id=project.pk)
    matched = set(ProjectMatch.objects.filter(project=project).values_list("creator_id", flat=True))
    assert matched == {by_specialty[s].pk for s in ASSET_TYPE_SPECIALTIES[asset_type]}
    assert result["matched"] == len(matched)


def test_only_approved_live_creators_with_an_overlapping_specialty_match():
    fits = creator("photography", "copywriting")
    creator("photography", status="pending")
    creator("photography", status="rejected")
    creator("photography", deleted_at=NOW)
    creator("music-composition")
    creator()  # no specialties at all
    project = active_project("image", "video")
    match_project_creators(project_id=project.pk)
    match = ProjectMatch.objects.get(project=project)
    assert match.creator_id == fits.pk and match.matched_specialties == ["photography"]


# --- notifications and emails ----------------------------------------------------------


def test_match_notifies_in_app_and_emails_only_immediate_creators():
    immediate = creator("photography", email="now@example.com")
    daily = creator("photography", email="daily@example.com")
    weekly = creator("illustration", email="weekly@example.com")
    off = creator("3d-design", email="off@example.com")
    for c, frequency in ((daily, "DAILY"), (weekly, "WEEKLY"), (off, "OFF")):
        NotificationPreference.objects.create(user=c.user, type="PROJECT", email_frequency=frequency)
    project = active_project("image", description="Spring looks", budget_cents=1_250_000)

    result = match_project_creators(project_id=project.pk)

    assert result["matched"] == 4 and result["notified"] == 4 and result["emails_sent"] == 1
    assert result["email_digest"] == 2 and result["email_off"] == 1
    assert to("now@example.com") == ["New Project Opportunity: Spring campaign"]
    assert len(mail.outbox) == 1
    notes = Notification.objects.filter(type="PROJECT")
    assert {n.user_id for n in notes} == {c.user_id for c in (immediate, daily, weekly, off)}
    note = notes.get(user=immediate.user)
    assert note.title == "New Project Match" and note.priority == "MEDIUM"
    assert note.message == "Acme has a new project that matches your specialties: Spring campaign"
    assert note.action_url == f"/projects/{project.pk}"
    assert note.metadata == {"projectId": project.pk, "brandId": project.brand_id, "matchType": "specialty"}
    # Daily/weekly creators get the match in their notification digest, the others never by email.
    routes = {n.user_id: n.email_status for n in notes}
    assert routes == {immediate.user_id: "NONE", daily.user_id: "DIGEST", weekly.user_id: "DIGEST", off.user_id: "NONE"}
    statuses = dict(ProjectMatch.objects.values_list("creator_id", "email_status"))
    assert statuses == {
        immediate.pk: MatchEmail.SENT,
        daily.pk: MatchEmail.DIGEST,
        weekly.pk: MatchEmail.DIGEST,
        off.pk: MatchEmail.OFF,
    }
    body = mail.outbox[0].body
    assert "$12,500" in body and "Spring looks" in body and f"/projects/{project.pk}" in body
    event = Event.objects.get(event_type="project.creators_matched")
    assert event.source == "system" and event.project_id == project.pk and event.brand_id == project.brand_id
    assert event.props_json == {
        "creatorsMatched": 4,
        "notificationsSent": 4,
        "emailsSent": 1,
        "requiredAssetTypes": ["image"],
    }


def test_second_run_sends_nothing_and_a_new_creator_is_matched_alone():
    creator("videography", email="first@example.com")
    project = active_project("video")
    match_project_creators(project_id=project.pk)
    again = match_project_creators(project_id=project.pk)
    assert again["matched"] == 0 and again["notified"] == 0 and again["emails_sent"] == 0
    assert len(mail.outbox) == 1 and Notification.objects.count() == 1
    assert Event.objects.filter(event_type="project.creators_matched").count() == 1

    creator("animation", email="later@example.com")
    later = match_project_creators(project_id=project.pk)
    assert later["matched"] == 1 and later["emails_sent"] == 1
    assert to("later@example.com") == ["New Project Opportunity: Spring campaign"]
    assert to("first@example.com") == ["New Project Opportunity: Spring campaign"]
    assert Notification.objects.count() == 2


@pytest.mark.parametrize(
    "requirements",
    [None, {}, {"assetTypes": []}, {"assetTypes": "image"}, {"assetTypes": ["hologram"]}, {"deliverables": 3}],
)
def test_project_without_asset_types_matches_nobody_and_says_why(requirements):
    creator("photography")
    project = active_project(requirements=requirements)
    result = match_project_creators(project_id=project.pk)
    assert result["skipped"] == "no asset types in the project's requirements"
    assert result["matched"] == 0
    assert not ProjectMatch.objects.exists() and not Notification.objects.exists() and mail.outbox == []


@pytest.mark.parametrize("status", ["DRAFT", "IN_PROGRESS", "COMPLETED", "CANCELLED", "ARCHIVED"])
def test_project_that_is_not_active_is_not_matched(status):
    creator("photography")
    project = active_project("image", status=status)
    result = match_project_creators(project_id=project.pk)
    assert result["skipped"] == f"project is {status}, not ACTIVE"
    assert not ProjectMatch.objects.exists()


def test_deleted_project_is_not_matched():
    creator("photography")
    project = active_project("image", deleted_at=NOW)
    assert match_project_creators(project_id=project.pk)["skipped"] == "project is deleted"


def test_unknown_project_id_is_a_clear_input_error():
    with pytest.raises(InvalidInput, match="Project 987654 does not exist"):
        match_project_creators(project_id=987_654)


def test_match_email_renders_with_the_job_context(settings):
    settings.APP_URL = "https://app.example.com"
    c = creator("photography", "sound-design")
    c.user.first_name, c.user.last_name = "Ana", "Lima"
    c.user.save()
    project = active_project("image", "audio", description="Looks <b>bold</b>", budget_cents=0, end_date=NOW)
    match = ProjectMatch.objects.create(project=project, creator=c, matched_specialties=["photography", "sound-design"])
    subject, text, html = render_email("project_match", match_email_context(project, match, ["image", "audio"]))
    assert subject == "New Project Opportunity: Spring campaign"
    assert text.startswith("Hello Ana Lima,") and "Acme has a new project that matches your specialties." in text
    assert "Budget: Budget available" in text and "Open until: March 10, 2027" in text
    assert f"View Project Details: https://app.example.com/projects/{project.pk}" in text
    assert "asks for image, audio work, and your profile lists photography, sound design" in text
    assert f'href="https://app.example.com/projects/{project.pk}"' in html
    assert "Looks &lt;b&gt;bold&lt;/b&gt;" in html  # escaped in HTML
    assert "Why was I matched?" in html


def test_budget_range():
    assert budget_range(0) == "Budget available"
    assert budget_range(-5) == "Budget available"
    assert budget_range(1_250_000) == "$12,500"
    assert budget_range(1_250_050) == "$12,500.50"


# --- fan-out: batches, a crash, a race ---------------------------------------------------


@pytest.fixture
def flaky(settings):
    yield use_flaky_backend(settings, batch_size=2)
    FlakyBackend.reset()


def test_a_retry_after_the_mail_server_went_away_sends_nothing_twice(flaky):
    creators = [creator("copywriting", email=f"c{i}@example.com") for i in range(5)]
    project = active_project("document")
    flaky.refuse_open_after = 1  # the first batch of 2 goes out, then the server is gone
    with pytest.raises(ConnectionRefusedError):
        match_project_creators(project_id=project.pk)
    assert len(mail.outbox) == 2
    # Batch 1 sent; batch 2 claimed but never attempted (released); batch 3 not reached.
    statuses = sorted(str(s) for s in ProjectMatch.objects.values_list("email_status", flat=True))
    assert statuses == ["None", "PENDING", "PENDING", "SENT", "SENT"]
    assert Notification.objects.count() == 4  # in-app for the batches claimed so far

    flaky.refuse_open_after = None  # RQ's retry, with the server back
    result = match_project_creators(project_id=project.pk)
    assert result["emails_sent"] == 3 and result["matched"] == 0
    assert sorted(a for m in mail.outbox for a in m.to) == sorted(c.user.email for c in creators)
    assert Notification.objects.count() == 5  # in-app once each as well


def test_a_message_interrupted_mid_send_is_never_sent_again(flaky):
    [creator("copywriting", email=f"c{i}@example.com") for i in range(3)]
    project = active_project("document")
    flaky.drop_after = 1  # the connection breaks while sending the second message
    with pytest.raises(smtplib.SMTPServerDisconnected):
        match_project_creators(project_id=project.pk)
    flaky.drop_after = None
    match_project_creators(project_id=project.pk)
    statuses = sorted(ProjectMatch.objects.values_list("email_status", flat=True))
    assert statuses == ["SENDING", "SENT", "SENT"]  # the interrupted one is left in doubt
    recipients = [a for m in mail.outbox for a in m.to]
    assert len(recipients) == len(set(recipients)) == 2


def test_refused_address_is_recorded_and_the_rest_still_go(settings):
    settings.EMAIL_BACKEND = "tests.email_backends.RefusingBackend"
    creator("music-composition", email="refuse-me@example.com")
    creator("sound-design", email="fine@example.com")
    project = active_project("audio")
    result = match_project_creators(project_id=project.pk)
    assert result["emails_sent"] == 1 and result["emails_refused"] == 1
    assert to("fine@example.com") and not to("refuse-me@example.com")
    assert sorted(ProjectMatch.objects.values_list("email_status", flat=True)) == ["REFUSED", "SENT"]
    assert match_project_creators(project_id=project.pk)["emails_refused"] == 0  # not tried again


@pytest.mark.django_db(transaction=True)
def test_two_workers_matching_at_once_notify_each_creator_once(settings):
    settings.EMAIL_BATCH_SIZE = 3
    for i in range(20):
        creator("photography", email=f"p{i}@example.com")
    project = active_project("image")
    run_twice_at_once(lambda: match_creators(project.pk, now=NOW))
    recipients = [a for m in mail.outbox for a in m.to]
    assert len(recipients) == len(set(recipients)) == 20
    assert Notification.objects.count() == 20 and ProjectMatch.objects.count() == 20


# --- status changes start the matching -------------------------------------------------


def test_becoming_active_enqueues_one_matching_job_per_project(django_capture_on_commit_callbacks):
    project = active_project("image", status=ProjectStatus.DRAFT)
    staff = make_user(is_staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        job_id = change_status(project, ProjectStatus.ACTIVE, actor=staff)
    assert project.status == "ACTIVE" and job_id
    job = JSONJob.fetch(job_id, connection=redis_connection())
    assert job.kwargs == {"project_id": project.pk}
    audit = AuditEvent.objects.get(entity_type="project", entity_id=str(project.pk))
    assert (audit.before, audit.after["status"], audit.actor_id) == ({"status": "DRAFT"}, "ACTIVE", staff.pk)
    # Back and forth while the first job still waits: deduplicated.
    with django_capture_on_commit_callbacks(execute=True):
        assert change_status(project, ProjectStatus.IN_PROGRESS) is None
        assert change_status(project, ProjectStatus.ACTIVE) == job_id
    assert get_queue("default").get_job_ids() == [job_id]


def test_status_changes_are_validated():
    project = active_project("image", status=ProjectStatus.DRAFT)
    with pytest.raises(InvalidProjectTransition, match="A DRAFT project cannot become COMPLETED"):
        change_status(project, ProjectStatus.COMPLETED)
    with pytest.raises(InvalidProjectTransition, match="Unknown project status"):
        change_status(project, "PAUSED")
    ended = active_project("image", status=ProjectStatus.DRAFT, end_date=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidProjectTransition, match="ended on 2020-01-01"):
        change_status(ended, ProjectStatus.ACTIVE)
    assert get_queue("default").get_job_ids() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_api_activation_runs_the_matching_in_a_real_worker(run_worker):
    owner = make_user(email="brand@example.com")
    project = active_project("video", status=ProjectStatus.DRAFT, brand=make_brand("Acme", user=owner))
    fits = creator("videography")
    stranger = make_user()
    client = Client()

    client.force_login(stranger)
    url = f"/api/projects/{project.pk}/status"
    assert client.post(url, {"status": "ACTIVE"}, content_type="application/json").status_code == 404
    client.force_login(owner)
    bad = client.post(url, {"status": "COMPLETED"}, content_type="application/json")
    assert bad.status_code == 409 and "cannot become COMPLETED" in bad.json()["error"]
    unknown = client.post(url, {"status": "paused"}, content_type="application/json")
    assert unknown.status_code == 400
    response = client.post(url, json.dumps({"status": "active"}), content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ACTIVE" and body["job_id"]

    run_worker("default")
    job = JSONJob.fetch(body["job_id"], connection=redis_connection())
    assert job.get_status() == "finished"
    assert job.return_value()["matched"] == 1
    assert ProjectMatch.objects.get().creator_id == fits.pk
    assert Notification.objects.get().user_id == fits.user_id


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_unknown_project_fails_once_without_retries_in_a_real_worker(run_worker):
    from rq.registry import FailedJobRegistry

    from jobs.api import enqueue

    job_id = enqueue("project-match-creators", project_id=987_654)
    run_worker("default")
    job = JSONJob.fetch(job_id, connection=redis_connection())
    assert job.get_status() == "failed" and job.retries_left == 0
    assert job_id in FailedJobRegistry("default", connection=redis_connection()).get_job_ids()
    assert "JobInputError: Project 987654 does not exist." in job.latest_result().exc_string


# --- project-expiry-check ----------------------------------------------------------------


def test_projects_past_their_end_date_are_archived_once_with_audit_event_and_notices(settings):
    settings.APP_URL = "https://app.example.com"
    owner = make_user(email="owner@example.com", first_name="Bea")
    brand = make_brand("Acme", user=owner)
    ended = {
        status: make_project(brand, name=f"Ended {status}", status=status, end_date=NOW - timedelta(seconds=1))
        for status in ("DRAFT", "ACTIVE", "IN_PROGRESS", "COMPLETED", "CANCELLED", "ARCHIVED")
    }
    ends_now = make_project(brand, name="Ends now", status="ACTIVE", end_date=NOW)
    open_ended = make_project(brand, name="No end", status="ACTIVE")
    deleted = make_project(brand, name="Deleted", status="ACTIVE", end_date=NOW - timedelta(days=3), deleted_at=NOW)

    with at(NOW):
        result = expire_projects()

    assert result["archived"] == 3 and result["emails_sent"] == 3
    for status, project in ended.items():
        project.refresh_from_db()
        was_open = status in ("DRAFT", "ACTIVE", "IN_PROGRESS")
        assert project.status == ("ARCHIVED" if was_open else status)
        assert (project.auto_archived_at is not None) == was_open
    for untouched in (ends_now, open_ended, deleted):
        untouched.refresh_from_db()
        assert untouched.status == "ACTIVE"
    audits = AuditEvent.objects.filter(action="project_auto_archived")
    # The draft was cancelled first (DRAFT -> ARCHIVED is not a move the state machine allows).
    assert sorted(a.before["status"] for a in audits) == ["ACTIVE", "CANCELLED", "IN_PROGRESS"]
    assert sorted(a.after["previousStatus"] for a in audits) == ["ACTIVE", "DRAFT", "IN_PROGRESS"]
    assert {a.after["status"] for a in audits} == {"ARCHIVED"}
    events = Event.objects.filter(event_type="project.auto_archived")
    assert events.count() == 3 and {e.source for e in events} == {"system"}
    active_event = events.get(project=ended["ACTIVE"])
    assert active_event.props_json == {
        "endDate": (NOW - timedelta(seconds=1)).isoformat(),
        "previousStatus": "ACTIVE",
    }
    assert active_event.brand_id == brand.pk
    notes = Notification.objects.filter(user=owner, title="Project Archived")
    assert notes.count() == 3 and {n.priority for n in notes} == {"LOW"}
    assert 'Your project "Ended ACTIVE" has been automatically archived after its end date.' in {
        n.message for n in notes
    }
    assert sorted(to("owner@example.com")) == sorted(
        f"Project Archived: Ended {s}" for s in ("DRAFT", "ACTIVE", "IN_PROGRESS")
    )

    with at(NOW + timedelta(days=1)):  # the next daily run: ends_now is now past its end
        again = expire_projects()
    assert again["archived"] == 1 and again["emails_sent"] == 1
    assert to("owner@example.com")[-1] == "Project Archived: Ends now"
    with at(NOW + timedelta(days=2)):
        assert expire_projects() == {
            "archived": 0,
            "emails_sent": 0,
            "emails_refused": 0,
            "emails_unsent": 0,
            "emails_in_doubt": 0,
            "no_address": 0,
        }
    assert len(mail.outbox) == 4 and Notification.objects.count() == 4


def test_an_expired_draft_is_cancelled_then_archived_through_the_state_machine():
    brand = make_brand("Acme", user=make_user(email="owner@example.com"))
    draft = make_project(brand, name="Never started", status="DRAFT", end_date=NOW - timedelta(days=1))
    with at(NOW):
        assert expire_projects()["archived"] == 1
    draft.refresh_from_db()
    assert (draft.status, draft.auto_archived_at) == ("ARCHIVED", NOW)
    moves = AuditEvent.objects.filter(entity_type="project", entity_id=str(draft.pk)).order_by("pk")
    assert [(m.action, m.before["status"], m.after["status"]) for m in moves] == [
        ("project_auto_cancelled", "DRAFT", "CANCELLED"),
        ("project_auto_archived", "CANCELLED", "ARCHIVED"),
    ]
    assert moves[0].after["reason"] == "end date passed before the project was activated"
    assert Event.objects.get(event_type="project.auto_archived").props_json["previousStatus"] == "DRAFT"
    assert to("owner@example.com") == ["Project Archived: Never started"]
    with at(NOW + timedelta(days=1)):  # a second run: nothing moves, nothing is sent
        assert expire_projects()["archived"] == 0
    assert AuditEvent.objects.filter(entity_type="project").count() == 2 and len(mail.outbox) == 1


def test_every_automatic_project_move_is_one_the_state_machine_allows():
    brand = make_brand("Acme", user=make_user(email="owner@example.com"))
    for status in ("DRAFT", "ACTIVE", "IN_PROGRESS"):
        make_project(brand, name=status, status=status, end_date=NOW - timedelta(days=1))
    project = make_project(brand, name="Licensed", status="IN_PROGRESS", end_date=NOW + timedelta(days=90))
    license = make_license(brand=brand, project=project, end=NOW - timedelta(days=10), grace_period_days=0)
    with at(NOW):
        expire_projects()
        expire_due_licenses()  # the license expires: its project, left without one, is COMPLETED
    license.refresh_from_db()
    project.refresh_from_db()
    assert (license.status, project.status) == ("EXPIRED", "COMPLETED")
    moves = AuditEvent.objects.filter(entity_type="project")
    assert moves.count() == 5
    for move in moves:
        assert move.after["status"] in ALLOWED_TRANSITIONS[move.before["status"]], (move.action, move.before)
        assert move.after["reason"]


def test_the_transition_helper_refuses_forbidden_moves_and_moves_each_project_once():
    brand = make_brand("Acme")
    draft = make_project(brand, status="DRAFT")
    with pytest.raises(InvalidProjectTransition, match="A DRAFT project cannot become ARCHIVED"):
        transition_projects([draft.pk], "DRAFT", "ARCHIVED", reason="no")
    draft.refresh_from_db()
    assert draft.status == "DRAFT" and not AuditEvent.objects.exists()
    active = make_project(brand, status="ACTIVE")
    deleted = make_project(brand, status="ACTIVE", deleted_at=NOW)
    moved = transition_projects([active.pk, draft.pk, deleted.pk], "ACTIVE", "COMPLETED", reason="done")
    assert moved == [active.pk]  # the draft is not ACTIVE, the deleted one is left alone
    assert transition_projects([active.pk], "ACTIVE", "COMPLETED", reason="done") == []  # a racing second run
    assert AuditEvent.objects.filter(entity_type="project").count() == 1


@pytest.mark.django_db(transaction=True)
def test_project_expiry_runs_in_a_real_worker(run_worker):
    from jobs.api import enqueue

    brand = make_brand("Acme", user=make_user(email="owner@example.com"))
    past = datetime.now(UTC) - timedelta(days=1)
    draft = make_project(brand, name="Draft", status="DRAFT", end_date=past)
    active = make_project(brand, name="Active", status="ACTIVE", end_date=past)
    enqueue("project-expiry-check")
    run_worker("scheduled")
    for project in (draft, active):
        project.refresh_from_db()
        assert project.status == "ARCHIVED" and project.archived_notice_sent_at is not None
    assert AuditEvent.objects.filter(action="project_auto_cancelled", entity_id=str(draft.pk)).count() == 1


def test_archive_notice_is_released_for_the_retry_when_the_server_is_down(flaky):
    owner = make_user(email="owner@example.com")
    brand = make_brand("Acme", user=owner)
    for i in range(3):
        make_project(brand, name=f"P{i}", status="ACTIVE", end_date=NOW - timedelta(days=1))
    flaky.refuse_open_after = 1
    with at(NOW), pytest.raises(ConnectionRefusedError):
        expire_projects()
    assert Project.objects.filter(status="ARCHIVED").count() == 3  # the state change is done
    assert Project.objects.filter(archived_notice_sent_at__isnull=False).count() == 2
    flaky.refuse_open_after = None
    with at(NOW):
        assert expire_projects()["emails_sent"] == 1
    assert sorted(m.subject for m in mail.outbox) == [
        "Project Archived: P0",
        "Project Archived: P1",
        "Project Archived: P2",
    ]


def test_archive_email_renders_with_the_job_context(settings):
    settings.APP_URL = "https://app.example.com"
    brand = make_brand("Acme", user=make_user(first_name="Bea", last_name="Brand"))
    project = make_project(brand, name="Autumn", end_date=datetime(2027, 3, 9, 18, 0, tzinfo=UTC))
    project = Project.objects.select_related("brand__user").get(pk=project.pk)
    subject, text, html = render_email("project_archived", archive_email_context(project))
    assert subject == "Project Archived: Autumn"
    assert text.startswith("Hello Bea Brand,")
    assert 'Your project "Autumn" reached its end date on March 9, 2027' in text
    assert "No new submissions or licenses" in text and "continue under their own terms" in text
    assert f"View Project: https://app.example.com/projects/{project.pk}" in text
    assert "https://app.example.com/projects/new" in text
    assert f'href="https://app.example.com/projects/{project.pk}"' in html and "View Project" in html
