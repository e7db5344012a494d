#!/usr/bin/env bash
# Galaxy readiness, offline: what Galaxy, the Ansible docsite and an execution environment build read from the
# collection, checked on a copy of it (the unit tests on the tarball Galaxy would get).
#
#   changelog  antsibull-changelog lint (fragments and changelogs/changelog.yaml), and CHANGELOG.md is exactly
#              what `antsibull-changelog generate` writes from them
#   docs       antsibull-docs lint-collection-docs on the plugins', roles' and extra docs, then the docsite's
#              RST generated from them (docs/docsite)
#   ee         ansible-builder introspect finds what meta/execution-environment.yml names, and nothing else
#   units      ansible-test units on the tarball `ansible-galaxy collection build` makes, installed: the unit
#              tests run without the stand-ins and configuration the tarball leaves out
#
# Every check runs, the summary names the ones that failed. The collection is copied first (tests/collection_tree.sh),
# so uncommitted files count and nothing is written to the checkout.
#
# Usage: tests/galaxy.sh
# Environment: PYTHON_VERSION (default 3.11), UNITS_WORKERS (default 2), KEEP_TMP=1 keeps the temporary tree.
set -euo pipefail

# shellcheck source=tests/collection_tree.sh
source "$(dirname "${BASH_SOURCE[0]}")/collection_tree.sh"
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"
UNITS_WORKERS="${UNITS_WORKERS:-2}"

start=$(date +%s)
build_collection_tree galaxy
# antsibull-docs and antsibull-changelog find the collection through ansible-doc.
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS_ROOT"
WORK="$COLLECTIONS_ROOT/work"
mkdir -p "$WORK"
cd "$COLLECTION_DIR"

check_changelog() {
    antsibull-changelog lint
    antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
    # The tree is a git repository: a CHANGELOG.md edited by hand, or not regenerated, shows as a difference.
    antsibull-changelog generate
    git diff --exit-code -- CHANGELOG.md
}

check_docs() {
    antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs .
    mkdir -p "$WORK/docs"
    antsibull-docs collection --use-current --fail-on-error --dest-dir "$WORK/docs" deployml.mlops >/dev/null
    local guide="$WORK/docs/collections/deployml/mlops/docsite/guide_deploy_new_project.rst"
    [[ -s "$guide" ]] || { echo "the docsite has no $guide"; return 1; }
}

check_ee() {
    ansible-builder introspect "$COLLECTIONS_ROOT" \
        --write-pip "$WORK/ee-pip.txt" --write-bindep "$WORK/ee-bindep.txt" >/dev/null
    # introspect prints each requirement with "# from collection deployml.mlops"; the files named in
    # meta/execution-environment.yml must be what it found, line for line (else it read something else).
    python - "$WORK/ee-pip.txt" "$WORK/ee-bindep.txt" <<'EOF'
import sys
from pathlib import Path

import yaml


def requirements(path, strip_origin=False):
    lines = []
    for line in Path(path).read_text().splitlines():
        if strip_origin:
            line = line.split("  # from collection", 1)[0]
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return sorted(lines)


meta = yaml.safe_load(Path("meta/execution-environment.yml").read_text())["dependencies"]
status = 0
for kind, found in (("python", sys.argv[1]), ("system", sys.argv[2])):
    declared = requirements(meta[kind])
    introspected = requirements(found, strip_origin=True)
    print("%s (%s): %s" % (kind, meta[kind], ", ".join(introspected) or "nothing"))
    if not declared or declared != introspected:
        print("  differs from what %s declares: %s" % (meta[kind], declared))
        status = 1
sys.exit(status)
EOF
}

check_units() {
    ansible-galaxy collection build "$COLLECTION_DIR" --output-path "$WORK/dist" >/dev/null
    # Its own collections path: on the one exported above, the tree is the collection already installed.
    ANSIBLE_COLLECTIONS_PATH="$WORK/installed" \
        ansible-galaxy collection install "$WORK"/dist/deployml-mlops-*.tar.gz -p "$WORK/installed" >/dev/null
    (
        cd "$WORK/installed/ansible_collections/deployml/mlops"
        ansible-test units --python "$PYTHON_VERSION" --local --color no --num-workers "$UNITS_WORKERS"
    )
}

failed=()
for check in changelog docs ee units; do
    echo "=== $check"
    check_start=$(date +%s)
    # Each check in a subshell that stops at its first failing command; the others still run. (Not as an `if`
    # condition: bash ignores set -e in a command whose status is tested.)
    set +e
    (set -e; "check_$check")
    status=$?
    set -e
    if [[ $status -eq 0 ]]; then
        echo "--- $check: ok ($(( $(date +%s) - check_start ))s)"
    else
        echo "--- $check: FAILED ($(( $(date +%s) - check_start ))s)"
        failed+=("$check")
    fi
done

echo "galaxy checks finished in $(( $(date +%s) - start ))s: ${#failed[@]} failed${failed[*]:+ (${failed[*]})}"
[[ ${#failed[@]} -eq 0 ]]
