"""The HTML report opened in a real headless browser (Debian's chromium): its figures load and
take up space on the page. Skipped, with the reason, where chromium is not installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import synthetic

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and Path(p).exists()), None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")

# Injected by the test only, never part of the page: once the page has loaded, record every
# figure's decoded and laid-out size in the DOM, which --dump-dom then prints.
PROBE = """<script>
window.addEventListener('load', () => {
  const figs = [...document.images].map(i => ({
    alt: i.alt, complete: i.complete, natural: [i.naturalWidth, i.naturalHeight],
    shown: [i.getBoundingClientRect().width, i.getBoundingClientRect().height]}));
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify(figs);
  document.body.appendChild(out);
});
</script>"""


def chromium(*args, tmp_path: Path, timeout=90):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The report page of the synthetic GPU results, rendered by the CLI as a user would."""
    from conftest import run_gpukit
    tmp = tmp_path_factory.mktemp("html")
    results = tmp / "gpu.json"
    results.write_text(json.dumps(synthetic.with_gpu()))
    out = tmp / "report.html"
    r = run_gpukit("report", str(results), "--quiet", "--html", str(out),
                   env={"GPUKIT_CACHE_DIR": str(tmp / "cache")})
    assert r.returncode == 0, r.stderr
    return out


def test_figures_load_with_nonzero_size(page, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    r = chromium("--virtual-time-budget=10000", "--window-size=1280,2000", "--dump-dom",
                 probed.as_uri(), tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert "<h2>Findings</h2>" in dom and "GPU vs best CPU" in dom
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the load probe did not run: " + dom[-500:]
    figs = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(figs) == 4
    for fig in figs:
        assert fig["complete"], fig["alt"]
        assert min(fig["natural"]) > 100, fig          # the PNG decoded
        assert min(fig["shown"]) > 100, fig            # and takes up room on the page


def test_screenshot_is_not_blank(page, tmp_path):
    from PIL import Image
    shot = tmp_path / "shot.png"
    r = chromium(f"--screenshot={shot}", "--window-size=1200,3000", "--hide-scrollbars",
                 page.as_uri(), tmp_path=tmp_path)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 3000)
    lo, hi = image.getextrema()
    colours = len(image.getcolors(maxcolors=1 << 16) or [])
    assert hi - lo > 100 and colours > 20      # text and plots, not an empty white page
