"""The explorer page in a real browser: Debian's chromium driven by Playwright, with every request the page makes
recorded (its URL and headers), its console errors, and helpers to wait for the views and read their pixels."""

import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
MISSING_CHROMIUM = ("the explorer's tests drive Debian's chromium at /usr/bin/chromium: `apt-get install chromium` "
                    "(.ci/run installs it when it is missing)")
# What chromium logs for an answer the page expects and shows (a 409 without a reference, a 422's reason, a 401)
REFUSAL_LOGGED = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")
ALL_QUIET = "() => [...document.querySelectorAll('main section')].every(s => s.dataset.ready) " \
            "&& !document.querySelector('.busy')"


@dataclass
class Sent:
    url: str
    method: str
    headers: dict[str, str]


@dataclass
class Explorer:
    """One tab on the explorer of the service at `base`."""
    page: object
    base: str
    requests: list[Sent] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser, base: str, fragment: str = "", viewport=(1200, 900)) -> "Explorer":
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        page = context.new_page()
        explorer = cls(page, base)
        page.on("request", lambda r: explorer.requests.append(Sent(r.url, r.method, r.headers)))
        page.on("console", lambda m: explorer.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: explorer.console_errors.append(f"uncaught: {e}"))
        # Anything for another host is refused: the page must work without it (and the assertions name it)
        own = urlsplit(base).netloc
        context.route("**/*", lambda route: route.continue_() if urlsplit(route.request.url).netloc == own
                      else route.abort())
        page.goto(f"{base}/explore{fragment}")
        return explorer

    def close(self) -> None:
        self.page.context.close()

    def wait_quiet(self, timeout_ms: float = 60_000) -> None:
        """Until every view has shown an answer and none is working."""
        self.page.wait_for_function(ALL_QUIET, timeout=timeout_ms)

    def change(self, control: str, value: str) -> None:
        """A control changed as a person changes it (then the views it drives are working)."""
        locator = self.page.locator(f"#{control}")
        if locator.evaluate("e => e.tagName") == "SELECT":
            locator.select_option(value)
        else:
            locator.fill(value)
            locator.dispatch_event("change")

    def choose_model(self, reference: str) -> None:
        self.page.locator("#model").select_option(reference)
        self.wait_quiet()

    def status(self, view: str) -> str:
        return self.page.locator(f"#{view} .status").inner_text()

    def request_of(self, selector: str) -> dict:
        """The API request a view's output was drawn from (data-request, JSON)."""
        return json.loads(self.page.locator(selector).first.get_attribute("data-request"))

    def canvas_pixels(self, selector: str) -> list[np.ndarray]:
        """Every canvas matching `selector`, as its own pixels: uint8 (height, width, 4)."""
        shapes_and_data = self.page.eval_on_selector_all(selector, """canvases => canvases.map(c => {
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return [c.height, c.width, Array.from(data)];
        })""")
        return [np.array(data, np.uint8).reshape(h, w, 4) for h, w, data in shapes_and_data]

    def unexpected_console_errors(self, *allowed_statuses: int) -> list[str]:
        errors = []
        for text in self.console_errors:
            refused = REFUSAL_LOGGED.search(text)
            if not (refused and int(refused.group(1)) in allowed_statuses):
                errors.append(text)
        return errors

    def hosts(self) -> set[str]:
        """The hosts of every request: blob: URLs count as the host they belong to, data: URLs as none."""
        hosts = set()
        for sent in self.requests:
            url = sent.url[len("blob:"):] if sent.url.startswith("blob:") else sent.url
            if not url.startswith("data:"):
                hosts.add(urlsplit(url).netloc)
        return hosts


def api_png(base: str, path: str, body: dict, key: str | None = None) -> np.ndarray:
    """The service's PNG answer for the same request, as its pixels."""
    headers = {"accept": "image/png", **({"authorization": f"Bearer {key}"} if key else {})}
    response = httpx.post(f"{base}/{path}", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)))


def api_json(base: str, path: str, body: dict, key: str | None = None) -> dict:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(f"{base}/{path}", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def grid_tiles(grid: np.ndarray, n: int, height: int, width: int) -> list[np.ndarray]:
    """The n pictures of a grid of ceil(sqrt(n)) columns, row by row (CONTRACT section 4)."""
    columns = math.ceil(math.sqrt(n))
    return [grid[(i // columns) * height:(i // columns + 1) * height, (i % columns) * width:(i % columns + 1) * width]
            for i in range(n)]


def grey(canvas: np.ndarray) -> np.ndarray:
    """A canvas of a grey picture as its grey levels (R = G = B), checked opaque."""
    assert (canvas[..., 3] == 255).all()
    assert (canvas[..., 0] == canvas[..., 1]).all() and (canvas[..., 1] == canvas[..., 2]).all()
    return canvas[..., 0]
