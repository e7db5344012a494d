"""The test environment is one lock (requirements-test.lock), derived from the inputs and the images' pins.

`make lock` resolves requirements-test.txt, which includes every image's requirements.txt, into the lock;
`make venv` installs only the lock. These checks fail when one side is edited without the other: an image pin
or an input range that the lock does not honour, a lock entry without hashes, or a venv built from another lock.
"""
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements-test.lock"
IMAGES = [ROOT / "roles" / role / "files" / "requirements.txt" for role in ("mlflow", "serving", "monitoring")]
RELOCK = "edit the inputs, then run `make lock`"


def locked():
    """{canonical name: (version, number of hashes)} from the lock's `name==version \\ --hash=...` entries."""
    entries = {}
    text = LOCK.read_text()
    for match in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", text, re.M):
        entries[canonicalize_name(match.group(1))] = (match.group(2), match.group(3).count("--hash="))
    return entries


def requirements(path, seen=None):
    """The requirements of a requirements file, following `-r` includes, each with the file it came from."""
    seen = seen if seen is not None else set()
    if path in seen:
        return []
    seen.add(path)
    found = []
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            found += requirements((path.parent / line[3:].strip()).resolve(), seen)
        else:
            assert not line.startswith("-"), "unexpected option %r in %s" % (line, path)
            found.append((Requirement(line), path))
    return found


def test_the_lock_pins_every_package_with_hashes():
    entries = locked()
    assert len(entries) > 50, "the lock looks truncated: %d entries" % len(entries)
    unhashed = sorted(name for name, (_version, hashes) in entries.items() if not hashes)
    assert not unhashed, "entries without --hash (%s): %s" % (RELOCK, unhashed)
    pinned_lines = re.findall(r"^[A-Za-z0-9_.-]+==", LOCK.read_text(), re.M)
    assert len(pinned_lines) == len(entries)
    assert not re.search(r"^[A-Za-z0-9_.-]+\s*(>=|<=|~=|>|<|!=)", LOCK.read_text(), re.M), "a range in the lock"


@pytest.mark.parametrize("image", IMAGES, ids=[path.parts[-3] for path in IMAGES])
def test_every_image_pin_is_exactly_the_locked_version(image):
    entries = locked()
    for requirement, _source in requirements(image):
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", \
            "%s: %s is not pinned exactly" % (image.relative_to(ROOT), requirement)
        name = canonicalize_name(requirement.name)
        assert name in entries, "%s pins %s, the lock lacks it (%s)" % (image.relative_to(ROOT), requirement, RELOCK)
        assert entries[name][0] == specifiers[0].version, "%s pins %s, the lock has %s (%s)" % (
            image.relative_to(ROOT), requirement, entries[name][0], RELOCK)


def test_the_lock_satisfies_every_input_requirement():
    entries = locked()
    for requirement, source in requirements(ROOT / "requirements-test.txt"):
        name = canonicalize_name(requirement.name)
        assert name in entries, "%s asks for %s, the lock lacks it (%s)" % (source.relative_to(ROOT), requirement, RELOCK)
        assert requirement.specifier.contains(entries[name][0], prereleases=True), \
            "%s asks for %s, the lock has %s (%s)" % (source.relative_to(ROOT), requirement, entries[name][0], RELOCK)


def test_the_venv_running_the_tests_is_the_lock():
    differing = []
    for name, (pinned, _hashes) in sorted(locked().items()):
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            differing.append("%s: locked %s, installed %s" % (name, pinned, installed))
    assert not differing, "the venv differs from requirements-test.lock (rebuild it: rm -rf .venv && make venv): %s" \
        % differing
