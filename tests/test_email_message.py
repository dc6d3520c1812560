"""TemplateEmail serialises to the same bytes as Django's own messages (compat32), only
faster: short one-line ASCII headers skip email.header.Header, the rest fold as before."""

from __future__ import annotations

import email
import email.policy
from email._policybase import compat32

import pytest

from yesgoddess.emailing.message import QUICK_FOLD, TemplateEmail

HEADERS = {
    "List-Unsubscribe": "<https://api.example/api/email/unsubscribe/" + "x" * 120 + ">, <mailto:u@example.com>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    "X-Spaced": "two  spaces and a trailing one ",
    "X-Tab": "a\tb",
}


@pytest.mark.parametrize(
    ("subject", "to"),
    [
        ("Spring licensing is open", "reader@example.com"),
        ("Déjà vu: your licence renews ✨", "Zoë Ünal <zoe@example.com>"),
        ("A subject long enough to need folding " * 3, "reader@example.com"),
    ],
)
def test_the_bytes_are_those_of_the_compat32_policy(subject, to):
    message = TemplateEmail(subject, "Hello.\n" + "A line. " * 40, "YesGoddess <no-reply@yesgoddess.test>", [to])
    message.extra_headers.update(HEADERS)
    message.attach_alternative("<p>Hello, <b>there</b> ✨</p>", "text/html")
    mime = message.message()
    assert mime.policy is QUICK_FOLD
    quick = mime.as_bytes(linesep="\r\n")  # fixes the boundary on the message
    mime.policy = compat32
    assert mime.as_bytes(linesep="\r\n") == quick

    parsed = email.message_from_bytes(quick, policy=email.policy.default)
    assert " ".join(parsed["Subject"].split()) == " ".join(subject.split())
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "✨" in parsed.get_body(("html",)).get_content()


def test_a_short_ascii_header_is_written_as_it_is_and_others_fall_back():
    assert QUICK_FOLD.fold_binary("Subject", "Hello there") == b"Subject: Hello there\n"
    assert QUICK_FOLD.fold_binary("Subject", "Héllo") == compat32.fold_binary("Subject", "Héllo")
    long = "word " * 30
    assert QUICK_FOLD.fold_binary("Subject", long) == compat32.fold_binary("Subject", long)
