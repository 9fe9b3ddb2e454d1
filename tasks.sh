#!/usr/bin/env bash
# The two README commands. Each sets up .venv (once) and then does its job:
#   ./tasks.sh suite   run the seed hypothesis suite on the zoo models, writing reports/
#   ./tasks.sh test    ruff, mypy, the import-layer contracts, the documentation site and the test suite
set -euo pipefail
cd "$(dirname "$0")"
VENV="${CIRCUITCHECK_VENV:-.venv}"

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        PY="$(command -v python3.11 || command -v python3)"
        "$PY" -m venv "$VENV"
    fi
    local stamp
    stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        # torch first, pinned, so pip takes the local CPU wheel instead of a CUDA build.
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
        touch "$stamp"
    fi
}

case "${1:-}" in
    suite)
        setup
        shift
        "$VENV/bin/circuitcheck" run hypotheses/*.yaml "$@"
        ;;
    test)
        setup
        shift
        "$VENV/bin/ruff" check .
        "$VENV/bin/mypy"
        "$VENV/bin/lint-imports"
        # the documentation site, from the code's own reference (scripts/docs_hooks.py), warnings as errors
        site="$(mktemp -d)"
        NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet -d "$site"
        rm -rf "$site"
        "$VENV/bin/pytest" "$@"
        ;;
    *)
        echo "usage: ./tasks.sh suite|test" >&2
        exit 2
        ;;
esac
