# Quick start on a fresh machine: `make demo` and `make test`.
# Both provision the pinned Node.js and pnpm (scripts/toolchain.sh) first, so
# they work where the system Node is older than 22.12 and pnpm is absent.
SHELL := /bin/bash
WITH_TOOLCHAIN := source scripts/toolchain.sh &&

.PHONY: install build test demo bench lint system-deps

install:
	@$(WITH_TOOLCHAIN) pnpm install --frozen-lockfile

build: install
	@$(WITH_TOOLCHAIN) pnpm build

# Debian packages some tests need, installed when missing if run as root; otherwise
# the script says what is missing and the tests that need it say so too.
system-deps:
	-@bash scripts/system-deps.sh

test: system-deps build
	@$(WITH_TOOLCHAIN) pnpm test

demo: build
	@$(WITH_TOOLCHAIN) pnpm demo

bench: build
	@$(WITH_TOOLCHAIN) pnpm bench

lint: install
	@$(WITH_TOOLCHAIN) pnpm lint && pnpm typecheck
