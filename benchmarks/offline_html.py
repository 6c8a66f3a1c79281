"""Make the published asv dashboard work without access to the JavaScript CDNs.

asv's ``index.html`` loads jQuery, Flot, Bootstrap and three small plugins
from CDNs; on a machine that reaches only the package registries the page
then shows "Can not determine continental origin of swallow" and no graph.
This script fetches the same libraries with ``npm pack`` (the npm registry),
copies the files the page needs into ``<html>/vendor/`` and points the
``<script>``/``<link>`` tags at them. Run it after ``asv publish``::

    asv publish && python benchmarks/offline_html.py && asv preview

The npm files are the CDN's versions, except stupidtable (1.0.1 on the CDN,
not published to npm: 1.1.3, the same ``$.fn.stupidtable`` API) and Flot
(the CDN serves its own minified build of 0.8.3, npm the unminified one); the
``integrity`` attributes are dropped because the bytes differ.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: CDN file name in asv's index.html -> (npm package, file inside the package)
FILES = {
    "jquery-3.3.1.min.js": ("jquery@3.3.1", "dist/jquery.min.js"),
    "jquery.flot.min.js": ("flot@0.8.3", "jquery.flot.js"),
    "jquery.flot.time.min.js": ("flot@0.8.3", "jquery.flot.time.js"),
    "jquery.flot.selection.min.js": ("flot@0.8.3", "jquery.flot.selection.js"),
    "jquery.flot.categories.min.js": ("flot@0.8.3", "jquery.flot.categories.js"),
    "jquery.flot.orderBars.js": ("flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js"),
    "stupidtable.min.js": ("stupid-table-plugin@1.1.3", "stupidtable.min.js"),
    "md5.min.js": ("blueimp-md5@2.19.0", "js/md5.min.js"),
    "bootstrap.min.js": ("bootstrap@3.1.1", "dist/js/bootstrap.min.js"),
    "bootstrap.min.css": ("bootstrap@3.1.1", "dist/css/bootstrap.min.css"),
}
#: directories copied beside a file (bootstrap.min.css reads ../fonts/)
EXTRA_DIRS = {"bootstrap@3.1.1": ["dist/fonts"]}

_TAG = re.compile(r'<(script|link)\b[^>]*?(?:src|href)="(https://[^"]+)"[^>]*>')


def _fetch(packages: set[str], work: Path) -> dict[str, Path]:
    """``npm pack`` each package into ``work``; return package -> unpacked root."""
    roots = {}
    for spec in sorted(packages):
        out = subprocess.run(["npm", "pack", "--silent", spec], cwd=work, check=True,
                             capture_output=True, text=True).stdout.split()[-1]
        root = work / spec.replace("@", "-")
        with tarfile.open(work / out) as tar:
            tar.extractall(root, filter="data")
        roots[spec] = root / "package"
    return roots


def _local_tag(tag: str, url: str, local: str) -> str:
    tag = tag.replace(url, local)
    return re.sub(r'\s(integrity|crossorigin|referrerpolicy)="[^"]*"', "", tag)


def make_offline(html_dir: Path) -> list[str]:
    """Vendor the CDN files of ``html_dir/index.html``; return the URLs replaced."""
    index = html_dir / "index.html"
    text = index.read_text(encoding="utf-8")
    tags = _TAG.findall(text)
    unknown = [url for _, url in tags if url.rsplit("/", 1)[-1] not in FILES]
    # the project link in the navigation bar is an <a>, not matched by _TAG
    if unknown:
        raise SystemExit(f"no local copy known for {unknown}: update FILES in {__file__}")
    needed = {FILES[url.rsplit("/", 1)[-1]] for _, url in tags}
    vendor = html_dir / "vendor"
    with tempfile.TemporaryDirectory(prefix="asv-vendor-") as tmp:
        roots = _fetch({pkg for pkg, _ in needed}, Path(tmp))
        for pkg, path in needed:
            dest = vendor / pkg / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(roots[pkg] / path, dest)
        for pkg, dirs in EXTRA_DIRS.items():
            for d in dirs if pkg in roots else []:
                shutil.copytree(roots[pkg] / d, vendor / pkg / d, dirs_exist_ok=True)

    def replace(match: re.Match) -> str:
        url = match.group(2)
        pkg, path = FILES[url.rsplit("/", 1)[-1]]
        return _local_tag(match.group(0), url, f"vendor/{pkg}/{path}")

    index.write_text(_TAG.sub(replace, text), encoding="utf-8")
    return [url for _, url in tags]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=Path(__file__).parent / "html",
                        help="asv's html_dir (default: benchmarks/html)")
    args = parser.parse_args(argv)
    if not (args.html / "index.html").is_file():
        parser.error(f"{args.html}/index.html not found: run `asv publish` first")
    for url in make_offline(args.html):
        print(f"local copy of {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
