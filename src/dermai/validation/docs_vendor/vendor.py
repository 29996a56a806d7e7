"""Refresh the vendored Data Docs assets from unpacked npm packages (`make docs-vendor`).

Why: GX Data Docs load Bootstrap, jQuery, bootstrap-table and Font Awesome (the status icons)
from CDNs, so offline they are unstyled and the Status column is empty. `manifest.json` lists
each CDN URL, the npm package file that replaces it and where it goes here; licences go to
LICENSES/, versions to VERSIONS. `validation.gx.vendor_docs` points the pages at the copies.

    python vendor.py NPM_DIR   # NPM_DIR/<package>/package/... as `npm pack` + tar leave them
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(npm_dir: Path) -> None:
    manifest = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    for item in manifest["files"]:
        dest = HERE / item["dest"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(npm_dir / item["package"] / "package" / item["src"], dest)
    (HERE / "LICENSES").mkdir(exist_ok=True)
    for pkg, name in manifest["licences"].items():
        target = HERE / "LICENSES" / pkg.replace("/", "__")
        if name is None:  # no licence file in the package: its package.json and file header
            meta = json.loads((npm_dir / pkg / "package" / "package.json").read_text())
            target.write_text(
                f"{pkg} {meta['version']}: licence {meta['license']} (package.json); "
                "the copyright notice is kept at the top of the vendored file.\n",
                encoding="utf-8",
            )
        else:
            shutil.copyfile(npm_dir / pkg / "package" / name, target)
    (HERE / "VERSIONS").write_text(
        "".join(f"{k} {v}\n" for k, v in manifest["packages"].items()), encoding="utf-8"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
