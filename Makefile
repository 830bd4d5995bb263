# The README's two commands: `make run` (set up, then the main job) and `make test`.
.PHONY: setup run test pretrain

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/workbench train

test: setup
	.venv/bin/python -m pytest -q

pretrain: setup
	.venv/bin/workbench pretrain
