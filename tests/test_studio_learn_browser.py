"""The studio's Models tab in a real browser (chromium through Playwright) on a real studio server: the
edit count, "Learn from my edits" running in the background to its outcome, then the model picker
switching the studio to the learned model (the list's new entry is accepted by Gradio's own check of
dropdown values) and back."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import newuser_studio as nu
from studio_server import start_studio, stop_studio
from test_learn import make_gallery

TIMEOUT_MS = 300_000  # learning on a machine shared with other jobs


@pytest.mark.slow
def test_models_tab_learns_from_the_edits_and_switches_to_the_new_model(tiny_model_dir, tmp_path):
    if not Path(nu.CHROMIUM).exists():
        pytest.skip(f"{nu.CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    gallery = make_gallery(tmp_path / "gallery", "tiny-test")
    proc, url = start_studio(tiny_model_dir, gallery, tmp_path / "studio.log")
    try:
        expect.set_options(timeout=TIMEOUT_MS)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=nu.CHROMIUM, args=nu.CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(url)
                page.get_by_role("tab", name="Models").click()
                expect(page.locator("#learn-edits")).to_contain_text("12 edited captions")
                page.locator("#learn-button").click()
                status = page.locator("#learn-status")
                expect(status).to_contain_text("Learned from 12 of 12 edits")
                expect(status).to_contain_text("the studio keeps using tiny-test until you switch")
                model_id = re.search(r"(learned-\d{8}-\d{6}\S*) in the model list", status.inner_text()).group(1)
                assert (gallery / "models" / model_id / "config.json").is_file()

                page.locator("#model-picker input").click()
                page.get_by_role("option", name=re.compile(f"^{re.escape(model_id)}:")).click()
                page.locator("#use-model").click()
                expect(page.locator("#model-message")).to_contain_text(f"now captions with tiny-test+{model_id}")

                page.locator("#model-picker input").click()
                page.get_by_role("option", name=re.compile("the model the studio started with")).click()
                page.locator("#use-model").click()
                expect(page.locator("#model-message")).to_contain_text("now captions with tiny-test.")
            finally:
                browser.close()
    finally:
        stop_studio(proc)
