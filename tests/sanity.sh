#!/usr/bin/env bash
# Run `ansible-test sanity` on the collection, offline.
#
# The collection is copied into a temporary ansible_collections/ tree inside a git repository, and ansible-test's
# pip bootstrap script is replaced by an offline stand-in (both in tests/collection_tree.sh).
#
# Usage: tests/sanity.sh [extra ansible-test sanity arguments, e.g. --test pylint]
# Environment: PYTHON_VERSION (default 3.11), KEEP_TMP=1 keeps the temporary tree.
set -euo pipefail

# shellcheck source=tests/collection_tree.sh
source "$(dirname "${BASH_SOURCE[0]}")/collection_tree.sh"
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"

install_offline_get_pip
build_collection_tree sanity
cd "$COLLECTION_DIR"

start=$(date +%s)
status=0
ansible-test sanity --python "$PYTHON_VERSION" --local --color no "$@" || status=$?
echo "ansible-test sanity finished with status $status in $(( $(date +%s) - start ))s"
exit "$status"
