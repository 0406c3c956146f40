# Shortcuts for what CI and the docs run (root: the tests and the screenshots start real containers).
.PHONY: test screenshots

test:
	bash scripts/test.sh

screenshots:
	.venv/bin/python scripts/screenshots.py --out docs/screenshots
