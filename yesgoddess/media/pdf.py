"""PDF through poppler-utils: first-page rendering, document info and text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from .errors import MediaError
from .tools import ensure_not_empty, run_tool, tool_path_arg

PDF_OPEN_FAILURE = "poppler could not open the PDF"
TEXT_EXCERPT_CHARS = 100_000
TEXT_PAGES = 20

# D:YYYYMMDDHHmmSSOHH'mm' where everything after the year is optional (PDF 32000-1, 7.9.4).
_PDF_DATE = re.compile(
    r"^D?:?(?P<year>\d{4})(?P<month>\d{2})?(?P<day>\d{2})?(?P<hour>\d{2})?(?P<minute>\d{2})?(?P<second>\d{2})?"
    r"(?:(?P<utc>Z)|(?P<sign>[+-])(?P<tzh>\d{2})'?(?P<tzm>\d{2})?'?)?"
)
_INFO_FIELDS = {
    "Title": "title",
    "Author": "author",
    "Subject": "subject",
    "Keywords": "keywords",
    "Creator": "creator",
    "Producer": "producer",
    "PDF version": "pdf_version",
}


def render_first_page(src: Path, workdir: Path, *, longest_side: int, timeout: float) -> Path:
    """Page 1 as a PNG whose longer side is `longest_side` pixels (pdftoppm -scale-to)."""
    ensure_not_empty(src)
    prefix = workdir / "page"
    run_tool(
        [
            "pdftoppm",
            "-f",
            "1",
            "-l",
            "1",
            "-scale-to",
            str(longest_side),
            "-png",
            "-singlefile",
            tool_path_arg(src),
            tool_path_arg(prefix),
        ],
        timeout=timeout,
        failure=PDF_OPEN_FAILURE,
    )
    page = prefix.with_suffix(".png")
    if not page.exists() or page.stat().st_size == 0:
        raise MediaError(f"{PDF_OPEN_FAILURE}: pdftoppm rendered no page")
    return page


def parse_pdf_date(raw: str | None) -> str | None:
    """A PDF date string as ISO 8601 with its own time zone; None when absent or malformed.

    A date without a zone stays without one: assuming the server's zone would invent data.
    """
    if not raw:
        return None
    match = _PDF_DATE.match(raw.strip())
    if not match:
        return None
    parts = match.groupdict()
    tz = None
    if parts["utc"]:
        tz = UTC
    elif parts["sign"]:
        offset = timedelta(hours=int(parts["tzh"]), minutes=int(parts["tzm"] or 0))
        tz = timezone(offset if parts["sign"] == "+" else -offset)
    try:
        moment = datetime(
            int(parts["year"]),
            int(parts["month"] or 1),
            int(parts["day"] or 1),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            tzinfo=tz,
        )
    except ValueError:
        return None
    return moment.isoformat()


def read_pdf_info(src: Path, *, timeout: float) -> dict:
    """Document info from pdfinfo: page count, title, author, …, dates with their time zone."""
    ensure_not_empty(src)
    output = run_tool(
        ["pdfinfo", "-enc", "UTF-8", "-rawdates", tool_path_arg(src)],
        timeout=timeout,
        failure=PDF_OPEN_FAILURE,
    ).decode("utf-8", errors="replace")
    fields: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    try:
        page_count = int(fields["Pages"])
    except (KeyError, ValueError) as exc:
        raise MediaError(f"{PDF_OPEN_FAILURE}: pdfinfo reported no page count") from exc
    info: dict = {"page_count": page_count}
    for source_key, key in _INFO_FIELDS.items():
        info[key] = fields.get(source_key) or None
    info["creation_date"] = parse_pdf_date(fields.get("CreationDate"))
    info["modification_date"] = parse_pdf_date(fields.get("ModDate"))
    info["encrypted"] = fields.get("Encrypted", "no").startswith("yes")
    info["page_size"] = fields.get("Page size") or None
    return info


def read_pdf_text(src: Path, *, timeout: float, pages: int = TEXT_PAGES) -> str:
    """The text of the first `pages` pages (pdftotext), page breaks removed."""
    output = run_tool(
        ["pdftotext", "-f", "1", "-l", str(pages), "-enc", "UTF-8", "-nopgbrk", tool_path_arg(src), "-"],
        timeout=timeout,
        failure=PDF_OPEN_FAILURE,
    )
    return output.decode("utf-8", errors="replace").strip()
