#!/usr/bin/env bash
# Builds this plugin into {{name}}.wasm, a WebAssembly component for levee's
# `{{world}}` world, with componentize-py 0.25.1 (pinned in
# requirements.txt): from ./.venv if there is one, else from PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

pinned=0.25.1
[[ -x .venv/bin/componentize-py ]] && PATH=$PWD/.venv/bin:$PATH
if ! command -v componentize-py > /dev/null; then
    echo "{{name}}: error: componentize-py not found; install it with:" \
        "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt" >&2
    exit 1
fi
found=$(componentize-py --version)
[[ $found == "componentize-py $pinned" ]] ||
    echo "{{name}}: warning: $found, not the $pinned pinned in requirements.txt" >&2

componentize-py -d wit/levee-policy.wit -w {{world}} componentize -p . app -o {{name}}.wasm
echo "{{name}}: built {{name}}.wasm; check it with: levee plugin check {{name}}.wasm --config '{}'"
