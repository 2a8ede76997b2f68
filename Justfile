# Shortcuts only; README.md gives the plain commands.

# Run the service with demo accounts.
demo:
    cargo run --release -- demo

# The full test suite, as CI runs it.
test:
    cargo test

# Formatting and lints, as CI checks them.
check:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# What CI runs.
ci:
    bash .ci/run
