"""Content-based file type detection and the declared-type check.

The type always comes from the bytes (python-magic / libmagic), never from the file name:
an executable renamed to photo.jpg must be recognised as an executable.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import magic

from .errors import MediaError
from .office import DOCX, PPTX, XLSX, ooxml_mime_for_zip
from .tools import ensure_not_empty

IMAGE, VIDEO, AUDIO, DOCUMENT, THREE_D, OTHER = "IMAGE", "VIDEO", "AUDIO", "DOCUMENT", "THREE_D", "OTHER"
ASSET_TYPES = (IMAGE, VIDEO, AUDIO, DOCUMENT, THREE_D, OTHER)

# Canonical names first, then the aliases libmagic 5.x actually reports for the same content.
ALLOWED_MIME_TYPES: dict[str, str] = {
    # images
    "image/jpeg": IMAGE,
    "image/png": IMAGE,
    "image/gif": IMAGE,
    "image/webp": IMAGE,
    "image/tiff": IMAGE,
    # video
    "video/mp4": VIDEO,
    "video/quicktime": VIDEO,
    "video/webm": VIDEO,
    "video/x-matroska": VIDEO,
    "video/x-m4v": VIDEO,  # libmagic's name for iTunes-branded MP4
    # audio
    "audio/mpeg": AUDIO,
    "audio/wav": AUDIO,
    "audio/x-wav": AUDIO,  # libmagic's name for WAV
    "audio/vnd.wave": AUDIO,
    "audio/flac": AUDIO,
    "audio/x-flac": AUDIO,
    "audio/ogg": AUDIO,  # libmagic reports Vorbis and Opus files alike as audio/ogg
    "audio/mp4": AUDIO,
    "audio/x-m4a": AUDIO,  # libmagic's name for .m4a
    "audio/aac": AUDIO,
    "audio/x-hx-aac-adts": AUDIO,  # libmagic's name for raw AAC (ADTS)
    # documents
    "application/pdf": DOCUMENT,
    DOCX: DOCUMENT,
    XLSX: DOCUMENT,
    PPTX: DOCUMENT,
    "application/msword": DOCUMENT,
    "application/vnd.ms-excel": DOCUMENT,
    "application/vnd.ms-powerpoint": DOCUMENT,
    "application/vnd.ms-office": DOCUMENT,  # libmagic's name for an OLE2 Office file it cannot narrow down
    "text/plain": DOCUMENT,
    "text/csv": DOCUMENT,
    "text/rtf": DOCUMENT,
    # 3D models
    "model/gltf-binary": THREE_D,
    "model/gltf+json": THREE_D,
    "model/obj": THREE_D,
    "model/stl": THREE_D,
    # archives
    "application/zip": OTHER,
}

# Containers libmagic names "video/..." even when they hold only sound (an .m4a saved as .mp4,
# an audio-only .webm or .mkv): an AUDIO upload in one of them is not a mismatch.
_AUDIO_CAPABLE_VIDEO_CONTAINERS = {"video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/x-m4v"}
# Many 3D interchange formats (ASCII PLY, OBJ variants) are plain text to libmagic, and USDZ is a ZIP.
_THREE_D_CONTAINERS = {"text/plain", "application/zip"}

_EXECUTABLE_MIME_PATTERNS = re.compile(
    r"x-dosexec|portable-executable|x-executable|x-pie-executable|x-sharedlib|x-mach-binary"
    r"|x-msdownload|x-msi|java-archive|x-shellscript|x-sh$|x-python|x-perl|x-php|javascript|x-bat",
)
_OBJ_KEYWORDS = {"v", "vt", "vn", "vp", "f", "l", "p", "o", "g", "s", "mtllib", "usemtl", "cstype", "deg", "curv"}
_SNIFF_BYTES = 65_536


def _normalise(mime: str) -> str:
    """Lower-case type/subtype without parameters: 'Text/Plain; charset=utf-8' -> 'text/plain'.

    libmagic sometimes appends a description after a comma ("application/x-executable, no program
    header" for a stripped ELF), so that is cut off too.
    """
    return mime.split(";", 1)[0].split(",", 1)[0].strip().lower()


def _looks_like_obj(head: str) -> bool:
    """Wavefront OBJ: every meaningful line starts with an OBJ keyword and there are vertices and faces."""
    keywords = set()
    for line in head.splitlines()[:2000]:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword = stripped.split(None, 1)[0]
        if keyword not in _OBJ_KEYWORDS:
            return False
        keywords.add(keyword)
    return "v" in keywords and bool(keywords & {"f", "l", "p"})


def _looks_like_ascii_stl(head: str) -> bool:
    return head.lstrip().startswith("solid") and "facet normal" in head and "vertex" in head


def _looks_like_binary_stl(path: Path, head: bytes) -> bool:
    """Binary STL has no magic number; its size is exactly 84 + 50 * triangle count."""
    if len(head) < 84:
        return False
    (triangles,) = struct.unpack_from("<I", head, 80)
    return triangles > 0 and path.stat().st_size == 84 + 50 * triangles


def _looks_like_gltf_json(head: str) -> bool:
    return head.lstrip().startswith("{") and '"asset"' in head and '"version"' in head


def _refine(mime: str, path: Path) -> str:
    """Correct libmagic where it names a container instead of the format inside it."""
    if mime in {"application/zip", "application/octet-stream"}:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
        if head.startswith(b"PK\x03\x04"):
            return ooxml_mime_for_zip(path) or "application/zip"
        if head.startswith(b"glTF"):
            return "model/gltf-binary"
        if mime == "application/octet-stream" and _looks_like_binary_stl(path, head):
            return "model/stl"
    elif mime in {"text/plain", "application/json"}:
        with path.open("rb") as handle:
            head_text = handle.read(_SNIFF_BYTES).decode("utf-8", errors="replace")
        if mime == "application/json" and _looks_like_gltf_json(head_text):
            return "model/gltf+json"
        if mime == "text/plain" and _looks_like_obj(head_text):
            return "model/obj"
        if mime == "text/plain" and _looks_like_ascii_stl(head_text):
            return "model/stl"
    return mime


def detect_mime(path: str | Path) -> str:
    """The MIME type of the file's content (libmagic, refined for OOXML, glTF, OBJ and STL).

    Raises MediaError for a missing or zero-byte file rather than returning "inode/x-empty".
    """
    path = Path(path)
    ensure_not_empty(path)
    try:
        detected = _normalise(magic.from_file(str(path), mime=True))
    except (magic.MagicException, OSError) as exc:
        raise MediaError(f"Could not detect the file type: {exc}") from exc
    return _refine(detected, path)


def asset_type_for_mime(mime: str) -> str | None:
    """IMAGE / VIDEO / AUDIO / DOCUMENT / THREE_D / OTHER for an allowed MIME type, else None."""
    return ALLOWED_MIME_TYPES.get(_normalise(mime))


def _is_executable(mime: str) -> bool:
    return bool(_EXECUTABLE_MIME_PATTERNS.search(mime))


def check_declared_type(detected_mime: str, declared_type: str | None) -> str | None:
    """A rejection reason when the content does not fit the declared asset type, else None.

    With no declared type only the allow-list applies. OTHER accepts any allowed content.
    """
    mime = _normalise(detected_mime)
    if declared_type is not None and declared_type not in ASSET_TYPES:
        return f"Unknown asset type {declared_type!r}"
    declared = f"declared {declared_type} but " if declared_type else ""
    if _is_executable(mime):
        return f"File signature mismatch: {declared}the content is an executable or script ({mime})"
    detected_type = asset_type_for_mime(mime)
    if detected_type is None:
        if mime == "inode/x-empty":
            return "The file is empty"
        return f"File type {mime} is not allowed"
    if declared_type is None or declared_type in (detected_type, OTHER):
        return None
    if declared_type == AUDIO and mime in _AUDIO_CAPABLE_VIDEO_CONTAINERS:
        return None
    if declared_type == THREE_D and mime in _THREE_D_CONTAINERS:
        return None
    return f"File signature mismatch: declared {declared_type} but detected {mime} ({detected_type})"
