"""Content-based type detection and the declared-type check."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from yesgoddess.media.detect import ALLOWED_MIME_TYPES, asset_type_for_mime, check_declared_type, detect_mime
from yesgoddess.media.errors import MediaError

from . import samples

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _image(fmt: str):
    def make(path: Path) -> None:
        Image.new("RGB", (40, 30), "red").save(path, fmt)

    return make


def _video(ext: str, *codec: str):
    def make(path: Path) -> None:
        produced = path.with_suffix(ext)
        samples.run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1", *codec, str(produced))
        produced.rename(path)

    return make


def _audio(ext: str, *codec: str):
    def make(path: Path) -> None:
        produced = path.with_suffix(ext)
        samples.run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", *codec, str(produced))
        produced.rename(path)

    return make


def _glb(path: Path) -> None:
    payload = b'{"asset":{"version":"2.0"}}  '
    header = b"glTF" + (2).to_bytes(4, "little") + (12 + 8 + len(payload)).to_bytes(4, "little")
    path.write_bytes(header + len(payload).to_bytes(4, "little") + b"JSON" + payload)


# What python-magic (libmagic 5.44 here) reports for each generated file, after our refinements.
# Every file is saved under a meaningless name, so only the content can decide.
GENERATED = [
    ("jpeg", _image("JPEG"), "image/jpeg", "IMAGE"),
    ("png", _image("PNG"), "image/png", "IMAGE"),
    ("gif", _image("GIF"), "image/gif", "IMAGE"),
    ("webp", _image("WEBP"), "image/webp", "IMAGE"),
    ("tiff", _image("TIFF"), "image/tiff", "IMAGE"),
    ("mp4", _video(".mp4", "-c:v", "libx264", "-preset", "ultrafast"), "video/mp4", "VIDEO"),
    ("mov", _video(".mov", "-c:v", "libx264", "-preset", "ultrafast"), "video/quicktime", "VIDEO"),
    ("m4v", _video(".m4v", "-c:v", "libx264", "-preset", "ultrafast"), "video/x-m4v", "VIDEO"),
    ("webm", _video(".webm", "-c:v", "libvpx", "-deadline", "realtime"), "video/webm", "VIDEO"),
    ("mkv", _video(".mkv", "-c:v", "libx264", "-preset", "ultrafast"), "video/x-matroska", "VIDEO"),
    ("mp3", _audio(".mp3"), "audio/mpeg", "AUDIO"),
    ("wav", _audio(".wav"), "audio/x-wav", "AUDIO"),
    ("flac", _audio(".flac"), "audio/flac", "AUDIO"),
    ("ogg", _audio(".ogg", "-c:a", "libvorbis"), "audio/ogg", "AUDIO"),
    ("m4a", _audio(".m4a", "-c:a", "aac"), "audio/x-m4a", "AUDIO"),
    ("aac", _audio(".aac", "-c:a", "aac", "-f", "adts"), "audio/x-hx-aac-adts", "AUDIO"),
    ("pdf", lambda path: samples.make_pdf(path), "application/pdf", "DOCUMENT"),
    ("docx", lambda path: samples.make_docx(path), DOCX, "DOCUMENT"),
    ("txt", lambda path: path.write_text("Just some notes.\nTwo lines.\n"), "text/plain", "DOCUMENT"),
    ("glb", _glb, "model/gltf-binary", "THREE_D"),
    ("obj", lambda path: path.write_text("# cube\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"), "model/obj", "THREE_D"),
    ("zip", lambda path: samples.zipfile.ZipFile(path, "w").writestr("a.txt", "a"), "application/zip", "OTHER"),
]


@pytest.mark.parametrize(("kind", "make", "mime", "asset_type"), GENERATED, ids=[g[0] for g in GENERATED])
def test_detects_type_from_content_not_name(tmp_path: Path, kind: str, make, mime: str, asset_type: str) -> None:
    path = tmp_path / "upload.bin"
    make(path)
    assert detect_mime(path) == mime
    assert asset_type_for_mime(mime) == asset_type
    assert check_declared_type(mime, asset_type) is None


def test_ooxml_that_libmagic_calls_zip_is_recognised_from_its_members(tmp_path: Path) -> None:
    path = samples.make_xlsx_with_mimetype_first(tmp_path / "sheet")
    assert detect_mime(path) == XLSX


def test_docx_with_unusual_member_order_is_still_docx(tmp_path: Path) -> None:
    path = samples.make_docx(tmp_path / "doc", first_member="docProps/core.xml")
    assert detect_mime(path) == DOCX


def test_empty_file_is_refused_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(MediaError, match="The file is empty"):
        detect_mime(path)


def test_text_declared_as_image_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("definitely not a picture\n")
    reason = check_declared_type(detect_mime(path), "IMAGE")
    assert reason == "File signature mismatch: declared IMAGE but detected text/plain (DOCUMENT)"


def test_elf_executable_named_jpg_is_rejected_as_executable(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_bytes(samples.elf_header() + b"\0" * 512)
    mime = detect_mime(path)
    assert mime == "application/x-executable"
    reason = check_declared_type(mime, "IMAGE")
    assert reason is not None and "executable" in reason and "declared IMAGE" in reason


def test_windows_exe_named_jpg_is_rejected_as_executable(tmp_path: Path) -> None:
    path = tmp_path / "cat.jpg"
    path.write_bytes(samples.pe_header())
    mime = detect_mime(path)
    # libmagic 5.44 names a PE file this way; a bare MZ stub would be application/x-dosexec.
    assert mime == "application/vnd.microsoft.portable-executable"
    assert "the content is an executable" in (check_declared_type(mime, "IMAGE") or "")
    # Executables are refused whatever the declared type, even OTHER.
    assert check_declared_type(mime, "OTHER") is not None


def test_shell_script_is_refused_even_without_declared_type(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("#!/bin/sh\nrm -rf /\n")
    assert "executable or script" in (check_declared_type(detect_mime(path), None) or "")


def test_random_bytes_named_png_are_not_an_allowed_type(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(samples.junk_bytes(4096))
    mime = detect_mime(path)
    assert mime == "application/octet-stream"
    assert check_declared_type(mime, "IMAGE") == "File type application/octet-stream is not allowed"


def test_audio_only_mp4_declared_as_audio_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "voice"
    produced = samples.make_audio(tmp_path / "voice.mp4", seconds=1, codec="aac")
    produced.rename(path)
    mime = detect_mime(path)
    assert mime == "video/mp4"  # libmagic cannot tell an audio-only MP4 from a video
    assert check_declared_type(mime, "AUDIO") is None
    assert check_declared_type(mime, "IMAGE") is not None


def test_other_accepts_any_allowed_type_but_not_disallowed_ones() -> None:
    assert check_declared_type("image/png", "OTHER") is None
    assert check_declared_type("text/html", "OTHER") == "File type text/html is not allowed"


def test_unknown_declared_type_is_reported() -> None:
    assert check_declared_type("image/png", "PICTURE") == "Unknown asset type 'PICTURE'"


def test_asset_type_for_mime_ignores_parameters_and_case() -> None:
    assert asset_type_for_mime("Text/Plain; charset=utf-8") == "DOCUMENT"
    assert asset_type_for_mime("application/x-msdownload") is None


def test_allow_list_covers_required_types() -> None:
    required = {
        "image/jpeg": "IMAGE",
        "image/tiff": "IMAGE",
        "video/webm": "VIDEO",
        "video/x-matroska": "VIDEO",
        "audio/wav": "AUDIO",
        "audio/x-wav": "AUDIO",
        "audio/aac": "AUDIO",
        "application/msword": "DOCUMENT",
        "application/vnd.ms-excel": "DOCUMENT",
        "application/vnd.ms-powerpoint": "DOCUMENT",
        "model/gltf-binary": "THREE_D",
        "model/obj": "THREE_D",
        "application/zip": "OTHER",
    }
    assert {mime: ALLOWED_MIME_TYPES.get(mime) for mime in required} == required
