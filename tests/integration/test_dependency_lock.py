"""The test environment is one lock (requirements-test.lock), derived from the inputs and the images' pins;
each image installs its own lock (roles/*/files/requirements.lock), derived from its pins under the test lock.

`make lock` resolves requirements-test.txt, which includes every image's requirements.txt, into the lock, then
each image's requirements.txt into its requirements.lock with the test lock as constraints; `make venv` installs
only the test lock, each Dockerfile only its image lock (--require-hashes). These checks fail when one side is
edited without the other: an image pin or an input range that the lock does not honour, a lock entry without
hashes, an image lock that ships another version than the tests ran, or a venv built from another lock.
"""
import re
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements-test.lock"
IMAGES = [ROOT / "roles" / role / "files" / "requirements.txt" for role in ("mlflow", "serving", "monitoring")]
IMAGE_IDS = [path.parts[-3] for path in IMAGES]
RELOCK = "edit the inputs, then run `make lock`"


def locked(lock=LOCK):
    """{canonical name: (version, number of hashes)} from the lock's `name==version \\ --hash=...` entries."""
    entries = {}
    text = lock.read_text()
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


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
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


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_every_image_has_a_lock_of_exact_hashed_pins(image):
    lock = image.with_name("requirements.lock")
    assert lock.exists(), "%s has no requirements.lock (%s)" % (image.parent.relative_to(ROOT), RELOCK)
    entries = locked(lock)
    text = lock.read_text()
    assert len(re.findall(r"^[A-Za-z0-9_.-]+==", text, re.M)) == len(entries) > 0
    unhashed = sorted(name for name, (_version, hashes) in entries.items() if not hashes)
    assert not unhashed, "%s: entries without --hash (%s): %s" % (lock.relative_to(ROOT), RELOCK, unhashed)
    assert not re.search(r"^[A-Za-z0-9_.-]+\s*(>=|<=|~=|>|<|!=)", text, re.M), "a range in %s" % lock
    assert not re.search(r"^-(e|-editable|-index-url|-extra-index-url|f|-find-links)\b", text, re.M), \
        "%s must install from PyPI by hash only" % lock.relative_to(ROOT)


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_every_image_ships_the_versions_the_tests_ran(image):
    """Every package of an image, dependencies included, is the test lock's version of it."""
    tested = locked()
    lock = image.with_name("requirements.lock")
    differing = ["%s: image %s, tests %s" % (name, pinned, tested.get(name, (None,))[0])
                 for name, (pinned, _hashes) in sorted(locked(lock).items())
                 if tested.get(name, (None,))[0] != pinned]
    assert not differing, "%s differs from requirements-test.lock (%s): %s" % (lock.relative_to(ROOT), RELOCK,
                                                                               differing)


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_every_image_lock_covers_its_requirements(image):
    lock = image.with_name("requirements.lock")
    entries = locked(lock)
    for requirement, _source in requirements(image):
        name = canonicalize_name(requirement.name)
        assert name in entries, "%s asks for %s, %s lacks it (%s)" % (
            image.relative_to(ROOT), requirement, lock.relative_to(ROOT), RELOCK)
        assert requirement.specifier.contains(entries[name][0], prereleases=True), "%s asks for %s, %s has %s (%s)" % (
            image.relative_to(ROOT), requirement, lock.relative_to(ROOT), entries[name][0], RELOCK)


def dependency_closure(roots):
    """Canonical names of the roots and everything they need, from the installed metadata (the venv is the test
    lock, so these are the locked versions' dependencies), markers evaluated with the extras asked for."""
    seen, todo = set(), list(roots)
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        for line in requires(requirement.name) or []:
            dependency = Requirement(line)
            extras = sorted(requirement.extras) + [""]
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(dependency)
    return {name for name, _extras in seen}


@pytest.mark.parametrize("image", IMAGES, ids=IMAGE_IDS)
def test_every_image_lock_holds_all_transitive_dependencies(image):
    """pip install --no-deps installs only what the lock lists: every dependency must be in it."""
    lock = image.with_name("requirements.lock")
    needed = dependency_closure(requirement for requirement, _source in requirements(image))
    missing = sorted(needed - set(locked(lock)))
    assert not missing, "%s lacks dependencies (%s): %s" % (lock.relative_to(ROOT), RELOCK, missing)


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
