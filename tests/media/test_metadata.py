"""extract_metadata: per-type fields, JSON safety, and the lower-level parsers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import ExifTags, Image, TiffImagePlugin

from yesgoddess.media import metadata
from yesgoddess.media.errors import MediaError
from yesgoddess.media.metadata import extract_metadata
from yesgoddess.media.pdf import parse_pdf_date

from . import samples


def as_json(result: dict) -> dict:
    """Round-trip through strict JSON: proves the dict is storable in a JSON column as it is."""
    return json.loads(json.dumps(result, allow_nan=False))


def test_jpeg_metadata_has_size_format_and_parsed_exif(tmp_path: Path) -> None:
    src = tmp_path / "camera.jpg"
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "EOS R5"
    exif[ExifTags.Base.Orientation] = 6
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[ExifTags.Base.ExposureTime] = TiffImagePlugin.IFDRational(1, 250)
    sub[ExifTags.Base.FNumber] = TiffImagePlugin.IFDRational(28, 10)
    sub[ExifTags.Base.DateTimeOriginal] = "2024:05:06 07:08:09"
    sub[ExifTags.Base.MakerNote] = bytes(range(256)) * 8  # vendor blob: must be dropped
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (TiffImagePlugin.IFDRational(51, 1), TiffImagePlugin.IFDRational(30, 1), 0.0)
    samples.make_gradient_rgb((640, 480)).save(src, "JPEG", exif=exif.tobytes())

    result = as_json(extract_metadata(src, "IMAGE", "image/jpeg"))
    assert result["width"] == 640 and result["height"] == 480
    assert result["display_width"] == 480 and result["display_height"] == 640
    assert result["format"] == "jpeg" and result["mode"] == "RGB"
    assert result["has_alpha"] is False and result["frames"] == 1 and result["orientation"] == 6
    assert result["exif"]["Make"] == "Canon" and result["exif"]["Model"] == "EOS R5"
    assert result["exif"]["ExposureTime"] == pytest.approx(0.004)
    assert result["exif"]["FNumber"] == pytest.approx(2.8)
    assert result["exif"]["DateTimeOriginal"] == "2024:05:06 07:08:09"
    assert result["exif"]["GPSInfo"]["GPSLatitudeRef"] == "N"
    assert result["exif"]["GPSInfo"]["GPSLatitude"] == [51.0, 30.0, 0.0]
    assert "MakerNote" not in result["exif"]


def test_png_with_alpha_reports_alpha(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    Image.new("RGBA", (30, 20), (0, 0, 0, 0)).save(src)
    result = as_json(extract_metadata(src, "IMAGE", "image/png"))
    assert (result["width"], result["height"], result["mode"], result["has_alpha"]) == (30, 20, "RGBA", True)
    assert result["exif"] == {}


def test_animated_gif_reports_frames(tmp_path: Path) -> None:
    src = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (10, 10), colour) for colour in ("red", "green", "blue")]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=50)
    result = as_json(extract_metadata(src, "IMAGE", "image/gif"))
    assert result["frames"] == 3 and result["animated"] is True and result["format"] == "gif"


def test_mp4_metadata_from_ffprobe(mp4_file: Path) -> None:
    result = as_json(extract_metadata(mp4_file, "VIDEO", "video/mp4"))
    assert result["duration"] == pytest.approx(4.0, abs=0.1)
    assert (result["width"], result["height"], result["resolution"]) == (1280, 720, "1280x720")
    assert result["aspect_ratio"] == "16:9"
    assert result["video_codec"] == "h264"
    assert result["fps"] == 25.0
    assert isinstance(result["bitrate"], int) and result["bitrate"] > 0
    assert result["has_audio"] is True and result["audio_codec"] == "aac" and result["sample_rate"] == 44100
    assert result["rotation"] == 0
    assert result["tags"]["major_brand"] == "isom"


def test_video_metadata_of_audio_only_file_is_refused(mp3_file: Path) -> None:
    with pytest.raises(MediaError, match="No video stream found"):
        extract_metadata(mp3_file, "VIDEO", "video/mp4")


def test_mp3_metadata_and_tags(mp3_file: Path) -> None:
    result = as_json(extract_metadata(mp3_file, "AUDIO", "audio/mpeg"))
    assert result["duration"] == pytest.approx(3.0, abs=0.1)
    assert result["codec"] == "mp3" and result["format"] == "mp3"
    assert result["sample_rate"] == 44100 and result["channels"] == 1
    assert isinstance(result["bitrate"], int) and result["bitrate"] > 0
    assert result["tags"] == {
        "title": "Test Tone",
        "artist": "YesGoddess",
        "album": "Fixtures",
        "date": "2024",
        "year": 2024,
        "genre": None,
        "track": 3,
    }


def test_ogg_tags_are_read_from_the_stream_case_insensitively(tmp_path: Path) -> None:
    src = samples.make_audio(tmp_path / "a.ogg", seconds=1, codec="libvorbis", tags={"TITLE": "Loud", "GENRE": "Pop"})
    tags = extract_metadata(src, "AUDIO", "audio/ogg")["tags"]
    assert tags["title"] == "Loud" and tags["genre"] == "Pop"


def test_audio_without_tags_has_empty_tag_values(wav_file: Path) -> None:
    result = as_json(extract_metadata(wav_file, "AUDIO", "audio/x-wav"))
    assert result["codec"] == "pcm_s16le"
    assert result["duration"] == pytest.approx(2.0, abs=0.05)
    assert set(result["tags"].values()) == {None}


def test_image_declared_as_audio_has_no_audio_stream(tmp_path: Path) -> None:
    src = samples.make_jpeg(tmp_path / "a.jpg", (64, 64))
    with pytest.raises(MediaError, match="No audio stream found"):
        extract_metadata(src, "AUDIO", "audio/mpeg")


def test_pdf_metadata_pages_info_dates_and_text(tmp_path: Path) -> None:
    src = samples.make_pdf(
        tmp_path / "contract.pdf",
        text="Licence terms",
        pages=3,
        info={
            "Title": "Licence Agreement",
            "Author": "Legal Team",
            "Subject": "Usage rights",
            "Producer": "Hand made",
            "CreationDate": "D:20240102030405+05'30'",
            "ModDate": "D:20240203040506Z",
        },
    )
    result = as_json(extract_metadata(src, "DOCUMENT", "application/pdf"))
    assert result["page_count"] == 3
    assert result["title"] == "Licence Agreement" and result["author"] == "Legal Team"
    assert result["subject"] == "Usage rights" and result["producer"] == "Hand made"
    assert result["pdf_version"] == "1.4"
    assert result["creation_date"] == "2024-01-02T03:04:05+05:30"
    assert result["modification_date"] == "2024-02-03T04:05:06+00:00"
    assert "Licence terms page 1" in result["text_excerpt"] and "Licence terms page 3" in result["text_excerpt"]
    assert result["text_length"] == len(result["text_excerpt"]) and result["text_truncated"] is False


def test_pdf_text_excerpt_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata, "TEXT_EXCERPT_CHARS", 10)
    src = samples.make_pdf(tmp_path / "long.pdf", text="A fairly long sentence", pages=2)
    result = extract_metadata(src, "DOCUMENT", "application/pdf")
    assert result["text_excerpt"] == "A fairly l"
    assert result["text_length"] > 10 and result["text_truncated"] is True


def test_pdf_without_info_has_none_fields(tmp_path: Path) -> None:
    result = extract_metadata(samples.make_pdf(tmp_path / "bare.pdf"), "DOCUMENT", "application/pdf")
    assert result["page_count"] == 1
    assert result["title"] is None and result["creation_date"] is None


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("D:20240102030405+05'30'", "2024-01-02T03:04:05+05:30"),
        ("D:20240102030405-08'00", "2024-01-02T03:04:05-08:00"),
        ("D:20240102030405Z", "2024-01-02T03:04:05+00:00"),
        ("D:20240102030405", "2024-01-02T03:04:05"),  # no zone in the file: none invented
        ("D:2024", "2024-01-01T00:00:00"),
        ("D:20241341000000Z", None),  # month 13
        ("yesterday", None),
        ("", None),
    ],
)
def test_pdf_dates_keep_their_own_time_zone(raw: str, iso: str | None) -> None:
    assert parse_pdf_date(raw) == iso


def test_docx_core_properties(tmp_path: Path) -> None:
    src = samples.make_docx(tmp_path / "report.docx")
    result = as_json(
        extract_metadata(src, "DOCUMENT", "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
    )
    assert result == {
        "format": "docx",
        "title": "Quarterly Report",
        "subject": "Royalties",
        "creator": "Ada Lovelace",
        "keywords": "royalty, q3",
        "description": "Draft for review",
        "category": None,
        "last_modified_by": "Grace Hopper",
        "revision": 7,
        "created": "2024-03-01T09:30:00Z",
        "modified": "2024-03-02T10:45:00Z",
        "application": "Microsoft Office Word",
        "pages": 3,
        "words": 1234,
    }


def test_docx_without_doc_props_gives_empty_fields(tmp_path: Path) -> None:
    src = samples.make_docx(tmp_path / "bare.docx", with_props=False)
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    result = extract_metadata(src, "DOCUMENT", mime)
    assert result["format"] == "docx" and result["title"] is None and "pages" not in result


def test_plain_text_counts(tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("first line\nsecond line here\nthird", encoding="utf-8")
    result = as_json(extract_metadata(src, "DOCUMENT", "text/plain; charset=us-ascii"))
    assert (result["line_count"], result["word_count"], result["char_count"]) == (3, 6, 33)
    assert result["text_excerpt"].startswith("first line")


def test_plain_text_word_split_across_read_chunks_is_counted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metadata, "_TEXT_READ_CHUNK", 4)
    src = tmp_path / "words.txt"
    src.write_text("alphabet soup is tasty\n")
    assert extract_metadata(src, "DOCUMENT", "text/plain")["word_count"] == 4


@pytest.mark.parametrize(("asset_type", "mime"), [("THREE_D", "model/gltf-binary"), ("OTHER", "application/zip")])
def test_types_without_extractor_give_empty_dict(tmp_path: Path, asset_type: str, mime: str) -> None:
    src = tmp_path / "thing.bin"
    src.write_bytes(b"payload")
    assert extract_metadata(src, asset_type, mime) == {}


def test_legacy_office_document_gives_empty_dict(tmp_path: Path) -> None:
    src = tmp_path / "old.doc"
    src.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504)
    assert extract_metadata(src, "DOCUMENT", "application/msword") == {}
