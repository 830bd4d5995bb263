# The README's two commands: `make run` (set up, then the main job) and `make test`.
.PHONY: setup run train test notebooks pretrain

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/workbench dashboard

train: setup
	.venv/bin/workbench train

test: setup
	bash scripts/setup-browser.sh
	.venv/bin/python -m pytest -q

notebooks: setup
	.venv/bin/jupyter lab notebooks/

pretrain: setup
	.venv/bin/workbench pretrain
