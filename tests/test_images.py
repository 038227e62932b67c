"""Safe image loading: every Pillow mode becomes RGB, EXIF is applied, bad files give one clear message."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from captioner.errors import ImageError
from captioner.inputs.images import load_for_model, open_image, original_size


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb / pixel-limit case)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    img = Image.new(mode, (12, 8))
    path = tmp_path / ("x.tiff" if mode in ("I;16", "I", "F", "CMYK") else "x.png")
    img.save(path)
    out = open_image(path)
    assert out.mode == "RGB" and out.size == (12, 8)


def test_transparency_is_composited_on_white(tmp_path):
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "t.png")
    assert open_image(tmp_path / "t.png").getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_greys_keep_their_contrast(tmp_path):
    img = Image.new("I;16", (2, 1))
    img.putpixel((0, 0), 1000)
    img.putpixel((1, 0), 60000)
    img.save(tmp_path / "g.png")
    out = open_image(tmp_path / "g.png")
    assert out.getpixel((0, 0))[0] < 20 and out.getpixel((1, 0))[0] > 235


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    img.save(tmp_path / "r.jpg", exif=exif)
    out = open_image(tmp_path / "r.jpg")
    assert out.size == (20, 40)
    assert original_size(out) == (20, 40)


def test_large_jpeg_is_decoded_reduced_but_reports_its_true_size(tmp_path):
    Image.new("RGB", (2000, 1500), (10, 20, 30)).save(tmp_path / "big.jpg")
    out = open_image(tmp_path / "big.jpg", draft_size=224)
    assert out.size[0] < 2000 and min(out.size) >= 224
    assert original_size(out) == (2000, 1500)
    t = load_for_model(tmp_path / "big.jpg", 224, (0.5,) * 3, (0.5,) * 3)
    assert t.shape == (3, 224, 224)


def _truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((256, 256), 50).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


BAD_FILES = {
    "empty.jpg": (b"", "empty"),
    "text.jpg": (b"this is not a picture\n" * 20, "not an image"),
    "truncated.jpg": (None, "corrupt or truncated"),
    "bomb.png": (_png_claiming(30000, 30000), "megapixels"),
    "over-limit.png": (_png_claiming(12000, 9000), "megapixels"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_one_clear_message(tmp_path, name):
    data, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(_truncated_jpeg() if data is None else data)
    with pytest.raises(ImageError) as info:
        open_image(path)
    msg = str(info.value)
    assert name in msg and reason in msg and "\n" not in msg


def test_folder_and_missing_path(tmp_path):
    with pytest.raises(ImageError, match="is a folder"):
        open_image(tmp_path)
    with pytest.raises(ImageError, match="file not found"):
        open_image(tmp_path / "nope.jpg")


def test_bytes_input(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (5, 6)).save(buf, "PNG")
    assert open_image(buf.getvalue()).size == (5, 6)
    with pytest.raises(ImageError, match="uploaded image"):
        open_image(b"garbage")
