"""Screenshots of the explorer's views for docs/explorer/: the page in Debian's chromium on a running service.

    python -m tests.browser.screenshots [--models DIR] [--model mnist-binary] [--out docs/explorer]

The service serves a copy of DIR (default: the shipped models/) made as the browser tests make theirs
(tests/browser/explorable.py: the digits' image key where a manifest lacks it, digits-numbers beside them), with the
references DIR has: a model without one shows /score's 409 in its anomaly view. The anomaly view is shown twice:
for a point drawn from the model, and for a chimera of two of them (the left half of one, the right half of
another: the model shows a square image), dropped on the page as a .npy file. Last, the key prompt of a service
started with VAE_API_KEYS, after a wrong key.
"""

import argparse
import io
import math
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from service.settings import PROJECT_ROOT
from tests.browser.explorable import NUMBERS_MODEL, SHIPPED, explorable_repository
from tests.browser.pages import CHROMIUM, MISSING_CHROMIUM, Explorer, api_json
from tests.service.serving import running_server

VIEWS = ("samples", "points", "interpolation", "map", "anomaly")


def save_small(png: bytes, path: Path) -> None:
    """A screenshot with at most 256 colours (they are flat drawings): a fraction of the bytes, the same look."""
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path} "
          f"({path.stat().st_size // 1024} KiB)")


def shoot(explorer: Explorer, out: Path, prefix: str = "") -> None:
    for view in VIEWS:
        save_small(explorer.page.locator(f"#{view}").screenshot(), out / f"{prefix}{view}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=SHIPPED, help="the repository to copy and serve")
    parser.add_argument("--model", default="mnist-binary", help="the model the screenshots show")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "explorer")
    args = parser.parse_args()
    assert CHROMIUM.exists(), MISSING_CHROMIUM
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        repository = explorable_repository(Path(folder) / "models", source=args.models)
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        with running_server(Path(folder), model_repository=repository, redis_url="", api_keys="") as server:
            explorer = Explorer.open(browser, server.url, f"#model={args.model}", viewport=(1100, 900))
            explorer.wait_quiet()
            explorer.page.locator("#map canvas").click(position={"x": 250, "y": 55})  # decode a corner of the map
            explorer.page.wait_for_selector("#map .decoded figure canvas")
            explorer.wait_quiet()
            explorer.page.evaluate("() => window.scrollTo(0, 0)")
            save_small(explorer.page.screenshot(), args.out / "page.png")  # the top of the page, as a visitor sees it
            shoot(explorer, args.out)

            points = api_json(server.url, "sample", {"model": args.model, "n": 32, "seed": 1, "mode": "sample"})["x"]
            first, second = (np.asarray(points[i], np.float32) for i in (0, 1))
            side = math.isqrt(first.size)  # a square image: its left half from one point, the right from another
            chimera = second.reshape(side, side).copy()
            chimera[:, :side // 2] = first.reshape(side, side)[:, :side // 2]
            chimera = chimera.reshape(first.shape)
            np.save(Path(folder) / "chimera.npy", chimera[None])
            explorer.page.locator("#points-file").set_input_files(str(Path(folder) / "chimera.npy"))
            explorer.page.wait_for_function("() => document.querySelectorAll('#points figure').length === 1")
            explorer.wait_quiet()
            save_small(explorer.page.locator("#anomaly").screenshot(), args.out / "anomaly-chimera.png")

            explorer.choose_model(f"{NUMBERS_MODEL}:1")
            for view in ("samples", "anomaly"):
                save_small(explorer.page.locator(f"#{view}").screenshot(), args.out / f"numbers-{view}.png")
            explorer.close()
        with running_server(Path(folder), model_repository=repository, redis_url="", api_keys="a-key") as server:
            explorer = Explorer.open(browser, server.url, viewport=(1100, 400))
            explorer.page.wait_for_selector("#key-form:not([hidden])")
            explorer.page.locator("#key").fill("a-wrong-key")
            explorer.page.locator("#key-form button[type=submit]").click()
            explorer.page.wait_for_selector("#key-error:not([hidden])")
            save_small(explorer.page.screenshot(), args.out / "key.png")
            explorer.close()
        browser.close()


if __name__ == "__main__":
    main()
