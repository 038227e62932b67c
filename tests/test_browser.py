"""The studio in a real browser (Debian chromium driven by Playwright).

Uploads photos through the page, captions them, checks the overview of every photo and the attention
player (frames drawn on a canvas, play/pause/step, a hovered word's map, still frames), keeps an edit
across photo and candidate switches, saves all the photos (and a duplicate is refused), adds a photo to
the list, downloads the animation as a GIF, checks a 390 px phone screen (the results in view, nothing
wider than the screen), finds the saved captions in the Gallery tab, and takes the screenshots
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
    folder = tmp_path_factory.mktemp("browser")
    proc, url = start_studio(_model_dir(tiny_model_dir), folder / "gallery", folder / "studio.log")
    yield url
    stop_studio(proc)


#: scikit-image's sample photos shown in the screenshots: chelsea and coffee are CC0 (their photographers),
#: astronaut is public domain (NASA). Flickr8k photos must not appear: their licence keeps them out of the repository.
SAMPLE_PHOTOS = ("chelsea", "coffee", "astronaut")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Three real photos (scikit-image's CC0 / public-domain samples), else generated scenes (sky, field, a ball)."""
    folder = tmp_path_factory.mktemp("photos")
    try:
        from skimage import data
    except ImportError:
        return scene_photos(folder, 3)
    paths = []
    for name in SAMPLE_PHOTOS:
        path = folder / f"{name}.jpg"
        Image.fromarray(getattr(data, name)()).convert("RGB").save(path, quality=90)
        paths.append(path)
    return paths


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


def _canvas_pixels(page, selector: str = "#photos-view .pv-heat") -> list[int]:
    """A sample of the canvas's pixels (what the player drew)."""
    return page.evaluate("""(sel) => { const c = document.querySelector(sel);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, out = [];
        for (let i = 0; i < d.length; i += Math.max(4, 4 * Math.floor(d.length / 4 / 997))) { out.push(d[i], d[i + 1], d[i + 2]); }
        return out; }""", selector)


def _word(page) -> str:
    return page.locator("#photos-view .pv-heat").get_attribute("data-word")


def _text_box(page):
    return page.locator("#photos-view textarea.pv-text")


def test_caption_save_and_find_in_the_browser(studio_url, photos, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # the machine may be busy: be patient, not flaky
    shots = _screenshot_dir(tmp_path)

    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(photos[0].read_bytes()[:200])
    panorama = tmp_path / "panorama.png"
    Image.new("RGB", (20000, 100), (70, 130, 200)).save(panorama)
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.grant_permissions(["clipboard-read", "clipboard-write"])
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("request", lambda r: outside.append(r.url)
                    if not r.url.startswith((studio_url.rstrip("/"), "data:", "blob:")) else None)
            direct = []  # the Caption tab's own route (one photo)
            page.on("requestfinished", lambda r: direct.append(r.url) if "/studio/caption" in r.url else None)
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
            view = page.locator("#photos-view")
            cards = view.locator(".pv-card")
            expect(cards).to_have_count(BEAM)
            expect(page.locator("#caption-status")).to_contain_text("Captioned 3 of 4 photos")
            expect(page.locator("#caption-status")).to_contain_text("broken.jpg")  # readable message
            # the overview: every photo, the broken one flagged; the time the user waited, measured here
            tiles = view.locator(".pv-tile")
            expect(tiles).to_have_count(4)
            expect(view.locator(".pv-tile.err")).to_have_count(1)
            expect(view.locator(".pv-tile.on")).not_to_have_class(re.compile(r"\berr\b"))
            expect(view.locator(".pv-waited")).to_contain_text("You waited")
            assert int(view.locator(".pv-waited").get_attribute("data-ms")) > 0
            first = view.locator(".pv-tile.on .pv-tile-name").inner_text()

            # each card: caption and scores; the best one first and chosen
            for i in range(BEAM):
                assert cards.nth(i).locator(".pv-caption").inner_text().strip()
                assert "log p" in cards.nth(i).locator(".pv-scores").inner_text()
            assert "best" in cards.nth(0).get_attribute("class") and "on" in cards.nth(0).get_attribute("class")

            # ---- the player: frames drawn on a canvas over the photo; play, pause, step, hover
            heat = view.locator(".pv-heat")
            expect(heat).to_have_attribute("data-drawn", re.compile(r"\d+"))
            words = cards.nth(0).locator(".pv-caption").inner_text().split()
            expect(view.locator(".pv-chip")).to_have_count(len(words))
            expect(view.locator("img.pv-clean")).to_be_visible()  # the clean photo beside the heat maps
            seen = {_word(page)}
            for _ in range(30):  # playing: the word changes by itself
                page.wait_for_timeout(200)
                seen.add(_word(page))
                if len(seen) > 2:
                    break
            assert len(seen) > 2, seen
            view.locator(".pv-play").click()  # pause
            expect(view.locator(".pv-play")).to_have_attribute("aria-pressed", "false")
            paused = _word(page)
            page.wait_for_timeout(1200)
            assert _word(page) == paused
            view.locator(".pv-next").click()
            expect(heat).to_have_attribute("data-word", str((int(paused) + 1) % len(words)))
            view.locator(".pv-prev").click()
            expect(heat).to_have_attribute("data-word", paused)
            heat.press("ArrowRight")  # the keyboard steps too
            expect(heat).to_have_attribute("data-word", str((int(paused) + 1) % len(words)))
            heat.press("ArrowLeft")
            expect(heat).to_have_attribute("data-word", paused)
            view.locator(".pv-chip").nth(0).hover()
            expect(heat).to_have_attribute("data-word", "0")
            expect(view.locator(".pv-word")).to_have_text(words[0])
            page.wait_for_timeout(300)
            frame0 = _canvas_pixels(page)
            view.locator(".pv-chip").nth(len(words) - 1).hover()
            expect(heat).to_have_attribute("data-word", str(len(words) - 1))
            page.wait_for_timeout(300)
            assert _canvas_pixels(page) != frame0  # another word, another map
            page.mouse.move(5, 5)
            expect(heat).to_have_attribute("data-word", paused)  # back to where it was
            # still frames: one per word, wide enough to read, labelled with the word
            view.locator(".pv-strip summary").click()
            frames = view.locator(".pv-frame")
            expect(frames).to_have_count(len(words))
            assert frames.nth(0).bounding_box()["width"] >= 140
            expect(frames.nth(1).locator("figcaption b")).to_have_text(words[1])

            # ---- an edit survives switching candidates and photos
            second = cards.nth(1).locator(".pv-caption").inner_text().strip()
            cards.nth(1).click()
            expect(_text_box(page)).to_have_value(second)
            _text_box(page).fill("zebracorn parade near a wooden house")
            expect(view.locator(".pv-tile.on")).to_contain_text("edited")
            cards.nth(2).click()  # another candidate: the edit is kept
            expect(_text_box(page)).to_have_value("zebracorn parade near a wooden house")
            expect(view.locator(".pv-edit-note")).to_contain_text("Your edit is kept")
            others = view.locator(".pv-tile:not(.err):not(.on)")
            others.nth(0).click()  # another photo...
            expect(view.locator(".pv-name")).not_to_have_text(first)
            switch_ms = int(page.locator("#photos-view [data-switch-ms]").get_attribute("data-switch-ms"))
            assert switch_ms < 300, switch_ms  # drawn in the browser: no round trip
            view.locator(".pv-tile", has_text=first).click()  # ...and back
            expect(_text_box(page)).to_have_value("zebracorn parade near a wooden house")
            view.locator(".pv-copy").click()  # copy caption
            expect(view.locator(".pv-copy")).to_have_text(re.compile("Copied|Copy"))
            copied = page.locator("#photos-view [data-copied]").get_attribute("data-copied")
            assert copied == "zebracorn parade near a wooden house"

            # ---- the animation as a GIF, on request
            view.locator(".pv-gif").click()
            expect(page.locator("#animation-file")).to_contain_text(".gif")
            _close_toasts(page)
            page.screenshot(path=str(shots / "studio-caption.png"), full_page=True)

            # ---- Save all: each photo's choice; the edited one as edited
            save_all = view.locator(".pv-save-all")
            expect(save_all).to_have_text("Save all (3)")
            save_all.click()
            expect(page.locator("#photos-view .pv-save-msg")).to_contain_text("Saved 3 of 3")
            expect(page.locator("#photos-view .pv-save-msg")).to_contain_text("(edited)")
            expect(view.locator(".pv-flag.ok")).to_have_count(3)
            expect(save_all).to_be_disabled()
            view.locator(".pv-save").click()  # the same photo and caption again: refused by the gallery
            expect(page.locator("#photos-view .pv-save-msg")).to_contain_text("already")

            # ---- Add to the list: a panorama joins the three photos (their edits and saves kept)
            page.locator("#photo-files input[type=file]").set_input_files([str(panorama)])
            expect(page.locator("#photo-files tbody tr")).to_have_count(1)
            page.locator("#add-photos input[type=checkbox]").check()
            page.click("#caption-button")
            expect(tiles).to_have_count(5)
            expect(view.locator(".pv-flag.ok")).to_have_count(3)
            expect(view.locator(".pv-tile.on")).to_contain_text("panorama.png")
            expect(view.locator(".pv-warnings")).to_contain_text("aspect")
            # one photo went by the studio's own route; the file box is emptied and the status line says so
            assert len(direct) == 1, direct
            expect(page.locator("#photo-files tbody tr")).to_have_count(0)
            expect(page.locator("#caption-status")).to_contain_text("Added to the 4 photos already in the list")
            box = view.locator(".pv-heat").bounding_box()
            assert box["height"] >= 60 and box["width"] / box["height"] <= 4.1, box  # a usable picture
            view.locator(".pv-tile", has_text=first).click()
            expect(_text_box(page)).to_have_value("zebracorn parade near a wooden house")
            page.locator("#add-photos input[type=checkbox]").uncheck()

            # ---- Gallery tab: the three items, newest first; search finds the edited one by a word
            page.get_by_role("tab", name="Gallery").click()
            grid = page.locator("#gallery-grid")
            expect(grid.locator(".caption-label")).to_have_count(3)
            expect(grid.locator(".caption-label", has_text="zebracorn parade near a wooden house")).to_have_count(1)
            page.locator("#search-box textarea, #search-box input").first.fill("zebracorn")
            page.click("#search-button")
            expect(page.locator("#page-line")).to_contain_text("zebracorn")
            expect(grid.locator(".caption-label")).to_have_count(1)
            grid.locator(".caption-label", has_text="zebracorn").first.click()
            details = page.locator("#item-details")
            expect(details.locator(".chosen")).to_contain_text("zebracorn parade")
            expect(page.locator("#item-view .pv-card")).to_have_count(BEAM)  # in the attention player
            page.keyboard.press("Escape")  # the item modal closes
            expect(page.locator("#item-modal")).to_be_hidden()

            # show the whole gallery for the screenshot, with the edited item's details open
            page.locator("#search-box textarea, #search-box input").first.fill("")
            page.click("#search-button")
            expect(grid.locator(".caption-label")).to_have_count(3)
            grid.locator(".caption-label", has_text="zebracorn").first.click()
            expect(details.locator(".chosen")).to_contain_text("zebracorn parade")
            expect(page.locator("#item-view .pv-card")).to_have_count(BEAM)
            expect(page.locator("#item-view .pv-heat")).to_have_attribute("data-drawn", re.compile(r"\d+"))
            expect(page.locator("#item-details [data-testid=status-tracker]")).to_have_class(re.compile(r"\bhide\b"))
            _close_toasts(page)
            # the item modal over the dimmed grid (a fixed overlay: the screen, not the whole page)
            page.screenshot(path=str(shots / "studio-gallery.png"))

            # ---- export, then delete the item on display
            page.click("#item-close")
            expect(page.locator("#item-modal")).to_be_hidden()
            page.get_by_text("Export the gallery").click()
            page.click("#export-button")
            expect(page.locator("#export-file")).to_contain_text(".json")
            grid.locator(".caption-label", has_text="zebracorn").first.click()
            expect(page.locator("#item-modal")).to_be_visible()
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("#delete-button")
            expect(page.locator("#gallery-message")).to_contain_text("Deleted item")
            expect(grid.locator(".caption-label")).to_have_count(2)
        finally:
            browser.close()
    assert outside == [], f"the page contacted other hosts: {outside}"
    for name in SCREENSHOTS:
        with Image.open(shots / name) as shot:
            assert shot.format == "PNG"


def test_phone_screen_shows_the_results_and_nothing_overflows(studio_url, photos):
    """390 px wide: after Caption the results are scrolled into view; the page is no wider than the screen."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                    has_touch=True)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(studio_url)
            page.locator("#photo-files input[type=file]").set_input_files([str(x) for x in photos[:2]])
            expect(page.locator("#photo-files tbody tr")).to_have_count(2)
            page.click("#caption-button")
            view = page.locator("#photos-view")
            expect(view.locator(".pv-tile")).to_have_count(2)
            expect(view.locator(".pv-heat")).to_have_attribute("data-drawn", re.compile(r"\d+"))
            page.wait_for_timeout(500)
            top = page.evaluate("document.querySelector('#caption-status').getBoundingClientRect().top")
            assert 0 <= top < 844 / 2, top  # the results start in the upper half of the screen
            assert view.locator(".pv-tile").first.is_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            wide = page.evaluate("""() => [...document.querySelectorAll('#photos-view *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.className).slice(0, 5)""")
            assert wide == [], wide
            expect(view.locator(".pv-copy")).to_be_visible()
            expect(view.locator(".pv-save-all")).to_have_text("Save all (2)")
            page.screenshot(path=str(Path(photos[0]).parent / "studio-caption-390.png"), full_page=False)
            # one photo: by the studio's own route; it replaces the list, and the session saves it
            page.locator("#photo-files input[type=file]").set_input_files(str(photos[2]))
            expect(page.locator("#photo-files tbody tr")).to_have_count(1)
            with page.expect_response(lambda r: "/studio/caption" in r.url) as answer:
                page.click("#caption-button")
            assert answer.value.status == 200
            expect(view.locator(".pv-tile")).to_have_count(1)
            expect(view.locator(".pv-name")).to_have_text(photos[2].name)
            expect(page.locator("#photo-files tbody tr")).to_have_count(0)
            expect(page.locator("#caption-status")).to_contain_text("Captioned 1 of 1 photo")
            _text_box(page).fill("a photo captioned on a phone")  # (the other test may have saved its caption)
            view.locator(".pv-save").click()
            expect(page.locator("#photos-view .pv-save-msg")).to_contain_text(f"for {photos[2].name} as gallery item #")
            # a token the server did not give (or one that expired): refused, and the Gradio event captions it
            page.locator("#photo-files input[type=file]").set_input_files(str(photos[1]))
            expect(page.locator("#photo-files tbody tr")).to_have_count(1)
            page.wait_for_function("window.captionerStage && window.captionerStage.token && !window.captionerStage.waiting")
            page.evaluate("window.captionerStage.token = 'A'.repeat(32)")
            with page.expect_response(lambda r: "/studio/caption" in r.url) as answer:
                page.click("#caption-button")
            assert answer.value.status == 403
            expect(view.locator(".pv-name")).to_have_text(photos[1].name)
            expect(page.locator("#caption-status")).to_contain_text("Captioned 1 of 1 photo")
        finally:
            browser.close()
