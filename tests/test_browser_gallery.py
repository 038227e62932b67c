"""The studio's Gallery tab in a real browser (Debian chromium driven by Playwright), at 1400 px and at a
390 px phone width: a search highlights the matching words beside the grid; a thumbnail opens its details
in a modal (Close, Escape, focus inside; full screen and scrollable on a phone) where the saved candidates'
attention plays in the Caption tab's attention player (a GIF only on request); the caption is copied to the
clipboard; a photo downloads with its caption in its metadata; a delete is undone; the Trash view restores;
the sort menu reorders the grid.  And, over raw HTTP, the item events ignore any id or path a request sends
(they use the session's own)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from PIL import Image

from studio_server import start_studio, stop_studio

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 90_000
CAPTIONS = ["a dog runs by the lake", "a dog plays on the grass", "two children play on the beach",
            "a cat sleeps on a sofa", "a red bus on a street", "a man rides a bicycle"]


#: The first photo's beam candidates; the saved caption is the second one's.
CANDIDATE_0 = "a dog plays near water"


def _maps(words: int, n: int = 7) -> list:
    """One n x n attention map per word, each looking at another cell."""
    maps = []
    for w in range(words):
        grid = [[0.01] * n for _ in range(n)]
        grid[w % n][(3 * w) % n] = 1.0
        maps.append(grid)
    return maps


def _candidates() -> list[dict]:
    return [{"caption": CANDIDATE_0, "tokens": CANDIDATE_0.split(), "score": -3.0, "normalized_score": -0.6,
             "attention": _maps(5)},
            {"caption": CAPTIONS[0], "tokens": CAPTIONS[0].split(), "score": -3.4, "normalized_score": -0.57,
             "attention": _maps(6)}]


def _photo(color, size=(160, 120)) -> Image.Image:
    img = Image.new("RGB", size, color)
    for x in range(size[0] // 3, size[0] // 2):
        for y in range(size[1] // 4, size[1] // 2):
            img.putpixel((x, y), (255 - color[0], 255 - color[1], 255 - color[2]))
    return img


@pytest.fixture(scope="module")
def studio(tiny_model_dir, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from captioner.storage import Gallery

    folder = tmp_path_factory.mktemp("browser-gallery")
    with Gallery(folder / "gallery") as g:
        ids = [g.save(_photo(((40 * i) % 255, (90 + 30 * i) % 255, (200 - 25 * i) % 255)), f"photo{i}.png", caption,
                      tags=[{"label": "retriever", "score": 0.7}] if i == 0 else None,
                      confidence=0.8 if i == 0 else None, candidates=_candidates() if i == 0 else None,
                      beam_size=2 if i == 0 else None)
               for i, caption in enumerate(CAPTIONS)]
    proc, url = start_studio(tiny_model_dir, folder / "gallery", folder / "studio.log")
    yield url, folder / "gallery", ids
    stop_studio(proc)


def _screenshot_dir(tmp_path: Path) -> Path:
    """$CAPTIONER_SCREENSHOTS_DIR (set by scripts/update_screenshots.py), else the test's temporary folder."""
    folder = Path(os.environ.get("CAPTIONER_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _inside_width(page, selector: str) -> bool:
    return page.evaluate("""(sel) => { const el = document.querySelector(sel); if (!el) return false;
        const r = el.getBoundingClientRect(); return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth; }""",
                         selector)


def _modal_open(page) -> bool:
    return page.evaluate("""() => document.body.classList.contains('item-modal-open')
        && getComputedStyle(document.querySelector('#item-modal')).display !== 'none'""")


def _expect_modal(page, is_open: bool) -> None:
    page.wait_for_function("(o) => document.body.classList.contains('item-modal-open') === o", arg=is_open)
    assert _modal_open(page) is is_open


def _in_view(page, selector: str) -> bool:
    return page.evaluate("""(sel) => { const el = document.querySelector(sel); if (!el) return false;
        const r = el.getBoundingClientRect();
        return r.height > 0 && r.top >= -2 && r.top < window.innerHeight; }""", selector)


@pytest.mark.parametrize("width", [1400, 390])
def test_gallery_in_the_browser(studio, width, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, gallery_dir, ids = studio
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": 860}, accept_downloads=True)
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            page.get_by_role("tab", name="Gallery").click()
            grid = page.locator("#gallery-grid")
            expect(grid.locator(".thumbnail-item")).to_have_count(len(CAPTIONS))
            assert page.locator("#search-help").inner_text().count("OR") >= 1

            # ---- search: the matching words highlighted beside the grid, and where they matched
            page.fill("#search-box textarea", "dog AND lake")
            page.click("#search-button")
            expect(page.locator("#page-line")).to_contain_text("1 item matching")
            marks = page.locator("#search-matches mark")
            expect(marks).to_have_count(2)
            expect(marks.first).to_be_visible()
            assert [m.inner_text() for m in marks.all()] == ["dog", "lake"]
            expect(page.locator("#search-matches")).to_contain_text("matched in the saved caption")
            assert _inside_width(page, "#search-matches mark"), "the highlighted match is off the screen"
            assert page.evaluate("document.documentElement.scrollWidth") <= width + 1, "the page scrolls sideways"
            page.screenshot(path=str(_screenshot_dir(tmp_path) / f"studio-gallery-search-{width}.png"), full_page=True)
            # a query with no searchable word says so
            page.fill("#search-box textarea", "%")
            page.click("#search-button")
            expect(page.locator("#page-line")).to_contain_text("searchable word")
            # NOT leaves the lake out
            page.fill("#search-box textarea", "dog NOT lake")
            page.click("#search-button")
            expect(page.locator("#search-matches li")).to_have_count(1)
            expect(page.locator("#search-matches")).to_contain_text("grass")

            # ---- a click on a match opens the item in a modal (focus inside); the caption copies; Escape closes
            page.evaluate("window.scrollTo(0, 0)")
            page.locator("#search-matches li").first.click()
            expect(page.locator("#item-details .item-extras")).to_have_attribute("data-caption", CAPTIONS[1])
            _expect_modal(page, True)
            assert _in_view(page, "#item-panel"), "the details are not in view after opening an item"
            assert page.evaluate("document.activeElement.closest('#item-panel') !== null"), "focus is not in the modal"
            expect(page.locator("#item-modal")).to_have_attribute("aria-modal", "true")
            expect(page.locator("#item-modal-title")).to_contain_text("photo1.png")
            # saved without candidates: the player shows the photo, and says it has no attention maps
            expect(page.locator("#item-view .pv-clean")).to_be_visible()
            expect(page.locator("#item-view")).to_contain_text("No attention maps")
            expect(page.locator("#copy-caption")).to_be_visible()
            page.click("#copy-caption")
            expect(page.locator("#copy-caption")).to_have_attribute("data-copied", "yes")
            expect(page.locator("#item-message")).to_contain_text("copied to the clipboard")
            assert page.evaluate("navigator.clipboard.readText()") == CAPTIONS[1]
            page.keyboard.press("Escape")
            _expect_modal(page, False)
            expect(page.locator("#item-panel")).to_be_hidden()

            # ---- browse everything; a thumbnail opens its modal over the grid (full screen on a phone)
            page.fill("#search-box textarea", "")
            page.click("#search-button")
            expect(page.locator("#search-matches")).to_be_hidden()
            expect(grid.locator(".thumbnail-item")).to_have_count(len(CAPTIONS))
            page.evaluate("window.scrollTo(0, 0)")
            thumb = grid.locator(".thumbnail-item", has=page.locator(".caption-label", has_text=CAPTIONS[0])).first
            thumb.click()
            expect(page.locator("#item-details .item-extras")).to_have_attribute("data-caption", CAPTIONS[0])
            _expect_modal(page, True)
            assert _in_view(page, "#item-panel")
            assert page.evaluate("document.activeElement.id") == "item-close"
            box = page.evaluate("""() => { const r = document.querySelector('#item-panel').getBoundingClientRect();
                return [r.left, r.top, r.right, r.bottom, window.innerWidth, window.innerHeight]; }""")
            if width == 390:  # full screen on a phone
                assert box[0] <= 1 and box[1] <= 1 and box[2] >= 389 and box[3] >= box[5] - 1, box
            else:  # a dialog in the middle, the page dimmed around it
                assert 40 <= box[0] and box[2] <= width - 40 and box[3] <= box[5], box

            # ---- the saved candidates' attention in the Caption tab's player: drawn here, no GIF from the server
            view = page.locator("#item-view")
            expect(view.locator("canvas.pv-heat")).to_have_count(1)
            expect(view).to_contain_text("retriever")
            expect(view).to_contain_text("confidence 80%")
            expect(view.locator(".pv-card")).to_have_count(2)
            expect(view.locator(".pv-card.on")).to_contain_text(CAPTIONS[0])  # the saved one starts selected
            expect(view.locator(".pv-chip")).to_have_count(len(CAPTIONS[0].split()))
            assert page.locator("#item-modal img[src^='data:image/gif']").count() == 0
            canvas = view.locator("canvas.pv-heat")
            page.wait_for_function("Number(document.querySelector('#item-view canvas.pv-heat').dataset.drawn) > 0")
            assert page.evaluate("""() => { const c = document.querySelector('#item-view canvas.pv-heat');
                const r = c.getBoundingClientRect(); return Math.abs(r.width / r.height - 160 / 120) < 0.05; }"""), \
                "the heat map is not at the photo's aspect"
            view.locator(".pv-play").click()  # pause, then step and hover
            expect(view.locator(".pv-play")).to_have_attribute("aria-pressed", "false")
            view.locator(".pv-chip").nth(0).click()
            expect(view.locator(".pv-word")).to_have_text("a")
            view.locator(".pv-next").click()
            expect(view.locator(".pv-word")).to_have_text("dog")
            expect(canvas).to_have_attribute("data-word", "1")
            view.locator(".pv-chip").nth(5).hover()
            expect(view.locator(".pv-word")).to_have_text("lake")
            expect(canvas).to_have_attribute("data-word", "5")
            view.locator(".pv-card").first.click()  # another candidate: its own words
            expect(view.locator(".pv-chip")).to_have_count(len(CANDIDATE_0.split()))
            view.locator(".pv-strip summary").click()
            expect(view.locator(".pv-frame")).to_have_count(len(CANDIDATE_0.split()))
            # the panel scrolls inside (the page under it does not)
            scrolled = page.evaluate("""() => { const p = document.querySelector('#item-panel'), y = window.scrollY;
                p.scrollTop = p.scrollHeight; return [p.scrollHeight > p.clientHeight, p.scrollTop > 0, window.scrollY === y]; }""")
            assert scrolled == [True, True, True], scrolled
            page.screenshot(path=str(_screenshot_dir(tmp_path) / f"studio-gallery-item-{width}.png"))
            assert page.evaluate("document.documentElement.scrollWidth") <= width + 1, "the page scrolls sideways"
            assert _inside_width(page, "#copy-caption") and _inside_width(page, "#delete-button")
            assert _inside_width(page, "#item-view .pv-heat") and _inside_width(page, "#item-close")
            expect(page.locator("#caption-edit textarea")).to_have_value(CAPTIONS[0])
            # the animation as a GIF, on request
            view.locator(".pv-gif").click()
            expect(page.locator("#item-animation-file")).to_contain_text("photo0-caption1-attention")
            href = page.locator("#item-animation-file a").first.get_attribute("href")
            assert page.request.get(urljoin(page.url, href)).body()[:6] == b"GIF89a"

            # ---- download the photo with its caption in its metadata
            page.click("#download-photo")
            link = page.locator("#download-file a").first
            expect(link).to_be_visible()
            with page.expect_download() as info:
                link.click()
            saved = Path(info.value.path())
            data = saved.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and CAPTIONS[0].encode() in data

            # ---- Close: the modal goes, the focus goes back to the thumbnail; Tab stays inside while open
            page.click("#item-close")
            _expect_modal(page, False)
            assert page.evaluate("document.activeElement.classList.contains('thumbnail-item')")
            thumb.click()
            _expect_modal(page, True)
            # the window's last part (the saved caption, in the event after the opening) is in before the user tabs:
            # a text box re-drawn under the focus would drop it to the page
            page.wait_for_function("() => document.querySelector('#caption-edit textarea').value !== ''",
                                   timeout=15_000)
            for _ in range(40):
                page.keyboard.press("Tab")
                assert page.evaluate("document.activeElement.closest('#item-panel') !== null"), "Tab left the modal"

            # ---- delete, then Undo brings it back
            page.once("dialog", lambda d: d.accept())
            page.click("#delete-button")
            expect(page.locator("#gallery-message")).to_contain_text("Deleted item")
            _expect_modal(page, False)  # the grid and the Undo are under it
            expect(grid.locator(".thumbnail-item")).to_have_count(len(CAPTIONS) - 1)
            expect(page.locator("#gallery-undo")).to_be_visible()
            page.click("#gallery-undo")
            expect(page.locator("#gallery-message")).to_contain_text("is back")
            expect(grid.locator(".thumbnail-item")).to_have_count(len(CAPTIONS))
            expect(page.locator("#gallery-undo")).to_be_hidden()

            # ---- the sort menu: oldest first puts the first saved photo first
            page.locator("#gallery-filters").get_by_text("Sort and filter").click()
            page.locator("#gallery-sort input").click()
            page.get_by_role("option", name="Oldest first").click()
            expect(grid.locator(".caption-label").first).to_have_text(CAPTIONS[0])
            page.locator("#gallery-sort input").click()
            page.get_by_role("option", name="Newest first").click()
            expect(grid.locator(".caption-label").first).to_have_text(CAPTIONS[-1])
        finally:
            browser.close()


def test_trash_view_restores_and_empties(studio):
    """Delete an item, find it in the Trash view, restore it; delete another and empty the trash (confirmed)."""
    from playwright.sync_api import expect, sync_playwright

    from captioner.storage import Gallery

    url, gallery_dir, ids = studio
    expect.set_options(timeout=TIMEOUT_MS)
    with Gallery(gallery_dir) as g:
        g.delete(ids[4])
        g.delete(ids[5])
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(url)
                page.get_by_role("tab", name="Gallery").click()
                grid = page.locator("#gallery-grid")
                expect(grid.locator(".thumbnail-item")).to_have_count(len(CAPTIONS) - 2)
                page.locator("#gallery-filters").get_by_text("Sort and filter").click()
                page.locator("#gallery-view").get_by_text("Trash").click()
                expect(page.locator("#page-line")).to_contain_text("2 items in the trash")
                expect(page.locator("#empty-trash")).to_be_visible()
                grid.locator(".caption-label", has_text=CAPTIONS[4]).click()
                expect(page.locator("#item-details .in-trash")).to_be_visible()
                expect(page.locator("#delete-button")).to_be_hidden()
                expect(page.locator("#item-modal")).to_be_visible()
                page.click("#restore-button")
                expect(page.locator("#gallery-message")).to_contain_text("back in the gallery")
                expect(page.locator("#item-modal")).to_be_hidden()
                expect(page.locator("#page-line")).to_contain_text("1 item in the trash")
                page.once("dialog", lambda d: d.dismiss())  # "Cancel" keeps the trash
                page.click("#empty-trash")
                page.wait_for_timeout(1500)
                with Gallery(gallery_dir) as g:
                    assert g.get(ids[5], include_trash=True) is not None
                page.once("dialog", lambda d: d.accept())
                page.click("#empty-trash")
                expect(page.locator("#gallery-message")).to_contain_text("1 item removed for good")
                expect(page.locator("#page-line")).to_contain_text("The trash is empty")
            finally:
                browser.close()
        with Gallery(gallery_dir) as g:
            assert g.get(ids[4]) is not None and g.get(ids[5], include_trash=True) is None
    finally:
        with Gallery(gallery_dir) as g:  # whatever happened, item 4 is back for the next test
            g.restore(ids[4])


def test_meaning_more_like_this_and_import_in_the_browser(studio, tmp_path):
    """By meaning ranks the items with scores; More like this fills the grid with similar items; a folder
    uploaded in the Import box is captioned and saved (a broken file named, a second import skips them all)."""
    from playwright.sync_api import expect, sync_playwright

    url, gallery_dir, ids = studio
    expect.set_options(timeout=TIMEOUT_MS)
    folder = tmp_path / "holiday"
    (folder / "day2").mkdir(parents=True)
    _photo((250, 250, 10)).save(folder / "sun.jpg")
    _photo((10, 250, 250)).save(folder / "day2" / "sea.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            page.get_by_role("tab", name="Gallery").click()
            grid = page.locator("#gallery-grid")
            expect(grid.locator(".thumbnail-item").first).to_be_visible()
            before = grid.locator(".thumbnail-item").count()

            page.locator("#meaning-toggle input").check()
            page.fill("#search-box textarea", "a dog running near water")
            page.click("#search-button")
            # (the tiny test model fits nothing well: the page says so; tests/test_studio_newuser.py has more)
            expect(page.locator("#page-line")).to_contain_text("well")
            page.locator("#meaning-toggle input").uncheck()
            page.fill("#search-box textarea", "")
            page.click("#search-button")
            expect(page.locator("#page-line")).to_contain_text("saved")

            grid.locator(".thumbnail-item").first.click()
            expect(page.locator("#item-details .item-extras")).to_have_count(1)
            page.click("#more-like-this")
            expect(page.locator("#page-line")).to_contain_text("most like item")
            expect(page.locator("#search-matches li").first).to_contain_text("similarity")

            page.locator("#import-box").get_by_text("Import a folder of photos").click()
            page.locator("#import-folder input[type=file]").set_input_files(str(folder))
            expect(page.locator("#import-folder tbody tr")).to_have_count(3)  # uploaded, sub-folder too
            page.click("#import-button")
            expect(page.locator("#import-message")).to_contain_text("Imported 2 photos")
            expect(page.locator("#import-message")).to_contain_text("broken.jpg")
            expect(grid.locator(".thumbnail-item")).to_have_count(before + 2)
            page.click("#import-button")  # the same folder again: nothing new
            expect(page.locator("#import-message")).to_contain_text("2 already in the gallery")
            expect(grid.locator(".thumbnail-item")).to_have_count(before + 2)
        finally:
            browser.close()


def test_item_events_ignore_ids_and_paths_in_the_request(studio, tmp_path):
    """Download, delete, undo, restore, edit and "more like this" take the item from the session: an
    id or a path sent in the request (raw HTTP, by fn_index) changes nothing and serves no file."""
    from test_studio_security import call

    url, gallery_dir, ids = studio
    config = httpx.get(url + "config", timeout=30).json()
    elems = {c["id"]: (c.get("props") or {}).get("elem_id") for c in config["components"]}
    triggers = {"download-photo", "delete-button", "gallery-undo", "restore-button", "save-caption",
                "more-like-this", "empty-trash", "item-view"}
    targets = [d["id"] for d in config["dependencies"]
               if any(elems.get(t[0]) in triggers for t in d.get("targets") or []) and d.get("backend_fn")]
    assert len(targets) >= 5, targets
    secret = tmp_path / "secret.png"
    _photo((1, 2, 3)).save(secret)
    from captioner.storage import Gallery
    with Gallery(gallery_dir) as g:
        before = [(it["id"], it["caption"]) for it in g.iter_items(include_trash=True)]
    with httpx.Client(base_url=url.rstrip("/"), timeout=60) as client:
        for fn_index in targets:
            n = len(next(d for d in config["dependencies"] if d["id"] == fn_index)["inputs"])
            for forged in (ids[0], str(secret), {"path": str(secret)}, "../../gallery.db"):
                msg = call(client, fn_index, [forged] * n)
                text = json.dumps(msg)
                assert str(secret) not in text and "secret" not in text, (fn_index, text[:500])
    with Gallery(gallery_dir) as g:
        assert [(it["id"], it["caption"]) for it in g.iter_items(include_trash=True)] == before
