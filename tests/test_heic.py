"""HEIC/HEIF photos (phones) are read wherever photos are read: files made in the test by pillow-heif."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from captioner.cli.main import main
from captioner.errors import ImageError
from captioner.inputs.images import IMAGE_EXTENSIONS, open_image
from captioner.inputs.sources import expand_inputs


def heic_bytes(width: int = 64, height: int = 32, orientation: int | None = None) -> bytes:
    """A HEIC photo: the left half white, the right half black (a layout that shows a rotation)."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = 255
    buf = io.BytesIO()
    kwargs = {"quality": 90}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    Image.fromarray(arr).save(buf, "HEIF", **kwargs)
    data = buf.getvalue()
    assert data[4:12] == b"ftypheic"
    return data


def test_heic_opens_as_rgb_with_its_pixels(tmp_path):
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(heic_bytes())
    img = open_image(path)
    assert img.mode == "RGB" and img.size == (64, 32)
    arr = np.asarray(img).astype(int)
    assert arr[:, :28].mean() > 240 and arr[:, 36:].mean() < 15  # lossy, but the halves are clear


def test_heic_rotation_is_applied_once(tmp_path):
    """EXIF orientation 6 (turn 90 degrees clockwise): libheif turns it, the EXIF is then marked upright,
    so the photo comes out 32 wide and 64 tall with the white half on top, not turned twice."""
    path = tmp_path / "rotated.heic"
    path.write_bytes(heic_bytes(orientation=6))
    img = open_image(path)
    assert img.size == (32, 64)
    arr = np.asarray(img).astype(int)
    assert arr[:28].mean() > 240 and arr[36:].mean() < 15


def test_folders_find_heic_and_heif(tmp_path):
    for name in ("a.heic", "b.HEIF", "c.jpg", "d.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert {".heic", ".heif"} <= IMAGE_EXTENSIONS
    assert [p.rsplit("/", 1)[-1] for p in expand_inputs([str(tmp_path)])] == ["a.heic", "b.HEIF", "c.jpg"]


def test_a_corrupt_heic_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.heic"
    path.write_bytes(heic_bytes()[:300])
    with pytest.raises(ImageError, match="broken.heic"):
        open_image(path)


def test_caption_a_folder_with_heic(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "phone.heic").write_bytes(heic_bytes())
    assert main(["caption", str(tmp_path), "--json", "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert '"image": "' + str(tmp_path / "phone.heic") in out and '"error": null' in out


def test_the_gallery_stores_a_heic_photo(tmp_path):
    from captioner.storage import Gallery

    data = heic_bytes()
    gallery = Gallery(tmp_path / "g")
    item_id = gallery.save(data, "phone.heic", "a white and black photo")
    item = gallery.get(item_id)
    assert item["width"] == 64 and item["height"] == 32
    with open(item["image_path"], "rb") as fh:
        assert fh.read() == data  # stored as given, byte for byte
    gallery.close()


def test_without_pillow_heif_the_error_says_what_to_install(tmp_path):
    path = tmp_path / "phone.heic"
    path.write_bytes(heic_bytes())
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'pillow_heif':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from captioner.inputs.images import open_image\n"
        "from captioner.errors import ImageError\n"
        f"try:\n    open_image({str(path)!r})\nexcept ImageError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "phone.heic" in proc.stdout and "pip install pillow-heif" in proc.stdout
