"""The studio in a real browser (Debian chromium driven by Playwright).

Uploads photos through the page, captions them, checks the candidate cards and their attention
animations, saves two captions, finds them in the Gallery tab, and takes the screenshots
studio-caption.png and studio-gallery.png: into $CAPTIONER_SCREENSHOTS_DIR if set, else into the
test's temporary folder. The test never writes into docs/: scripts/update_screenshots.py runs it
with CAPTIONER_SCREENSHOTS_DIR set and copies the two screenshots to docs/ on purpose.

Model: $CAPTIONER_STUDIO_TEST_MODEL if set, else the shipped default model when it is installed
(so the screenshots show real captions), else the tiny random test model.
"""
from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from oracles.photos import scene_photos
from studio_server import start_studio, stop_studio

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ("studio-caption.png", "studio-gallery.png")
BEAM = 4
TIMEOUT_MS = 90_000


def _model_dir(tiny_model_dir: Path) -> Path:
    if os.environ.get("CAPTIONER_STUDIO_TEST_MODEL"):
        return Path(os.environ["CAPTIONER_STUDIO_TEST_MODEL"])
    from captioner.pipeline import default_model_dir
    shipped = default_model_dir()
    return shipped if (shipped / "config.json").is_file() else tiny_model_dir


def _screenshot_dir(tmp_path: Path) -> Path:
    """$CAPTIONER_SCREENSHOTS_DIR (set by scripts/update_screenshots.py), else a temporary folder."""
    folder = Path(os.environ.get("CAPTIONER_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def studio_url(tiny_model_dir, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    folder = tmp_path_factory.mktemp("browser")
    proc, url = start_studio(_model_dir(tiny_model_dir), folder / "gallery", folder / "studio.log")
    yield url
    stop_studio(proc)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Generated scenes (sky, field, a ball): the screenshots must not show Flickr8k photos, whose
    licence keeps them out of the repository."""
    return scene_photos(tmp_path_factory.mktemp("photos"), 3)


def _gif_frames(src: str) -> int:
    assert src.startswith("data:image/gif;base64,"), src[:40]
    with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as gif:
        assert gif.format == "GIF" and gif.info.get("loop") == 0
        return gif.n_frames


def _close_toasts(page) -> None:
    for button in page.locator(".toast-close").all():
        try:
            button.click(timeout=1000)
        except Exception:  # noqa: BLE001 - already gone
            pass
    page.wait_for_timeout(500)


def test_caption_save_and_find_in_the_browser(studio_url, photos, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # the machine may be busy: be patient, not flaky
    shots = _screenshot_dir(tmp_path)

    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(photos[0].read_bytes()[:200])
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("request", lambda r: outside.append(r.url)
                    if not r.url.startswith((studio_url.rstrip("/"), "data:", "blob:")) else None)
            page.goto(studio_url)

            # ---- Caption tab: two photos and a broken file in the file box, one in the paste/webcam box
            page.locator("#photo-files input[type=file]").set_input_files([str(x) for x in photos[:2]] + [str(corrupt)])
            expect(page.locator("#photo-files tr", has_text="broken")).to_have_count(1)  # uploaded
            page.click('#photo-paste button[aria-label="Upload file"]')  # its clipboard/webcam/upload switch
            page.locator("#photo-paste input[type=file]").set_input_files(str(photos[2]))
            expect(page.locator("#photo-files tbody tr")).to_have_count(4)  # it joined the list
            beam = page.locator("#beam-size input[type=number]")
            beam.fill(str(BEAM))
            beam.press("Tab")
            page.click("#caption-button")
            cards = page.locator("#candidates .candidate-card")
            expect(cards).to_have_count(BEAM)
            expect(page.locator("#caption-status")).to_contain_text("Captioned 3 of 4 photos")
            expect(page.locator("#caption-status")).to_contain_text("broken.jpg")  # readable message

            # each card: caption, scores, animated GIF with one frame per word, still strip
            for i in range(BEAM):
                card = cards.nth(i)
                caption = card.locator(".cand-caption").inner_text().strip()
                assert caption
                assert "log p" in card.locator(".cand-score").inner_text()
                frames = _gif_frames(card.locator("img.cand-anim").get_attribute("src"))
                assert frames == len(caption.split())
                assert card.locator(".cand-strip img").get_attribute("src").startswith("data:image/")
            assert "best" in cards.nth(0).get_attribute("class")
            expect(page.locator("#candidates [data-testid=status-tracker]")).to_have_class(re.compile(r"\bhide\b"))
            _close_toasts(page)
            page.screenshot(path=str(shots / "studio-caption.png"), full_page=True)

            # ---- pick candidate #2 of photo 1 and save it
            second = cards.nth(1).locator(".cand-caption").inner_text().strip()
            page.locator("#candidate-pick label").nth(1).click()
            expect(page.locator("#caption-text textarea, #caption-text input").first).to_have_value(second)
            page.click("#save-button")
            expect(page.locator("#save-message")).to_contain_text("Saved")

            # ---- photo 2: edit the caption and save
            page.locator("#photo-pick input").click()
            page.locator("#photo-pick [role=option]", has_text=photos[1].name).click()
            expect(page.locator("#candidates .photo-name")).to_have_text(photos[1].name)
            box = page.locator("#caption-text textarea, #caption-text input").first
            best = cards.nth(0).locator(".cand-caption").inner_text().strip()
            expect(box).to_have_value(best)  # the new photo's best caption is ready to edit
            page.wait_for_timeout(300)
            box.fill("zebracorn parade near a wooden house")
            expect(box).to_have_value("zebracorn parade near a wooden house")
            page.click("#save-button")
            expect(page.locator("#save-message")).to_contain_text("(edited)")

            # ---- Gallery tab: both items, newest first; search finds the first by a word
            page.get_by_role("tab", name="Gallery").click()
            grid = page.locator("#gallery-grid")
            expect(grid.locator(".caption-label")).to_have_count(2)
            expect(grid.locator(".caption-label").first).to_have_text("zebracorn parade near a wooden house")
            word = max(second.split(), key=len)
            page.locator("#search-box textarea, #search-box input").first.fill(word)
            page.click("#search-button")
            expect(page.locator("#page-line")).to_contain_text(f"matching “{word}”")
            expect(grid.locator(".caption-label", has_text=second).first).to_be_visible()
            grid.locator(".caption-label", has_text=second).first.click()
            details = page.locator("#item-details")
            expect(details.locator(".chosen")).to_contain_text(second)
            expect(details.locator(".candidate-card")).to_have_count(BEAM)
            frames = _gif_frames(details.locator("img.cand-anim").first.get_attribute("src"))
            assert frames == len(details.locator(".cand-caption").first.inner_text().split())

            # show the whole gallery for the screenshot, with the first item's details open
            page.locator("#search-box textarea, #search-box input").first.fill("")
            page.click("#search-button")
            expect(page.locator("#page-line")).to_contain_text("2 items saved")
            grid.locator(".thumbnail-item").nth(0).click()
            expect(details.locator(".chosen")).to_contain_text("zebracorn parade")
            expect(details.locator(".candidate-card")).to_have_count(BEAM)
            expect(page.locator("#item-details [data-testid=status-tracker]")).to_have_class(re.compile(r"\bhide\b"))
            _close_toasts(page)
            page.screenshot(path=str(shots / "studio-gallery.png"), full_page=True)

            # ---- export, then delete the item on display
            page.get_by_text("Export the gallery").click()
            page.click("#export-button")
            expect(page.locator("#export-file")).to_contain_text(".json")
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("#delete-button")
            expect(page.locator("#gallery-message")).to_contain_text("Deleted item")
            expect(grid.locator(".caption-label")).to_have_count(1)
        finally:
            browser.close()
    assert outside == [], f"the page contacted other hosts: {outside}"
    for name in SCREENSHOTS:
        with Image.open(shots / name) as shot:
            assert shot.format == "PNG"
