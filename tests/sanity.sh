#!/usr/bin/env bash
# Run `ansible-test sanity` on the collection, offline.
#
# ansible-test wants the collection at .../ansible_collections/<namespace>/<name>/ inside a git repository,
# so the tracked and untracked-but-not-ignored files are copied into a temporary tree and committed there.
# ansible-test bootstraps pip into each sanity virtual environment with a script it downloads; offline, a
# stand-in at the cache path does the same with ensurepip (see /work/shared/OFFLINE-TOOLCHAIN.md).
#
# Usage: tests/sanity.sh [extra ansible-test sanity arguments, e.g. --test pylint]
# Environment: PYTHON_VERSION (default 3.11), KEEP_TMP=1 keeps the temporary tree.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"
export PATH="$VENV/bin:$PATH"

# The pip version ansible-test bootstraps decides the cache file name (get_pip_24_2.py for ansible-core 2.19).
PIP_VERSION="$(python - <<'EOF'
import re
from pathlib import Path
import ansible_test
source = (Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", source).group(1))
EOF
)"
CACHE="$HOME/.ansible/test/cache"
GET_PIP="$CACHE/get_pip_${PIP_VERSION//./_}.py"
mkdir -p "$CACHE"
cat > "$GET_PIP.tmp" <<'EOF'
"""Offline stand-in for ansible-test's get-pip bootstrap script (installed by tests/sanity.sh).

ensurepip installs the pip bundled with Python, then that pip installs the requested packages from the
machine's configured indexes. ensurepip points PIP_CONFIG_FILE at /dev/null, which would hide the
machine's pip settings (offline indexes), so the variable is dropped again before pip runs.
"""
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
os.environ.pop("PIP_CONFIG_FILE", None)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
if any(not a.startswith("-") for a in args):
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
EOF
if ! cmp -s "$GET_PIP.tmp" "$GET_PIP" 2>/dev/null; then
    mv "$GET_PIP.tmp" "$GET_PIP"
else
    rm -f "$GET_PIP.tmp"
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/deployml-sanity.XXXXXX")"
if [[ "${KEEP_TMP:-0}" != 1 ]]; then
    trap 'rm -rf "$TMP"' EXIT
else
    echo "keeping $TMP"
fi
DEST="$TMP/ansible_collections/deployml/mlops"
mkdir -p "$DEST"

cd "$ROOT"
# Tracked files plus new files that are not ignored; files deleted in the work tree are skipped.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' file; do
    if [[ -e "$file" || -L "$file" ]]; then
        printf '%s\0' "$file"
    fi
done | tar --null --no-recursion -T - -cf - | tar -xf - -C "$DEST"

cd "$DEST"
git init -q
git add -A
git -c user.name=sanity -c user.email=sanity@localhost -c commit.gpgsign=false commit -q -m "sanity snapshot"

start=$(date +%s)
status=0
ansible-test sanity --python "$PYTHON_VERSION" --local --color no "$@" || status=$?
echo "ansible-test sanity finished with status $status in $(( $(date +%s) - start ))s"
exit "$status"
