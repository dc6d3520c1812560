"""Generators for the files the media tests feed in (Pillow, ffmpeg test sources, hand-made PDF/ZIP)."""

from __future__ import annotations

import io
import random
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

from PIL import Image


def run_ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args], check=True, timeout=120)


def make_video(path: Path, *, size: str = "320x240", seconds: float = 2, with_audio: bool = False) -> Path:
    inputs = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=25:duration={seconds}"]
    if with_audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    codecs = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast"]
    codecs += ["-c:a", "aac", "-shortest"] if with_audio else []
    run_ffmpeg(*inputs, *codecs, str(path))
    return path


def make_audio(path: Path, *, seconds: float = 2, tags: dict[str, str] | None = None, codec: str | None = None) -> Path:
    metadata = [arg for key, value in (tags or {}).items() for arg in ("-metadata", f"{key}={value}")]
    codec_args = ["-c:a", codec] if codec else []
    run_ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", *codec_args, *metadata, str(path))
    return path


def make_gradient_rgb(size: tuple[int, int]) -> Image.Image:
    """A picture with structure in both directions, so rotations are visible."""
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").rotate(90).resize(size)
    blue = Image.radial_gradient("L").resize(size)
    return Image.merge("RGB", (red, green, blue))


def make_jpeg(path: Path, size: tuple[int, int], *, orientation: int | None = None, quality: int = 90) -> Path:
    image = make_gradient_rgb(size)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, "JPEG", quality=quality, exif=exif.tobytes() if orientation is not None else b"")
    return path


def make_pdf(path: Path, *, text: str = "Hello PDF", pages: int = 1, info: dict[str, str] | None = None) -> Path:
    """A small valid PDF with real text (Helvetica) on US-letter pages and an optional Info dictionary."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * page} 0 R" for page in range(pages))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    font_id = 3 + 2 * pages
    for page in range(pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * page} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        stream = f"BT /F1 24 Tf 72 700 Td ({text} page {page + 1}) Tj ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    info_ref = ""
    if info:
        objects.append(("<< " + " ".join(f"/{key} ({value})" for key, value in info.items()) + " >>").encode())
        info_ref = f" /Info {len(objects)} 0 R"
    body = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, content in enumerate(objects, 1):
        offsets.append(len(body))
        body += b"%d 0 obj\n" % number + content + b"\nendobj\n"
    xref_at = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info_ref} >>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    path.write_bytes(bytes(body))
    return path


CORE_XML = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<dc:title>Quarterly Report</dc:title><dc:subject>Royalties</dc:subject><dc:creator>Ada Lovelace</dc:creator>
<cp:keywords>royalty, q3</cp:keywords><dc:description>Draft for review</dc:description>
<cp:lastModifiedBy>Grace Hopper</cp:lastModifiedBy><cp:revision>7</cp:revision>
<dcterms:created xsi:type="dcterms:W3CDTF">2024-03-01T09:30:00Z</dcterms:created>
<dcterms:modified xsi:type="dcterms:W3CDTF">2024-03-02T10:45:00Z</dcterms:modified>
</cp:coreProperties>"""
APP_XML = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">
<Application>Microsoft Office Word</Application><Pages>3</Pages><Words>1234</Words></Properties>"""


def make_docx(path: Path, *, with_props: bool = True, first_member: str = "[Content_Types].xml") -> Path:
    """A minimal WordprocessingML package; `first_member` lets a test reorder the archive."""
    members = {
        "[Content_Types].xml": "<Types xmlns='http://schemas.openxmlformats.org/package/2006/content-types'/>",
        "_rels/.rels": "<Relationships xmlns='http://schemas.openxmlformats.org/package/2006/relationships'/>",
        "word/document.xml": "<w:document xmlns:w='http://schemas.openxmlformats.org/wordprocessingml/2006/main'/>",
    }
    if with_props:
        members["docProps/core.xml"] = CORE_XML
        members["docProps/app.xml"] = APP_XML
    order = [first_member] + [name for name in members if name != first_member]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in order:
            archive.writestr(name, members.get(name, "x"))
    return path


def make_xlsx_with_mimetype_first(path: Path) -> Path:
    """An xlsx whose first member is not [Content_Types].xml: libmagic then calls it application/zip."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("[Content_Types].xml", "<Types/>")
    return path


def elf_header() -> bytes:
    """The 64-byte header of an x86-64 Linux executable."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    return ident + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x401000, 64, 0, 0, 64, 56, 0, 64, 0, 0)


def pe_header() -> bytes:
    """An MS-DOS stub pointing at a PE header, as every Windows .exe starts."""
    dos = bytearray(b"MZ" + b"\0" * 62)
    struct.pack_into("<I", dos, 0x3C, 64)
    return bytes(dos) + b"PE\0\0" + struct.pack("<HH", 0x14C, 1) + b"\0" * 200


def png_declaring_size(width: int, height: int) -> bytes:
    """A small PNG whose IHDR claims width x height (the decompression-bomb shape)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">II", data, 16, width, height)
    # The IHDR CRC must stay valid, or Pillow stops at the CRC rather than at the size check.
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def junk_bytes(size: int, seed: int = 20240601) -> bytes:
    """Random-looking bytes from a fixed seed: truly random input can, rarely, look like some format."""
    return random.Random(seed).randbytes(size)


# --- Inputs for the preview, conversion and watermark tests -------------------------------------


def make_clip(
    path: Path,
    *,
    size: str = "320x240",
    seconds: float = 2,
    rate: float = 25,
    with_audio: bool = False,
    noisy: bool = False,
    video_filter: str | None = None,
    audio_codec: str = "aac",
) -> Path:
    """A test-pattern video; `noisy` adds grain so the encoder must spend its whole bit budget."""
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if with_audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    filters = [f for f in ("noise=alls=60:allf=t" if noisy else None, video_filter) if f]
    codecs = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast"]
    codecs += ["-vf", ",".join(filters)] if filters else []
    codecs += ["-c:a", audio_codec, "-shortest"] if with_audio else []
    run_ffmpeg(*inputs, *codecs, str(path))
    return path


def make_marker_video(path: Path, *, seconds: float, size: str = "160x120", segments: list[tuple[float, str]]) -> Path:
    """Black video whose colour switches at given times: [(from_seconds, colour), ...]."""
    boxes = [f"drawbox=x=0:y=0:w=iw:h=ih:color={colour}:t=fill:enable='gte(t,{start})'" for start, colour in segments]
    run_ffmpeg(
        "-f", "lavfi", "-i", f"color=c=black:s={size}:r=25:d={seconds}", "-vf", ",".join(boxes),
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", str(path),
    )  # fmt: skip
    return path


def make_noise_audio(path: Path, *, seconds: float = 2, sample_rate: int = 44100, channels: int = 2) -> Path:
    """Pink noise: unlike a sine, it makes AAC use the bit rate it is given."""
    layout = "stereo" if channels == 2 else "mono"
    run_ffmpeg(
        "-f", "lavfi", "-i", f"anoisesrc=color=pink:duration={seconds}:sample_rate={sample_rate}:amplitude=0.5",
        "-af", f"aformat=channel_layouts={layout}", str(path),
    )  # fmt: skip
    return path


def make_delayed_tone(path: Path, *, seconds: float, tone_from: float, sample_rate: int = 8000) -> Path:
    """Silence until `tone_from`, then a 440 Hz tone: shows where a clip was cut from."""
    expression = f"if(gte(t\\,{tone_from})\\,0.5*sin(2*PI*440*t)\\,0)"
    run_ffmpeg("-f", "lavfi", "-i", f"aevalsrc={expression}:s={sample_rate}:d={seconds}", str(path))
    return path


def make_rgba_png(path: Path, size: tuple[int, int] = (300, 200)) -> Path:
    """Left half opaque gradient, right half fully transparent."""
    image = make_gradient_rgb(size).convert("RGBA")
    alpha = Image.new("L", size, 255)
    alpha.paste(0, (size[0] // 2, 0, size[0], size[1]))
    image.putalpha(alpha)
    image.save(path, "PNG")
    return path


def make_flat_image(path: Path, size: tuple[int, int] = (400, 300), colour: tuple[int, int, int] = (0, 0, 0)) -> Path:
    """One colour everywhere, so any change made by a watermark is easy to locate."""
    Image.new("RGB", size, colour).save(path)
    return path


def make_logo_png(path: Path, size: tuple[int, int] = (100, 50)) -> Path:
    """An opaque red rectangle: easy to find in a watermarked picture."""
    Image.new("RGBA", size, (255, 0, 0, 255)).save(path, "PNG")
    return path


def ffprobe_json(path: Path) -> dict:
    """ffprobe's view of a file, run directly rather than through the code under test."""
    import json

    output = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return json.loads(output)


def streams_of(path: Path, codec_type: str) -> list[dict]:
    return [stream for stream in ffprobe_json(path)["streams"] if stream["codec_type"] == codec_type]


def frame_at(path: Path, seconds: float = 0, *, from_end: float | None = None) -> Image.Image:
    """One decoded frame as RGB, `seconds` from the start or `from_end` seconds before the end."""
    seek = ["-sseof", f"-{from_end}"] if from_end is not None else ["-ss", f"{seconds}"]
    output = subprocess.run(
        ["ffmpeg", "-v", "error", *seek, "-i", str(path), "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return Image.open(io.BytesIO(output)).convert("RGB")
