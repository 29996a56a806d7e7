popper.js 1.12.9: licence MIT (package.json); the copyright notice is kept at the top of the vendored file.
