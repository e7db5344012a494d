"""module_utils/build.py: the build context's hash, its .dockerignore handling and its reproducible archive."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils.build import (
    BuildContext, ContextError, ignored, parse_dockerignore)


def write(root, files):
    """files: {relative path: text or (text, mode)}."""
    for rel, content in files.items():
        mode = 0o644
        if isinstance(content, tuple):
            content, mode = content
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        os.chmod(path, mode)


BASE = {
    "Dockerfile": "FROM python:3.11-slim\nCOPY . /app\n",
    "app/main.py": "print('hello')\n",
    "app/util.py": "X = 1\n",
    "entrypoint.sh": ("#!/bin/sh\nexec python app/main.py\n", 0o755),
    "requirements.txt": "fastapi\n",
}


@pytest.fixture
def context_dir(tmp_path):
    root = tmp_path / "ctx"
    write(root, BASE)
    return root


def members(archive):
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def test_hash_is_a_sha256_and_the_tag_its_prefix(context_dir):
    context = BuildContext(str(context_dir))
    assert len(context.digest) == 64 and int(context.digest, 16) >= 0
    assert context.tag() == "ctx-" + context.digest[:20]


def test_hash_is_stable_across_runs_copies_file_order_and_mtimes(context_dir, tmp_path):
    first = BuildContext(str(context_dir)).digest
    assert BuildContext(str(context_dir)).digest == first

    # The same files written in another order, at another time, with other non-executable modes.
    other = tmp_path / "other"
    for rel in reversed(sorted(BASE)):
        write(other, {rel: BASE[rel]})
    os.chmod(other / "requirements.txt", 0o600)
    os.chmod(other / "entrypoint.sh", 0o700)  # still executable
    past = time.time() - 86400 * 30
    for path in other.rglob("*"):
        os.utime(path, (past, past))
    assert BuildContext(str(other)).digest == first


@pytest.mark.parametrize("change", [
    "content", "new_file", "removed_file", "renamed_file", "executable_bit", "empty_dir",
])
def test_hash_changes_with_the_context(context_dir, change):
    before = BuildContext(str(context_dir)).digest
    if change == "content":
        (context_dir / "app/main.py").write_text("print('hello!')\n")
    elif change == "new_file":
        write(context_dir, {"app/extra.py": ""})
    elif change == "removed_file":
        (context_dir / "app/util.py").unlink()
    elif change == "renamed_file":
        (context_dir / "app/util.py").rename(context_dir / "app/utils.py")
    elif change == "executable_bit":
        os.chmod(context_dir / "app/main.py", 0o755)
    else:
        (context_dir / "data").mkdir()
    assert BuildContext(str(context_dir)).digest != before


def test_hash_covers_the_dockerfile_path_and_the_build_args(context_dir):
    write(context_dir, {"docker/prod.Dockerfile": BASE["Dockerfile"]})
    plain = BuildContext(str(context_dir)).digest
    other_file = BuildContext(str(context_dir), dockerfile="docker/prod.Dockerfile").digest
    assert other_file != plain
    with_args = BuildContext(str(context_dir), build_args={"VERSION": "1"}).digest
    assert with_args != plain
    assert BuildContext(str(context_dir), build_args={"VERSION": "2"}).digest != with_args
    assert BuildContext(str(context_dir), build_args={"VERSIO": "N1"}).digest != with_args
    # Argument order does not matter, and "./Dockerfile" is the same file as "Dockerfile".
    two = BuildContext(str(context_dir), build_args={"A": "1", "B": "2"}).digest
    assert BuildContext(str(context_dir), build_args={"B": "2", "A": "1"}).digest == two
    assert BuildContext(str(context_dir), dockerfile="./Dockerfile").digest == plain


def test_a_change_of_base_image_or_builder_changes_the_hash(context_dir):
    """The base reference decides the image: its default in the Dockerfile, the build argument overriding it
    (a digest pin from the inventory) and the builder that runs docker build all count."""
    write(context_dir, {"Dockerfile": "ARG BASE_IMAGE=python:3.11.14-slim-bookworm\nFROM ${BASE_IMAGE}\nCOPY . /app\n"})
    pinned = BuildContext(str(context_dir)).digest
    write(context_dir, {"Dockerfile": "ARG BASE_IMAGE=python:3.11.15-slim-bookworm\nFROM ${BASE_IMAGE}\nCOPY . /app\n"})
    bumped = BuildContext(str(context_dir)).digest
    assert bumped != pinned
    digest = "python@sha256:" + "a" * 64
    by_digest = BuildContext(str(context_dir), build_args={"BASE_IMAGE": digest}).digest
    assert by_digest not in (pinned, bumped)
    assert BuildContext(str(context_dir), build_args={"BASE_IMAGE": digest[:-1] + "b"}).digest != by_digest
    builder = BuildContext(str(context_dir), builder="gcr.io/cloud-builders/docker:24.0.9").digest
    assert builder != bumped
    assert BuildContext(str(context_dir), builder="gcr.io/cloud-builders/docker:20.10.24").digest != builder
    # Without a builder the hash is what it was before builders counted: existing tags stay valid.
    assert BuildContext(str(context_dir), builder=None).digest == bumped


@pytest.mark.parametrize("role", ["mlflow", "serving", "monitoring", "grafana"])
def test_the_shipped_images_take_their_base_from_a_build_argument(role):
    """Each image's base can be pinned by digest from the inventory (registry_base_images): BASE_IMAGE."""
    root = Path(__file__).resolve().parents[4] / "roles" / role / "files"
    plain = BuildContext(str(root)).digest
    assert BuildContext(str(root), build_args={"BASE_IMAGE": "example@sha256:" + "c" * 64}).digest != plain
    text = (root / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S+$", text, re.M) and re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)


def test_dockerignore_excludes_files_from_hash_and_archive(context_dir):
    write(context_dir, {".dockerignore": "# local junk\n*.log\n**/__pycache__\nsecrets/\n!keep.log\n\n",
                        "build.log": "noise", "keep.log": "kept", "app/__pycache__/main.cpython-311.pyc": "bytecode",
                        "secrets/key.json": "{}", "app/logs/run.log": "nested"})
    context = BuildContext(str(context_dir))
    paths = [e.path for e in context.entries]
    assert "build.log" not in paths and "secrets/key.json" not in paths and "secrets" not in paths
    assert "app/__pycache__/main.cpython-311.pyc" not in paths and "app/__pycache__" not in paths
    assert "keep.log" in paths, "a ! pattern re-includes a file"
    assert "app/logs/run.log" in paths, "*.log matches at the root only, as in docker"
    assert ".dockerignore" in paths and "Dockerfile" in paths
    assert set(members(context.archive())) == set(paths)

    # Changing an excluded file changes nothing; changing a kept one does.
    digest = context.digest
    (context_dir / "build.log").write_text("other noise")
    (context_dir / "secrets/key.json").write_text('{"k": 1}')
    write(context_dir, {"app/__pycache__/util.cpython-311.pyc": "more"})
    assert BuildContext(str(context_dir)).digest == digest
    (context_dir / "keep.log").write_text("changed")
    assert BuildContext(str(context_dir)).digest != digest


def test_dockerignore_never_excludes_the_dockerfile_or_itself(context_dir):
    write(context_dir, {".dockerignore": "Dockerfile\n.dockerignore\n*.txt\n"})
    paths = [e.path for e in BuildContext(str(context_dir)).entries]
    assert "Dockerfile" in paths and ".dockerignore" in paths and "requirements.txt" not in paths


def test_negation_inside_an_excluded_directory_keeps_the_parents(context_dir):
    write(context_dir, {".dockerignore": "data\n!data/schema/*.json\n", "data/raw/big.csv": "1,2",
                        "data/schema/table.json": "{}", "data/schema/notes.md": "x"})
    context = BuildContext(str(context_dir))
    paths = [e.path for e in context.entries]
    assert "data/schema/table.json" in paths
    assert "data/raw/big.csv" not in paths and "data/schema/notes.md" not in paths
    names = members(context.archive())
    assert names["data"].isdir() and names["data/schema"].isdir()


@pytest.mark.parametrize("patterns, path, expected", [
    ("*.py", "a.py", True),
    ("*.py", "dir/a.py", False),
    ("*/*.py", "dir/a.py", True),
    ("**/*.py", "dir/sub/a.py", True),
    ("**/*.py", "a.py", True),
    ("dir", "dir/sub/a.py", True),
    ("dir/**", "dir/a", True),
    ("/dir/a?", "dir/ab", True),
    ("dir/a?", "dir/abc", False),
    ("[ab].txt", "b.txt", True),
    ("[^ab].txt", "b.txt", False),
    ("[^ab].txt", "c.txt", True),
    ("*\n!important.md", "important.md", False),
    ("*.md\n!*.md\n*.md", "x.md", True),
    ("./build/../dist", "dist/x.js", True),
    ("# comment\n\n", "# comment", False),
])
def test_dockerignore_pattern_semantics(patterns, path, expected):
    assert ignored(path, parse_dockerignore(patterns)) is expected


def test_archive_is_reproducible_with_normalised_metadata(context_dir, tmp_path):
    first = BuildContext(str(context_dir)).archive()
    assert BuildContext(str(context_dir)).archive() == first
    assert gzip.decompress(first)  # a valid gzip stream
    assert first[4:8] == b"\0\0\0\0", "gzip header time is 0"

    # Another copy of the same sources, touched and written in another order: the same bytes.
    other = tmp_path / "other"
    for rel in reversed(sorted(BASE)):
        write(other, {rel: BASE[rel]})
    for path in other.rglob("*"):
        os.utime(path, (1e9, 1e9))
    again = BuildContext(str(other)).archive()
    assert hashlib.sha256(again).hexdigest() == hashlib.sha256(first).hexdigest()

    found = members(first)
    assert list(found) == sorted(found), "members are sorted"
    assert set(found) == {"Dockerfile", "app", "app/main.py", "app/util.py", "entrypoint.sh", "requirements.txt"}
    for member in found.values():
        assert member.mtime == 0 and member.uid == 0 and member.gid == 0 and member.uname == "" and member.gname == ""
    assert found["entrypoint.sh"].mode == 0o755 and found["app/main.py"].mode == 0o644
    assert found["app"].isdir() and found["app"].mode == 0o755
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        assert tar.extractfile("app/main.py").read() == b"print('hello')\n"

    (context_dir / "app/main.py").write_text("print('bye')\n")
    assert BuildContext(str(context_dir)).archive() != first


def test_symlinks_are_kept_as_links(context_dir):
    os.symlink("app/main.py", context_dir / "main.py")
    context = BuildContext(str(context_dir))
    link = [e for e in context.entries if e.path == "main.py"][0]
    assert link.kind == "link" and link.target == "app/main.py"
    member = members(context.archive())["main.py"]
    assert member.issym() and member.linkname == "app/main.py"
    digest = context.digest
    os.unlink(context_dir / "main.py")
    os.symlink("app/util.py", context_dir / "main.py")
    assert BuildContext(str(context_dir)).digest != digest


@pytest.mark.parametrize("dockerfile, message", [
    ("missing.Dockerfile", "no Dockerfile at"),
    ("../Dockerfile", "must be inside the build context"),
    ("/etc/Dockerfile", "must be a path relative to the build context"),
    ("", "must be a path relative"),
])
def test_bad_dockerfile_is_refused(context_dir, dockerfile, message):
    with pytest.raises(ContextError, match=message):
        BuildContext(str(context_dir), dockerfile=dockerfile)


def test_missing_context_directory_is_refused(tmp_path):
    with pytest.raises(ContextError, match="is not a directory"):
        BuildContext(str(tmp_path / "nope"))


@pytest.mark.parametrize("unit", ["mlflow", "serving", "monitoring", "grafana"])
def test_the_shipped_images_ignore_what_running_them_leaves_behind(tmp_path, unit):
    """Running a unit's code from a checkout leaves bytecode caches in its packages: no rebuild for that."""
    source = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles", unit, "files")
    copy = tmp_path / unit
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    clean = BuildContext(str(copy)).tag()
    for package in [p for p in copy.iterdir() if p.is_dir()]:
        (package / "__pycache__").mkdir()
        (package / "__pycache__" / "module.cpython-311.pyc").write_bytes(b"\x00bytecode")
    assert BuildContext(str(copy)).tag() == clean
