"""Office Open XML packages (docx, xlsx, pptx): recognising them and reading docProps.

An OOXML file is a ZIP archive; libmagic only names it correctly when the archive's
first members are in the usual order, so the package layout is checked here instead.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.etree import ElementTree

from .errors import MediaError

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"

# The part that makes a package a given document kind (ECMA-376 default part names).
_MAIN_PARTS = {
    "word/document.xml": DOCX,
    "xl/workbook.xml": XLSX,
    "ppt/presentation.xml": PPTX,
}
OOXML_FORMATS = {DOCX: "docx", XLSX: "xlsx", PPTX: "pptx"}

# docProps parts are tiny; anything bigger is a zip bomb or not a real property part.
_MAX_PROPS_PART_BYTES = 1_000_000

_NS = {
    "cp": "http://schemas.openxmlformats.org/package/2006/metadata/core-properties",
    "dc": "http://purl.org/dc/elements/1.1/",
    "dcterms": "http://purl.org/dc/terms/",
    "ep": "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties",
}
_CORE_FIELDS = {
    "title": "dc:title",
    "subject": "dc:subject",
    "creator": "dc:creator",
    "keywords": "cp:keywords",
    "description": "dc:description",
    "category": "cp:category",
    "last_modified_by": "cp:lastModifiedBy",
    "revision": "cp:revision",
    "created": "dcterms:created",
    "modified": "dcterms:modified",
}
_APP_COUNTS = {"pages": "Pages", "words": "Words", "characters": "Characters", "slides": "Slides"}


def ooxml_mime_for_zip(path: str | Path) -> str | None:
    """The OOXML MIME type of a ZIP file from its member names, or None for another ZIP."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    if "[Content_Types].xml" not in names:
        return None
    for part, mime in _MAIN_PARTS.items():
        if part in names:
            return mime
    return None


def _read_part(archive: zipfile.ZipFile, name: str) -> ElementTree.Element | None:
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.file_size > _MAX_PROPS_PART_BYTES:
        return None
    try:
        # ElementTree never fetches external entities, and the size cap above bounds expansion.
        return ElementTree.fromstring(archive.read(info))
    except ElementTree.ParseError:
        return None


def _text(root: ElementTree.Element, tag: str) -> str | None:
    node = root.find(tag, _NS)
    if node is None or node.text is None:
        return None
    return node.text.strip() or None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def read_ooxml_properties(path: str | Path, mime: str) -> dict:
    """docProps/core.xml fields and docProps/app.xml counts; missing parts give None values."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise MediaError(f"The Office document is not a readable ZIP package: {exc}") from exc
    with archive:
        if "[Content_Types].xml" not in archive.namelist():
            raise MediaError("The Office document has no [Content_Types].xml; it is not an OOXML package")
        core = _read_part(archive, "docProps/core.xml")
        app = _read_part(archive, "docProps/app.xml")

    result: dict = {"format": OOXML_FORMATS.get(mime, "ooxml")}
    for key, tag in _CORE_FIELDS.items():
        result[key] = _text(core, tag) if core is not None else None
    # Word writes an integer revision; keep any other spelling as the text it is.
    revision = _int_or_none(result["revision"])
    if revision is not None:
        result["revision"] = revision
    if app is not None:
        result["application"] = _text(app, "ep:Application")
        for key, tag in _APP_COUNTS.items():
            count = _int_or_none(_text(app, f"ep:{tag}"))
            if count is not None:
                result[key] = count
    return result
