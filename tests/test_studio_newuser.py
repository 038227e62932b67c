"""The studio as a new user meets it (issue 27), in a real browser (Debian chromium driven by Playwright) at
1400x900 and at a 390x844 phone width: a gallery video plays in the item window from its matched shot; the
Gallery grid wraps to a phone's width; the item window keeps its actions and the saved caption in view;
the confidence badges say no more than the calibration can; a delete's Undo is where the user looks;
a word search looks in what the user saved and says why each item matched; the GIF comes where its
button is; every text meets WCAG AA contrast in both themes.  The studio runs a tiny model with the
shipped confidence calibration on a gallery made for these checks (tests/newuser_studio.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

import newuser_studio as nu
from studio_server import start_studio, stop_studio

pytestmark = pytest.mark.slow

TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def studio(tiny_model_dir, tmp_path_factory):
    if not Path(nu.CHROMIUM).exists():
        pytest.skip(f"{nu.CHROMIUM} is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    pytest.importorskip("av")
    folder = tmp_path_factory.mktemp("newuser")
    model = nu.calibrated_model(tiny_model_dir, folder)
    ids = nu.fill_gallery(folder / "gallery", nu.write_clip(folder / "four shots.mp4"))
    proc, url = start_studio(model, folder / "gallery", folder / "studio.log")
    yield url, ids
    stop_studio(proc)


@pytest.fixture()
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=nu.CHROMIUM, args=nu.CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(browser, url: str, width: int, theme: str | None = None):
    context = browser.new_context(viewport={"width": width, "height": nu.HEIGHTS[width]}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url + (f"?__theme={theme}" if theme else ""))
    return page


def gallery(page):
    """The Gallery tab, its first listing in."""
    page.get_by_role("tab", name="Gallery").click()
    page.locator("#gallery-grid .thumbnail-item").first.wait_for()
    page.wait_for_function("() => /saved/.test(document.querySelector('#page-line').textContent)")


def search(page, query: str, count: int | None = None):
    page.fill("#search-box textarea", query)
    page.click("#search-button")
    if count is not None:
        page.wait_for_function(
            "(n) => document.querySelectorAll('#gallery-grid .thumbnail-item').length === n"
            " && !document.querySelector('#gallery-grid .wrap.pending, #gallery-grid .eta-bar')", arg=count)
    page.wait_for_timeout(300)


def open_item(page, index: int = 0):
    page.locator("#gallery-grid .thumbnail-item").nth(index).click()
    page.wait_for_function("document.body.classList.contains('item-modal-open')")


def box(page, selector: str) -> dict | None:
    return page.evaluate("""(sel) => { const e = document.querySelector(sel); if (!e) return null;
        const r = e.getBoundingClientRect();
        return {x: r.x, y: r.y, w: r.width, h: r.height, right: r.right, bottom: r.bottom,
                vw: window.innerWidth, vh: window.innerHeight}; }""", selector)


def in_view(page, selector: str) -> bool:
    b = box(page, selector)
    return bool(b) and b["w"] > 0 and b["h"] > 0 and b["y"] >= 0 and b["bottom"] <= b["vh"] and b["right"] <= b["vw"]


# ---------------------------------------------------------------- 2. a video opened from the Gallery plays
@pytest.mark.parametrize("width", nu.WIDTHS)
def test_gallery_video_plays_from_the_matched_shot(studio, browser, width):
    url, ids = studio
    page = new_page(browser, url, width)
    gallery(page)
    open_item(page, 2)  # a photo first (its window hides the video player), then the video
    page.click("#item-close")
    search(page, "kite", 1)
    open_item(page)
    video = "#item-player video"
    page.wait_for_function("(sel) => { const v = document.querySelector(sel); return v && v.readyState >= 1"
                           " && Math.abs(v.currentTime - 9) < 0.5; }", arg=video)
    player = box(page, video)
    assert player["h"] >= 150 and player["w"] >= 0.8 * min(width, 1240) - 60, player
    assert in_view(page, video)
    # no still of shot 1 beside a player at shot 4
    assert page.locator("#item-details img.item-photo").count() == 0
    assert page.locator("#item-details tr.matched").inner_text().startswith("0:09.0")
    # a shot row: the player goes there, plays, and is in view; the row is marked
    page.locator("#item-details tr[data-start='3.000']").click()
    page.wait_for_function("(sel) => { const v = document.querySelector(sel); return v.currentTime >= 3"
                           " && v.currentTime < 5 && !v.paused; }", arg=video)
    assert in_view(page, video)
    assert page.locator("#item-details tr.playing").get_attribute("data-start") == "3.000"


# ---------------------------------------------------------------- 3. a phone's grid wraps to its width
@pytest.mark.parametrize("width", nu.WIDTHS)
def test_gallery_grid_wraps_to_the_width(studio, browser, width):
    url, ids = studio
    page = new_page(browser, url, width)
    gallery(page)
    search(page, "beach", len(nu.DOG_CAPTIONS))
    grid = box(page, "#gallery-grid")
    rights = page.evaluate("""() => [...document.querySelectorAll('#gallery-grid .thumbnail-item')]
        .map((t) => t.getBoundingClientRect().right)""")
    assert len(rights) == len(nu.DOG_CAPTIONS)
    assert max(rights) <= grid["right"] + 1, (max(rights), grid)  # every thumbnail inside the grid's box
    assert page.evaluate("() => { const w = document.querySelector('#gallery-grid .grid-wrap');"
                         " return w.scrollWidth <= w.clientWidth + 1; }")  # nothing to scroll sideways
    columns = len(set(round(r) for r in rights))
    assert columns >= (3 if width < 500 else 5)


# ---------------------------------------------------------------- 8. the item window's actions and saved caption
@pytest.mark.parametrize("width", nu.WIDTHS)
def test_item_window_keeps_actions_and_the_saved_caption_first(studio, browser, width):
    url, ids = studio
    page = new_page(browser, url, width)
    gallery(page)
    search(page, "road", 1)
    open_item(page)
    page.locator("#item-view .pv-card").first.wait_for()
    for button in ("#save-caption", "#more-like-this", "#delete-button"):
        assert in_view(page, button), (button, box(page, button))
    # the saved (edited) caption is the first caption in the window, above the player's candidates
    assert page.input_value("#caption-edit textarea") == nu.EDITED
    assert box(page, "#caption-edit")["y"] < box(page, "#item-view .pv-cards")["y"]
    # scrolled to the end, the actions are still in view (a sticky head)
    page.evaluate("() => { const p = document.querySelector('#item-panel'); p.scrollTop = p.scrollHeight; }")
    page.wait_for_timeout(200)
    for button in ("#save-caption", "#delete-button"):
        assert in_view(page, button), (button, box(page, button))
