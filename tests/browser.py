"""Open a page in headless Chromium (Debian's, driven by playwright) as a reader would, and report what happened.

Network is cut: every request other than the page's own file is refused and recorded, so a page that
needs a CDN fails. Console errors and uncaught exceptions are collected; WebGL warnings are not errors.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--enable-unsafe-swiftshader"]  # WebGL on the CPU


def chromium() -> str | None:
    """The system's Chromium, or None (the test then skips, saying how to get it)."""
    found = os.environ.get("POINTAD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        return None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None
    return found


@dataclass
class Visit:
    """What one visit saw."""

    errors: list[str] = field(default_factory=list)  # console errors and page exceptions
    requests: list[str] = field(default_factory=list)  # every URL the page asked for beyond its own file
    shots: dict[str, Path] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def colourful(png: Path) -> float:
    """The share of strongly coloured pixels (the score colours; a blank plot is white and pale grey)."""
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    return float(((rgb.max(-1) - rgb.min(-1)) > 80).mean())


def visit(page_file: Path, shots: Path, interact: bool = True) -> Visit:
    """Open `page_file`, wait for the 3D view and screenshot it; `interact`: then move as a reader would."""
    from playwright.sync_api import sync_playwright

    seen, own = Visit(), page_file.resolve().as_uri()
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: seen.errors.append(f"uncaught: {exc}"))

            def refuse(route: Any) -> None:
                if route.request.url != own:
                    seen.requests.append(route.request.url)
                    route.abort()
                else:
                    route.continue_()

            page.route("**/*", refuse)
            page.goto(own, wait_until="load", timeout=120_000)
            try:
                page.wait_for_selector("#cloud3d canvas", timeout=45_000)
            except Exception as exc:  # noqa: BLE001 - playwright's TimeoutError: say what the page logged
                raise AssertionError(f"the 3D view never drew; the page logged {seen.errors}") from exc
            page.wait_for_timeout(1500)
            seen.shots["page"] = shots / "page.png"
            page.screenshot(path=str(seen.shots["page"]))
            seen.shots["cloud"] = shots / "cloud.png"
            page.locator("#cloud3d").screenshot(path=str(seen.shots["cloud"]))
            if interact:
                _interact(page, seen)
        finally:
            browser.close()
    return seen


def _gt_trace(page: Any) -> tuple[int, bool]:
    """(points, shown) of the 3D view's ground-truth trace."""
    n, shown = page.evaluate("(() => { const t = document.getElementById('cloud3d').data[1]; "
                             "return [t.x.length, t.visible !== false]; })()")
    return int(n), bool(shown)


def _interact(page: Any, seen: Visit) -> None:
    """A reader's moves: open a missed defect in 3D, hide its GT, then pick another sample."""
    facts = seen.facts
    facts["samples"] = page.locator("#pick-sample option").count()
    facts["first_caption"] = page.locator("#cloud-caption").inner_text()
    button = page.locator('div.case[data-kind="missed defect"] button.show3d').first
    facts["button_sample"] = button.get_attribute("data-sample")
    button.click()
    page.wait_for_timeout(800)
    facts["button_caption"] = page.locator("#cloud-caption").inner_text()
    facts["gt_with"] = _gt_trace(page)
    seen.shots["defect"] = seen.shots["page"].with_name("defect.png")
    page.locator("#cloud3d").screenshot(path=str(seen.shots["defect"]))
    page.uncheck("#show-gt")
    page.wait_for_timeout(300)
    facts["gt_without"] = _gt_trace(page)
    options = page.locator("#pick-sample option")  # the button may have switched class
    last = options.nth(options.count() - 1).get_attribute("value")
    page.select_option("#pick-sample", last)
    page.wait_for_timeout(800)
    facts["last_caption"] = page.locator("#cloud-caption").inner_text()
