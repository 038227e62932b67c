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
    # the saved (edited) caption is the first caption in the window, above the player's candidates; it comes
    # in the event that follows the opening (item_tools), so it is waited for, a few seconds at most
    page.wait_for_function("(t) => document.querySelector('#caption-edit textarea').value === t",
                           arg=nu.EDITED, timeout=15_000)
    assert box(page, "#caption-edit")["y"] < box(page, "#item-view .pv-cards")["y"]
    # scrolled to the end, the actions are still in view (a sticky head)
    page.evaluate("() => { const p = document.querySelector('#item-panel'); p.scrollTop = p.scrollHeight; }")
    page.wait_for_timeout(200)
    for button in ("#save-caption", "#delete-button"):
        assert in_view(page, button), (button, box(page, button))


def caption_photos(page, paths: list[Path]):
    """The Caption tab: drop ``paths`` and press Caption; the results drawn."""
    page.locator("#photo-files input[type=file]").set_input_files([str(p) for p in paths])
    page.wait_for_function("(n) => document.querySelectorAll('#photo-files tbody tr').length === n", arg=len(paths))
    page.click("#caption-button")
    page.locator("#photos-view .pv-tile").nth(len(paths) - 1).wait_for()
    page.locator("#photos-view .pv-card").first.wait_for()


GREEN_JS = """(sel) => [...document.querySelectorAll(sel)].filter((e) => e.getClientRects().length).map((e) => {
    const [r, g, b] = getComputedStyle(e).backgroundColor.match(/[\\d.]+/g).map(Number);
    return {text: e.textContent, green: g > r + 30 && g > b + 30};
})"""


@pytest.fixture(scope="module")
def two_photos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for i, name in enumerate(("000000397133.jpg", "000000037777.jpg")):
        nu.photo(40 + 7 * i, (320, 240)).save(folder / name, quality=90)
        paths.append(folder / name)
    return paths


# ---------------------------------------------------------------- 1. the confidence badge says what it can
@pytest.mark.parametrize("width", nu.WIDTHS)
def test_confidence_badges_say_only_what_the_calibration_can(studio, browser, two_photos, width):
    url, ids = studio
    page = new_page(browser, url, width)
    caption_photos(page, two_photos)
    view = page.locator("#photos-view")
    badges = page.evaluate(GREEN_JS, "#photos-view .pv-conf")
    assert badges and all("%" in b["text"] for b in badges)
    # the shipped calibration has no threshold that holds on everyday photos: nothing is green
    assert not [b for b in badges if b["green"]], badges
    assert view.locator(".pv-conf.high").count() == 0
    # what the model knows, in plain words, beside the results
    knows = view.locator(".pv-knows")
    assert knows.is_visible() and "Flickr8k" in knows.inner_text() and "people, dogs" in knows.inner_text()
    assert abs(box(page, "#photos-view .pv-knows")["y"] - box(page, "#photos-view .pv-cards")["bottom"]) < 400
    # an edited caption loses the model's badge (on its tile and above the player); back to the model's: it returns
    head = view.locator(".pv-head-conf")
    assert "confidence" in head.inner_text()
    view.locator("textarea.pv-text").fill("a green shape on a field")
    assert "no model score" in head.inner_text()
    tile = view.locator(".pv-tile.on")
    assert tile.locator(".pv-conf").count() == 0 and "edited" in tile.inner_text()
    view.locator(".pv-use").click()
    assert "confidence" in head.inner_text() and tile.locator(".pv-conf").count() == 1
    # a gallery item saved with the user's edit: no model badge, the saved caption above the candidates
    gallery(page)
    search(page, "road", 1)
    open_item(page)
    item = page.locator("#item-view")
    item.locator(".pv-card").first.wait_for()
    assert "no model score" in item.locator(".pv-head").inner_text()
    assert nu.EDITED in item.locator(".pv-saved-caption").inner_text()
    assert not [b for b in page.evaluate(GREEN_JS, "#item-view .pv-conf") if b["green"]]
    assert item.locator(".pv-knows").is_visible()


# ---------------------------------------------------------------- 4. Undo after Delete, where the user looks
def thumbs(page) -> list[str]:
    return page.locator("#gallery-grid .thumbnail-item .caption-label").all_inner_texts()


@pytest.mark.parametrize("width", nu.WIDTHS)
def test_delete_shows_undo_in_view_and_keeps_the_list(studio, browser, width):
    url, ids = studio
    page = new_page(browser, url, width)
    page.on("dialog", lambda d: d.accept())
    gallery(page)
    search(page, "beach", len(nu.DOG_CAPTIONS))
    open_item(page, 3)
    page.click("#delete-button")
    page.wait_for_function("() => document.querySelectorAll('#gallery-grid .thumbnail-item').length === 11")
    toast = page.locator("#gallery-toast")
    toast.get_by_text("Deleted").wait_for()
    assert in_view(page, "#gallery-toast") and in_view(page, "#gallery-undo"), box(page, "#gallery-toast")
    assert "matching “beach”" in page.inner_text("#page-line")  # still the search the user was in
    page.click("#gallery-undo")
    page.wait_for_function("() => document.querySelectorAll('#gallery-grid .thumbnail-item').length === 12")
    toast.get_by_text("is back").wait_for()
    assert in_view(page, "#gallery-toast")
    # from a "More like this" list: the list stays (without the item), and Undo puts it back in its place
    open_item(page, 0)
    page.click("#more-like-this")
    page.wait_for_function("() => /most like item/.test(document.querySelector('#page-line').textContent)")
    before = thumbs(page)
    assert len(before) >= 3
    open_item(page, 1)
    page.click("#delete-button")
    page.wait_for_function("(n) => document.querySelectorAll('#gallery-grid .thumbnail-item').length === n",
                           arg=len(before) - 1)
    assert "most like item" in page.inner_text("#page-line")
    assert thumbs(page) == before[:1] + before[2:]
    assert in_view(page, "#gallery-undo")
    page.click("#gallery-undo")
    page.wait_for_function("(n) => document.querySelectorAll('#gallery-grid .thumbnail-item').length === n",
                           arg=len(before))
    assert thumbs(page) == before and "most like item" in page.inner_text("#page-line")


# ---------------------------------------------------------------- 5. a word search looks in what the user saved
@pytest.mark.parametrize("width", nu.WIDTHS)
def test_word_search_looks_in_what_was_saved_and_says_why(studio, browser, width):
    url, ids = studio
    page = new_page(browser, url, width)
    gallery(page)
    # the edited item: its saved caption has dogs and no grass; an unpicked candidate says grass
    search(page, "dogs NOT grass", len(nu.DOG_CAPTIONS) + 2)  # the beach dogs, the edited walk, the tagged sofa
    labels = thumbs(page)
    assert nu.EDITED in labels
    # "dog": not the fruit bowl (only an unpicked candidate says dog); each thumbnail says why when its caption
    # does not: the sofa by its tag
    search(page, "dog", len(nu.DOG_CAPTIONS) + 2)
    labels = thumbs(page)
    assert not [t for t in labels if nu.FRUIT in t]
    assert f"[tag: dog] {nu.TAGGED}" in labels
    # asked for: the unpicked candidates too (the box, or "candidates:"), and the thumbnail says so
    page.locator("#search-candidates input").check()
    page.wait_for_function("(n) => document.querySelectorAll('#gallery-grid .thumbnail-item').length === n",
                           arg=len(nu.DOG_CAPTIONS) + 3)
    assert f"[in an unpicked candidate] {nu.FRUIT}" in thumbs(page)
    page.locator("#search-candidates input").uncheck()
    search(page, "candidates: dog", len(nu.DOG_CAPTIONS) + 3)
    assert f"[in an unpicked candidate] {nu.FRUIT}" in thumbs(page)
    search(page, "candidates: dogs NOT grass", len(nu.DOG_CAPTIONS) + 2)  # the walk out (a candidate says grass), the fruit in
    assert nu.EDITED not in thumbs(page)
    # the reason label is on the thumbnail itself, inside its box
    label = page.locator("#gallery-grid .thumbnail-item .caption-label", has_text="unpicked candidate").first
    assert label.is_visible()


# ---------------------------------------------------------------- 7. every text meets WCAG AA, in both themes
CONTRAST_JS = (Path(__file__).parent / "contrast.js").read_text()


def low_contrast(page) -> list[dict]:
    page.mouse.move(1, 1)  # no hover state
    page.wait_for_timeout(300)
    return page.evaluate(CONTRAST_JS)


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("width", nu.WIDTHS)
def test_every_text_meets_wcag_aa_contrast(studio, browser, two_photos, width, theme):
    url, ids = studio
    page = new_page(browser, url, width, theme)
    page.locator("#caption-button").wait_for()
    assert page.evaluate("document.body.classList.contains('dark')") is (theme == "dark")
    bad = {"start": low_contrast(page)}
    caption_photos(page, two_photos[:1])
    bad["caption results"] = low_contrast(page)
    gallery(page)
    search(page, "dog", len(nu.DOG_CAPTIONS) + 2)
    page.locator("#search-matches mark").first.wait_for()  # the found words, highlighted
    bad["search"] = low_contrast(page)
    open_item(page, 0)
    page.locator("#item-view .pv-card").first.wait_for()
    bad["item window"] = low_contrast(page)
    bad = {where: found for where, found in bad.items() if found}
    assert not bad, bad


# ---------------------------------------------------------------- 9. the GIF: small, where its button is
@pytest.mark.parametrize("width", nu.WIDTHS)
def test_gif_is_small_and_offered_beside_its_button(studio, browser, two_photos, width):
    import io

    from PIL import Image

    url, ids = studio
    page = new_page(browser, url, width)
    caption_photos(page, two_photos[:1])
    view = page.locator("#photos-view")
    button = view.locator(".pv-gif")
    button.scroll_into_view_if_needed()
    with page.expect_download() as download:
        button.click()
    data = Path(download.value.path()).read_bytes()
    assert download.value.suggested_filename.endswith(".gif") and data[:6] == b"GIF89a"
    with Image.open(io.BytesIO(data)) as gif:
        assert max(gif.size) <= 256 and gif.n_frames >= 2
    assert len(data) < 150_000, len(data)
    link = view.locator(".pv-gif-link")
    link.wait_for()
    assert in_view(page, "#photos-view .pv-gif-link") and in_view(page, "#photos-view .pv-gif")
    assert abs(box(page, "#photos-view .pv-gif-link")["y"] - box(page, "#photos-view .pv-gif")["y"]) < 60
    assert link.get_attribute("download").endswith(".gif") and "KB" in link.inner_text()
    assert not page.locator("#animation-file").is_visible()  # no file box far below


# ---------------------------------------------------------------- 10. small things
STEM_END_VISIBLE_JS = """() => [...document.querySelectorAll('#photo-files td.filename .stem')].map((s) => {
    const text = s.firstChild, range = document.createRange(), box = s.getBoundingClientRect();
    range.setStart(text, text.length - 1); range.setEnd(text, text.length);
    const r = range.getBoundingClientRect();
    return {name: s.textContent, cut: s.scrollWidth > s.clientWidth + 1,
            lastVisible: r.left >= box.left - 1 && r.right <= box.right + 1};
})"""


@pytest.mark.parametrize("width", nu.WIDTHS)
def test_small_things(studio, browser, width, tmp_path):
    url, ids = studio
    two_photos = []  # photos of this test alone (saved below: the same photo twice is refused)
    for i, name in enumerate(("000000174482.jpg", "000000174485.jpg")):
        nu.photo(60 + width % 7 + 3 * i, (320, 240)).save(tmp_path / name, quality=90)
        two_photos.append(tmp_path / name)
    page = new_page(browser, url, width)
    page.locator("#caption-status").wait_for()
    # the hint names the box, wherever it is (above on a phone, on the left on a desktop)
    hint = page.inner_text("#caption-status")
    assert "left" not in hint and "Photos" in hint
    # the upload list shows the end of each name (COCO names differ only there)
    page.locator("#photo-files input[type=file]").set_input_files([str(p) for p in two_photos])
    page.wait_for_function("document.querySelectorAll('#photo-files tbody tr').length === 2")
    stems = page.evaluate(STEM_END_VISIBLE_JS)
    assert [s["name"] for s in stems] == [p.stem for p in two_photos]
    assert all(s["lastVisible"] for s in stems), stems
    # one save message, once
    page.click("#caption-button")
    page.locator("#photos-view .pv-card").first.wait_for()
    page.locator("#photos-view .pv-save").click()
    page.locator("#photos-view .pv-save-msg", has_text="as gallery item #").wait_for()
    page.wait_for_timeout(1500)
    body = page.inner_text("body")
    assert body.count("as gallery item #") == 1, body
    assert page.locator(".toast-body").count() == 0
    page.locator("#photos-view .pv-save").click()  # the same again: refused, said once
    page.locator("#photos-view .pv-save-msg", has_text="already").wait_for()
    page.wait_for_timeout(1500)
    assert page.inner_text("body").lower().count("already") == 1
    assert page.locator(".toast-body").count() == 0


# ---------------------------------------------------------------- 6. by meaning: a readable strength, a cutoff
@pytest.mark.parametrize("width", nu.WIDTHS)
def test_by_meaning_shows_how_well_and_says_when_nothing_fits(studio, browser, width):
    import re

    url, ids = studio
    page = new_page(browser, url, width)
    gallery(page)
    page.locator("#meaning-toggle input").check()
    page.fill("#search-box textarea", "food on a plate")
    page.click("#search-button")
    page.wait_for_function("() => /well/.test(document.querySelector('#page-line').textContent)")
    line = page.inner_text("#page-line")
    shown = page.locator("#gallery-grid .thumbnail-item").count()
    raw = re.compile(r"-\d+\.\d{2,}")  # a log-probability like -4.824
    if line.startswith("Nothing"):  # (the tiny test model's likelihoods are random: either may happen)
        assert re.search(r"the closest is a \d+% match", line) and shown == 0
        assert not page.locator("#search-matches").is_visible()
    else:
        assert re.search(r"\d+\*?\*? items? fits? “food on a plate” well", line) or "well, best first" in line
        rows = page.locator("#search-matches li").all_inner_texts()
        assert rows and len(rows) == shown
        assert all(re.search(r"(strong|fair) match \(\d+%\)|matched by its words", r) for r in rows), rows
        assert not any(raw.search(r) for r in rows), rows
    assert not raw.search(line)
