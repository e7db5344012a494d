# shellcheck shell=bash
# Sourced by tests/sanity.sh and tests/galaxy.sh: the collection as ansible-test and the Galaxy tools see it.
#
# ansible-test, antsibull-docs and ansible-builder want the collection at .../ansible_collections/<namespace>/<name>/,
# and ansible-test also inside a git repository. The tracked and untracked-but-not-ignored files are copied into a
# temporary tree and committed there, so the checkout's own .build, .venv and test output never get in.
#
# Sets ROOT (the checkout) and puts the venv ($VENV, default .venv) first on PATH, because ansible-test and the
# antsibull tools call other commands by name. Environment: KEEP_TMP=1 keeps the temporary tree.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"

# Builds the tree and sets COLLECTIONS_ROOT (the directory holding ansible_collections/) and COLLECTION_DIR
# (.../ansible_collections/deployml/mlops). The tree is removed when the calling script exits.
# $1: a name for the temporary directory.
build_collection_tree() {
    local tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/deployml-${1:-collection}.XXXXXX")"
    if [[ "${KEEP_TMP:-0}" != 1 ]]; then
        # shellcheck disable=SC2064  # the path is fixed now, on purpose
        trap "rm -rf '$tmp'" EXIT
    else
        echo "keeping $tmp"
    fi
    # shellcheck disable=SC2034  # read by the scripts that source this file
    COLLECTIONS_ROOT="$tmp"
    COLLECTION_DIR="$tmp/ansible_collections/deployml/mlops"
    mkdir -p "$COLLECTION_DIR"

    # Tracked files plus new files that are not ignored; files deleted in the work tree are skipped.
    (
        cd "$ROOT" || exit
        git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' file; do
            if [[ -e "$file" || -L "$file" ]]; then
                printf '%s\0' "$file"
            fi
        done | tar --null --no-recursion -T - -cf -
    ) | tar -xf - -C "$COLLECTION_DIR"

    (
        cd "$COLLECTION_DIR" || exit
        git init -q
        git add -A
        git -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false \
            commit -q -m "collection snapshot"
    )
}

# ansible-test bootstraps pip into the virtual environments it creates with a script it downloads; offline, a
# stand-in at the cache path does the same with ensurepip (see /work/shared/OFFLINE-TOOLCHAIN.md).
install_offline_get_pip() {
    local pip_version cache get_pip
    # The pip version ansible-test bootstraps decides the cache file name (get_pip_24_2.py for ansible-core 2.19).
    pip_version="$(python - <<'EOF'
import re
from pathlib import Path
import ansible_test
source = (Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", source).group(1))
EOF
)"
    cache="$HOME/.ansible/test/cache"
    get_pip="$cache/get_pip_${pip_version//./_}.py"
    mkdir -p "$cache"
    cat > "$get_pip.tmp" <<'EOF'
"""Offline stand-in for ansible-test's get-pip bootstrap script (installed by tests/collection_tree.sh).

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
    if ! cmp -s "$get_pip.tmp" "$get_pip" 2>/dev/null; then
        mv "$get_pip.tmp" "$get_pip"
    else
        rm -f "$get_pip.tmp"
    fi
}
