# One-line aliases of the xtask commands.

demo *ARGS:
    cargo xtask demo {{ARGS}}

test:
    cargo xtask test

plugins:
    cargo xtask plugins

lint:
    cargo xtask lint

chaos:
    cargo xtask chaos
