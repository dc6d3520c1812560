"""A plain type icon for files that have no picture of their own (Office files, 3D, archives).

It is honest about what it is: a card with the file kind, never something that looks like a
rendered page.
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .office import DOCX, PPTX, XLSX

ICON_SIZE = 800
_BACKGROUND = (243, 244, 246)  # #f3f4f6
_CARD = (255, 255, 255)
_BORDER = (209, 213, 219)
_ACCENTS = {
    "DOCUMENT": (37, 99, 235),
    "THREE_D": (124, 58, 237),
    "OTHER": (75, 85, 99),
}
_CAPTIONS = {"DOCUMENT": "Document", "THREE_D": "3D model", "OTHER": "File"}
_LABELS = {
    DOCX: "DOCX",
    XLSX: "XLSX",
    PPTX: "PPTX",
    "application/msword": "DOC",
    "application/vnd.ms-excel": "XLS",
    "application/vnd.ms-powerpoint": "PPT",
    "application/vnd.ms-office": "OFFICE",
    "application/pdf": "PDF",
    "text/plain": "TXT",
    "text/csv": "CSV",
    "text/rtf": "RTF",
    "model/gltf-binary": "GLB",
    "model/gltf+json": "GLTF",
    "model/obj": "OBJ",
    "model/stl": "STL",
    "application/zip": "ZIP",
}
_EXTENSION = re.compile(r"^\.[A-Za-z0-9]{1,6}$")


def icon_label(mime: str, src: Path | None = None) -> str:
    """Short upper-case kind shown on the icon: from the MIME type, else the file extension."""
    label = _LABELS.get(mime.split(";", 1)[0].strip().lower())
    if label:
        return label
    if src is not None and _EXTENSION.match(src.suffix):
        return src.suffix[1:].upper()
    return "FILE"


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled default font, so nothing depends on fonts installed on the host.
    return ImageFont.load_default(size=size)


def draw_type_icon(label: str, asset_type: str) -> Image.Image:
    """An 800x800 RGB card: the kind label in large letters over a band naming the asset type."""
    image = Image.new("RGB", (ICON_SIZE, ICON_SIZE), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    accent = _ACCENTS.get(asset_type, _ACCENTS["OTHER"])
    card = (160, 100, 640, 700)
    draw.rounded_rectangle(card, radius=36, fill=_CARD, outline=_BORDER, width=6)
    # A folded corner and a band of the type's colour make it read as "a file" at 200 px too.
    draw.polygon([(540, 100), (640, 200), (540, 200)], fill=_BORDER)
    draw.rectangle((160, 520, 640, 600), fill=accent)
    label_font = _font(150 if len(label) <= 4 else 100)
    draw.text((400, 340), label, font=label_font, fill=accent, anchor="mm")
    draw.text((400, 560), _CAPTIONS.get(asset_type, "File"), font=_font(48), fill=_CARD, anchor="mm")
    return image
