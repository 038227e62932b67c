"""Captions written into photos' metadata (captioner.metadata) and read back with independent readers:
exiftool when installed, Pillow's EXIF, the XMP parsed as XML; the image data is checked byte for byte."""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from captioner.cli.main import main
from captioner.metadata import (
    MetadataError,
    backup_path,
    photo_with_caption,
    read_caption,
    sidecar_path,
    write_caption,
    xmp_sidecar,
)
from captioner.metadata.alt_text import html_alt_snippet

CAPTION = 'Ein Hund läuft am Strand — 犬 🐕 "quoted" <b> & co'
EXIFTOOL = shutil.which("exiftool")
FORMATS = [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("TIFF", "tif")]


def photo_bytes(fmt: str, seed: int = 0, exif: Image.Exif | None = None) -> bytes:
    rng = np.random.RandomState(seed)
    img = Image.fromarray((rng.rand(24, 40, 3) * 255).astype(np.uint8))
    buf = io.BytesIO()
    kwargs = {"exif": exif.tobytes()} if exif is not None else {}
    if fmt == "WEBP":
        kwargs["lossless"] = True
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def pixels(data_or_path) -> np.ndarray:
    src = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    with Image.open(src) as img:
        return np.asarray(img.convert("RGB"))


def image_data(data: bytes, fmt: str) -> bytes:
    """The compressed image data, parsed independently of exiv2: JPEG every segment but APPn and COM
    (plus the entropy-coded scan), PNG the IHDR and IDAT chunks, WebP the VP8/VP8L chunk; TIFF: None
    (its strips move when the IFD grows; its pixels are compared instead)."""
    if fmt == "JPEG":
        out, i = [], 2
        while i < len(data):
            assert data[i] == 0xFF
            marker = data[i + 1]
            if marker == 0xDA:  # start of scan: everything after is image data
                out.append(data[i:])
                break
            length = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
                out.append(data[i : i + 2 + length])
            i += 2 + length
        return b"".join(out)
    if fmt == "PNG":
        out, i = [], 8
        while i < len(data):
            length, kind = struct.unpack(">I4s", data[i : i + 8])
            if kind in (b"IHDR", b"IDAT", b"PLTE"):
                out.append(data[i : i + 12 + length])
            i += 12 + length
        return b"".join(out)
    if fmt == "WEBP":
        out, i = [], 12
        while i < len(data):
            kind, length = struct.unpack("<4sI", data[i : i + 8])
            if kind in (b"VP8 ", b"VP8L", b"ALPH"):
                out.append(data[i : i + 8 + length])
            i += 8 + length + (length & 1)
        return b"".join(out)
    return b""


def exiftool(path) -> dict:
    out = subprocess.run([EXIFTOOL, "-j", "-charset", "iptc=UTF8", "-XMP-dc:Description", "-EXIF:ImageDescription",
                          "-IPTC:Caption-Abstract", "-IPTC:CodedCharacterSet", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def pil_exif_description(path) -> str | None:
    """EXIF ImageDescription as Pillow reads it (it decodes the bytes as Latin-1; they are UTF-8)."""
    with Image.open(path) as img:
        value = img.getexif().get(270)
    return None if value is None else value.encode("latin-1").decode("utf-8")


# ------------------------------------------------------------------ embed
@pytest.mark.parametrize("fmt,ext", FORMATS)
def test_embed_writes_xmp_exif_iptc_and_leaves_the_image_data_alone(tmp_path, fmt, ext):
    original = photo_bytes(fmt)
    photo = tmp_path / f"photo.{ext}"
    photo.write_bytes(original)
    os.chmod(photo, 0o640)

    assert write_caption(photo, CAPTION, mode="embed") == photo
    new = photo.read_bytes()
    assert new != original
    assert np.array_equal(pixels(new), pixels(original))
    assert image_data(new, fmt) == image_data(original, fmt)
    if fmt != "TIFF":
        assert image_data(new, fmt)  # the parser found the data
    assert (os.stat(photo).st_mode & 0o777) == 0o640
    # the backup holds the original, byte for byte
    assert backup_path(photo) == tmp_path / f"photo.{ext}.bak"
    assert backup_path(photo).read_bytes() == original

    found = read_caption(photo)
    assert found["xmp"] == CAPTION and found["exif"] == CAPTION and found["sidecar"] is None
    assert found["iptc"] == (None if fmt == "WEBP" else CAPTION)  # exiv2 writes no IPTC into WebP
    assert pil_exif_description(photo) == CAPTION
    if EXIFTOOL:
        tags = exiftool(photo)
        assert tags["Description"] == CAPTION and tags["ImageDescription"] == CAPTION
        if fmt != "WEBP":
            assert tags["Caption-Abstract"] == CAPTION and tags["CodedCharacterSet"] == "UTF8"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([photo.name, f"{photo.name}.bak"])  # no temp files


def test_second_write_keeps_the_first_backup_and_no_backup_means_none(tmp_path):
    original = photo_bytes("JPEG")
    photo = tmp_path / "a.jpg"
    photo.write_bytes(original)
    write_caption(photo, "first", mode="embed")
    write_caption(photo, "second", mode="embed")
    assert read_caption(photo)["xmp"] == "second" and read_caption(photo)["exif"] == "second"
    assert backup_path(photo).read_bytes() == original  # still the photo as it was before any caption

    other = tmp_path / "b.png"
    other.write_bytes(photo_bytes("PNG"))
    write_caption(other, "no backup", mode="embed", backup=False)
    assert not backup_path(other).exists() and read_caption(other)["xmp"] == "no backup"


def test_embed_keeps_the_other_exif(tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif[0x0110] = "Model X"
    exif[0x0112] = 6  # rotated: photo managers must still turn it
    photo = tmp_path / "cam.jpg"
    photo.write_bytes(photo_bytes("JPEG", exif=exif))
    write_caption(photo, "a dog", mode="embed", backup=False)
    with Image.open(photo) as img:
        tags = img.getexif()
    assert tags[0x010F] == "CameraMaker" and tags[0x0110] == "Model X" and tags[0x0112] == 6
    assert tags[270] == "a dog"


def test_heic_gif_bmp_embedding_is_refused_in_one_line_and_the_file_is_untouched(tmp_path):
    pillow_heif.register_heif_opener()
    for fmt, ext in (("HEIF", "heic"), ("GIF", "gif"), ("BMP", "bmp")):
        photo = tmp_path / f"p.{ext}"
        photo.write_bytes(photo_bytes(fmt))
        before = photo.read_bytes()
        with pytest.raises(MetadataError) as err:
            write_caption(photo, "a dog", mode="embed")
        message = str(err.value)
        assert str(photo) in message and "sidecar" in message and "\n" not in message
        assert photo.read_bytes() == before and not backup_path(photo).exists()
        # a sidecar works for every format
        write_caption(photo, "a dog", mode="sidecar")
        assert read_caption(photo)["sidecar"] == "a dog"


def test_corrupt_and_missing_files_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo_bytes("JPEG")[:200])
    with pytest.raises(MetadataError, match="broken.jpg"):
        write_caption(broken, "a dog", mode="embed")
    assert not backup_path(broken).exists()
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    with pytest.raises(MetadataError, match="notes.jpg"):
        write_caption(not_image, "a dog", mode="embed")
    with pytest.raises(MetadataError, match="file not found"):
        write_caption(tmp_path / "missing.jpg", "a dog")
    with pytest.raises(MetadataError, match="is a folder"):
        write_caption(tmp_path, "a dog")
    with pytest.raises(MetadataError, match="unknown metadata mode"):
        write_caption(broken, "a dog", mode="exif")


def test_a_failed_replace_leaves_the_photo_and_no_temporary_file(tmp_path, monkeypatch):
    original = photo_bytes("JPEG")
    photo = tmp_path / "a.jpg"
    photo.write_bytes(original)

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(MetadataError, match="No space left on device.*unchanged"):
        write_caption(photo, "a dog", mode="embed", backup=False)
    assert photo.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["a.jpg"]


def test_read_only_photo_is_refused(tmp_path):
    """A read-only photo (no write bit) is refused, even for root and in a writable folder, where a rename
    could replace it."""
    photo = tmp_path / "a.jpg"
    original = photo_bytes("JPEG")
    photo.write_bytes(original)
    os.chmod(photo, 0o444)
    with pytest.raises(MetadataError, match="read-only"):
        write_caption(photo, "a dog", mode="embed")
    assert photo.read_bytes() == original and not backup_path(photo).exists()


def test_embed_refuses_a_symlink_and_changes_nothing_where_it_points(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real = elsewhere / "real.jpg"
    original = photo_bytes("JPEG")
    real.write_bytes(original)
    album = tmp_path / "album"
    album.mkdir()
    link = album / "link.jpg"
    link.symlink_to(real)
    with pytest.raises(MetadataError, match="symbolic link"):
        write_caption(link, "a dog", mode="embed")
    assert link.is_symlink() and real.read_bytes() == original
    assert sorted(p.name for p in elsewhere.iterdir()) == ["real.jpg"]  # no .bak written beside the target
    assert write_caption(link, "a dog", mode="sidecar") == album / "link.jpg.xmp"  # a sidecar beside the link is fine
    assert real.read_bytes() == original


def test_embed_refuses_a_hard_link_rather_than_split_it(tmp_path):
    photo = tmp_path / "a.jpg"
    original = photo_bytes("JPEG")
    photo.write_bytes(original)
    twin = tmp_path / "same-photo.jpg"
    os.link(photo, twin)
    with pytest.raises(MetadataError, match="hard link"):
        write_caption(photo, "a dog", mode="embed")
    assert os.stat(photo).st_ino == os.stat(twin).st_ino and photo.read_bytes() == original
    assert not backup_path(photo).exists()


def test_an_unrelated_backup_name_is_never_overwritten_nor_taken_for_the_backup(tmp_path):
    photo = tmp_path / "photo.jpg"
    original = photo_bytes("JPEG")
    photo.write_bytes(original)
    backup_path(photo).write_bytes(b"someone else's file")
    write_caption(photo, "a dog", mode="embed")
    assert backup_path(photo).read_bytes() == b"someone else's file"  # untouched
    assert (tmp_path / "photo.jpg.1.bak").read_bytes() == original  # the original, at the first free name
    captioned = photo.read_bytes()
    write_caption(photo, "a cat", mode="embed")
    assert (tmp_path / "photo.jpg.2.bak").read_bytes() == captioned  # the version it replaced, kept too
    write_caption(photo, "a cat", mode="embed")  # (a run that changes nothing new)
    write_caption(photo, "a cat", mode="embed")  # these very bytes are backed up already: no new copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg", "photo.jpg.1.bak", "photo.jpg.2.bak",
                                                          "photo.jpg.3.bak", "photo.jpg.bak"]


def test_captions_are_cleaned_and_empty_ones_refused(tmp_path):
    photo = tmp_path / "a.png"
    photo.write_bytes(photo_bytes("PNG"))
    write_caption(photo, "  a dog\x00 runs\x07  ", mode="embed")
    assert read_caption(photo)["xmp"] == "a dog runs"
    for bad in ("", "   ", "\x00\x01"):
        with pytest.raises(MetadataError, match="caption is empty"):
            write_caption(photo, bad, mode="embed")
    long_caption = "ü" * 1500  # 3000 UTF-8 bytes: IPTC keeps its 2000-byte limit, XMP and EXIF the whole text
    write_caption(photo, long_caption, mode="embed")
    found = read_caption(photo)
    assert found["xmp"] == long_caption and found["exif"] == long_caption and found["iptc"] == "ü" * 1000


# ------------------------------------------------------------------ sidecar
XMP_NS = {"x": "adobe:ns:meta/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
          "dc": "http://purl.org/dc/elements/1.1/", "xml": "http://www.w3.org/XML/1998/namespace"}


def xml_description(path) -> str:
    """dc:description's x-default text, read from the sidecar as plain XML."""
    root = ET.fromstring(path.read_bytes())
    li = root.find(".//dc:description/rdf:Alt/rdf:li", XMP_NS)
    assert li.get("{http://www.w3.org/XML/1998/namespace}lang") == "x-default"
    return li.text


def test_sidecar_is_photo_name_plus_xmp_and_the_photo_is_untouched(tmp_path):
    original = photo_bytes("JPEG")
    photo = tmp_path / "IMG_0001.JPG"
    photo.write_bytes(original)
    target = write_caption(photo, CAPTION)  # sidecar is the default
    assert target == sidecar_path(photo) == tmp_path / "IMG_0001.JPG.xmp"
    assert photo.read_bytes() == original
    assert xml_description(target) == CAPTION
    assert read_caption(photo) == {"xmp": None, "exif": None, "iptc": None, "sidecar": CAPTION}
    if EXIFTOOL:
        assert exiftool(target)["Description"] == CAPTION
    assert not backup_path(target).exists()  # nothing existed to back up


def test_an_existing_sidecar_keeps_its_other_properties_and_is_backed_up(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(photo_bytes("JPEG"))
    existing = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
                '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
                'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4">'
                '<dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>'
                '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">old words</rdf:li></rdf:Alt></dc:description>'
                '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()
    sidecar_path(photo).write_bytes(existing)
    write_caption(photo, "a dog on the beach")
    assert xml_description(sidecar_path(photo)) == "a dog on the beach"
    text = sidecar_path(photo).read_text("utf-8")
    assert "holiday" in text and "Rating" in text and "old words" not in text
    assert backup_path(sidecar_path(photo)).read_bytes() == existing


def test_a_broken_sidecar_is_reported_and_kept(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(photo_bytes("JPEG"))
    sidecar_path(photo).write_text("<not xml")
    with pytest.raises(MetadataError, match=r"a\.jpg\.xmp.*not a valid XMP"):
        write_caption(photo, "a dog")
    assert sidecar_path(photo).read_text() == "<not xml"


# ------------------------------------------------------------------ bytes for a download
@pytest.mark.parametrize("fmt,ext", FORMATS)
def test_photo_with_caption_returns_a_captioned_copy(fmt, ext, tmp_path):
    original = photo_bytes(fmt, seed=3)
    out = photo_with_caption(original, CAPTION)
    assert np.array_equal(pixels(out), pixels(original))
    assert image_data(out, fmt) == image_data(original, fmt)
    path = tmp_path / f"download.{ext}"
    path.write_bytes(out)
    assert read_caption(path)["xmp"] == CAPTION and pil_exif_description(path) == CAPTION
    if EXIFTOOL:
        assert exiftool(path)["Description"] == CAPTION


def test_photo_with_caption_refuses_what_it_cannot_write():
    with pytest.raises(MetadataError, match="GIF"):
        photo_with_caption(photo_bytes("GIF"), "a dog")
    with pytest.raises(MetadataError, match="not an image"):
        photo_with_caption(b"hello world" * 10, "a dog")
    with pytest.raises(MetadataError, match="empty"):
        photo_with_caption(b"", "a dog")


def test_xmp_sidecar_bytes_for_a_download(tmp_path):
    path = tmp_path / "photo.heic.xmp"
    path.write_bytes(xmp_sidecar(CAPTION))
    assert xml_description(path) == CAPTION
    with pytest.raises(MetadataError, match="empty"):
        xmp_sidecar("  ")


# ------------------------------------------------------------------ alt text
def test_html_alt_snippet_escapes():
    line = html_alt_snippet("images/ab/c d.jpg", 'a "dog" <b> & cat', 500, 375)
    assert line == ('<img src="images/ab/c%20d.jpg" alt="a &quot;dog&quot; &lt;b&gt; &amp; cat" '
                    'width="500" height="375">')


def test_gallery_export_html_alt(tmp_path, capsys):
    from html.parser import HTMLParser

    from captioner.storage import Gallery

    gallery = Gallery(tmp_path / "g")
    first = gallery.save(photo_bytes("JPEG", seed=1), "one.jpg", 'a "dog" <runs> & jumps', width=40, height=24)
    gallery.save(photo_bytes("PNG", seed=2), "two.png", "a cat sits", width=40, height=24)
    gallery.close()
    out = tmp_path / "site" / "alt.html"
    assert main(["gallery", "export", str(out), "--format", "html-alt", "--gallery", str(tmp_path / "g")]) == 0
    assert "exported 2 items" in capsys.readouterr().out

    class Imgs(HTMLParser):
        found: list = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.found.append(dict(attrs))

    parser = Imgs()
    parser.feed(out.read_text("utf-8"))
    alts = {img["alt"] for img in parser.found}
    assert alts == {'a "dog" <runs> & jumps', "a cat sits"}
    for img in parser.found:
        assert not os.path.isabs(img["src"]) and img["src"].startswith("../g/images/")
        assert (out.parent / img["src"]).is_file()
    assert "<runs>" not in out.read_text("utf-8")  # escaped, not markup
    # inside the gallery folder the paths are the gallery's own
    assert main(["gallery", "export", str(tmp_path / "g" / "alt.html"), "--gallery", str(tmp_path / "g")]) == 0
    assert 'src="images/' in (tmp_path / "g" / "alt.html").read_text("utf-8")
    if hasattr(Gallery, "delete") and hasattr(Gallery, "restore"):  # trashed items are left out (schema v4)
        gallery = Gallery(tmp_path / "g")
        gallery.delete(first)
        gallery.close()
        assert main(["gallery", "export", str(out), "--format", "html-alt", "--gallery", str(tmp_path / "g")]) == 0
        assert "a cat sits" in out.read_text("utf-8") and "dog" not in out.read_text("utf-8")


# ------------------------------------------------------------------ captioner caption --write-metadata
def test_caption_write_metadata_embed_reports_each_failure_and_goes_on(tiny_model_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    jpg, png, bmp, bad = folder / "a.jpg", folder / "b.png", folder / "c.bmp", folder / "d.jpg"
    jpg.write_bytes(photo_bytes("JPEG", 1))
    png.write_bytes(photo_bytes("PNG", 2))
    bmp.write_bytes(photo_bytes("BMP", 3))
    bad.write_bytes(b"not a photo")
    code = main(["caption", str(folder), "--write-metadata", "embed", "--model", str(tiny_model_dir)])
    out, err = capsys.readouterr()
    assert code == 1
    captions = dict(line.split("\t") for line in out.splitlines())
    assert read_caption(jpg)["xmp"] == captions[str(jpg)] and read_caption(jpg)["exif"] == captions[str(jpg)]
    assert read_caption(png)["xmp"] == captions[str(png)]
    assert backup_path(jpg).exists() and backup_path(png).exists()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2  # the BMP cannot take embedded metadata; d.jpg is not a photo
    assert any(str(bmp) in e and "sidecar" in e for e in errors) and any(str(bad) in e for e in errors)
    assert "1 caption(s) could not be written" in err


def test_caption_write_metadata_sidecar_no_backup(tiny_model_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    jpg = folder / "a.jpg"
    jpg.write_bytes(photo_bytes("JPEG", 1))
    before = jpg.read_bytes()
    assert main(["caption", str(folder), "--write-metadata", "sidecar", "--no-backup",
                 "--model", str(tiny_model_dir)]) == 0
    caption = capsys.readouterr().out.strip()
    assert jpg.read_bytes() == before and xml_description(sidecar_path(jpg)) == caption
    # a second run updates the sidecar and, asked for no backup, keeps none
    assert main(["caption", str(jpg), "--write-metadata", "sidecar", "--no-backup",
                 "--model", str(tiny_model_dir)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["a.jpg", "a.jpg.xmp"]
