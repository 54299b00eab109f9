#!/usr/bin/env bash
# Lint, format check, strict type check and the whole test suite.
#
# Every step runs even when an earlier one fails, so one run shows all the
# problems; the exit status is non-zero when any step failed. Arguments go to
# pytest (e.g. ops/test.sh -k compat). pytest's "no tests collected" (exit 5)
# counts as a failure: a suite that ran nothing proves nothing.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bin="$repo/.venv/bin"
[ -x "$bin/python" ] || { echo "test.sh: no .venv; run ops/setup.sh first" >&2; exit 2; }

roots=(bus handlers agent router cli client config)
failed=()

step() {
    local name="$1"
    shift
    echo "== $name"
    "$@" || failed+=("$name")
}

step "ruff check" "$bin/ruff" check .
step "ruff format" "$bin/ruff" format --check .

# mypy sees the packages under their real names through a tree of symlinks
# megabus/<root> -> <root>: the same shape as setuptools' strict editable
# mode, but it never needs a reinstall when a module is added.
typecheck() {
    local farm="$repo/build/typecheck"
    local args=()
    rm -rf "$farm"
    mkdir -p "$farm/megabus"
    for root in "${roots[@]}"; do
        ln -s "$repo/$root" "$farm/megabus/$root"
        # a folder that holds no module yet is no package mypy could check
        if find "$root" -name '*.py' -print -quit | grep -q .; then
            args+=(-p "megabus.$root")
        fi
    done
    (cd "$farm" && "$bin/mypy" --config-file "$repo/pyproject.toml" --strict "${args[@]}")
}
step "mypy --strict" typecheck

# The layers and engine faces of docs/architecture.md, as pyproject.toml's
# import-linter contracts say them; read through the same symlink tree.
step "import contracts" bash -c 'cd "$1/build/typecheck" && PYTHONPATH=. "$2/lint-imports" "$1/pyproject.toml"' _ "$repo" "$bin"

echo "== pytest"
"$bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests" >&2
    failed+=("pytest (no tests)")
elif [ "$rc" -ne 0 ]; then
    failed+=("pytest")
fi

if [ "${#failed[@]}" -gt 0 ]; then
    printf 'test.sh: FAILED: %s\n' "$(IFS=,; echo "${failed[*]}")" >&2
    exit 1
fi
echo "test.sh: all passed"
