# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A docker build context as content: the files docker would send, their hash, and a reproducible archive.

The hash covers what decides the image: every file of the context that .dockerignore does not exclude
(its path relative to the context, its content, whether it is executable; symbolic links by their
target; directories by their path so an empty one counts), the Dockerfile path, the build arguments and, when
given, the builder image that runs `docker build`. The Dockerfile's content holds its base image reference (its
FROM line, or the default of the build argument FROM names) and a build argument can override it, so a change of
base image changes the hash and the image is built again.
File order on disk, modification times, owners and permission bits other than the executable bit do
not count, so the same sources give the same hash on any machine. The archive holds the same entries
with normalised metadata (sorted, mtime 0, owner 0:0, mode 0644/0755), gzip without a name or time, so
it is byte for byte the same on each run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile

HASH_VERSION = "deployml-context-v1"
DOCKERIGNORE = ".dockerignore"
CHUNK = 1024 * 1024


class ContextError(Exception):
    """A build context that cannot be read or used (missing Dockerfile, unreadable file...)."""


def _translate(pattern):
    """A .dockerignore pattern as a regular expression, following docker's matcher.

    V(*) matches any run of characters but V(/), V(?) one character but V(/), V([...]) a character class
    (V([^...]) or V([!...]) negated), V(**) any number of directories (zero included), V(\\) escapes.
    """
    out = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(?:.*/)?")
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("^", "!") else i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1:end]
                if body[:1] in ("^", "!"):
                    body = "^" + body[1:]
                out.append("[%s]" % body.replace("\\", "\\\\"))
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("^%s$" % "".join(out))


def _clean(pattern):
    """Go's filepath.Clean for a slash-separated pattern, without the leading slash docker drops."""
    parts = []
    for part in pattern.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def parse_dockerignore(text):
    """The patterns of a .dockerignore file: a list of (exclusion, regex), exclusion meaning a V(!) pattern.

    Blank lines and lines starting with V(#) are skipped; surrounding spaces are trimmed.
    """
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        line = _clean(line)
        if not line:
            continue
        patterns.append((exclusion, _translate(line)))
    return patterns


def ignored(path, patterns):
    """Whether docker leaves the relative path out of the context. The last matching pattern decides;
    a pattern matches a path or any of its parent directories."""
    parents = path.split("/")
    candidates = ["/".join(parents[:i + 1]) for i in range(len(parents))]
    result = False
    for exclusion, regex in patterns:
        if exclusion != result:  # a pattern that cannot change the outcome
            continue
        if any(regex.match(candidate) for candidate in candidates):
            result = not exclusion
    return result


class Entry:
    """One member of the context: kind "file", "dir" or "link"."""

    __slots__ = ("path", "kind", "executable", "full", "target")

    def __init__(self, path, kind, full, executable=False, target=None):
        self.path = path
        self.kind = kind
        self.full = full
        self.executable = executable
        self.target = target


def _file_digest(full):
    digest = hashlib.sha256()
    try:
        with open(full, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ContextError("cannot read %s: %s" % (full, exc.strerror or exc)) from None
    return digest.hexdigest()


def normalise_dockerfile(dockerfile):
    """The Dockerfile path relative to the context with forward slashes; ContextError when it leaves it."""
    path = (dockerfile or "").replace(os.sep, "/")
    if not path or path.startswith("/") or os.path.isabs(dockerfile):
        raise ContextError("dockerfile %r must be a path relative to the build context" % dockerfile)
    cleaned = _clean(path)
    if not cleaned or cleaned == ".." or cleaned.startswith("../"):
        raise ContextError("dockerfile %r must be inside the build context" % dockerfile)
    return cleaned


class BuildContext:
    """The files of a docker build context at `root`, as docker would send them."""

    def __init__(self, root, dockerfile="Dockerfile", build_args=None, builder=None):
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise ContextError("build context %s is not a directory" % root)
        self.dockerfile = normalise_dockerfile(dockerfile)
        full = os.path.join(self.root, *self.dockerfile.split("/"))
        if not os.path.isfile(full):
            raise ContextError("no Dockerfile at %s (dockerfile is %r, relative to %s)" % (full, dockerfile, root))
        self.build_args = dict(build_args or {})
        self.builder = builder
        ignore_file = os.path.join(self.root, DOCKERIGNORE)
        self.patterns = []
        if os.path.isfile(ignore_file):
            try:
                with open(ignore_file, "r", encoding="utf-8") as handle:
                    self.patterns = parse_dockerignore(handle.read())
            except (OSError, UnicodeDecodeError) as exc:
                raise ContextError("cannot read %s: %s" % (ignore_file, exc)) from None
        self._entries = None
        self._digest = None

    def _kept(self, path):
        # Docker always sends the Dockerfile and .dockerignore, even when they match a pattern.
        return path in (self.dockerfile, DOCKERIGNORE) or not ignored(path, self.patterns)

    @property
    def entries(self):
        """Entries sorted by relative path (directories only when kept, with their kept content)."""
        if self._entries is None:
            entries = []
            negations = any(exclusion for exclusion, regex in self.patterns)

            def walk_error(exc):
                raise ContextError("cannot read %s: %s" % (exc.filename, exc.strerror or exc))

            for top, dirs, files in os.walk(self.root, onerror=walk_error):
                rel_top = os.path.relpath(top, self.root).replace(os.sep, "/")
                prefix = "" if rel_top == "." else rel_top + "/"
                kept_dirs = []
                for name in sorted(dirs):
                    rel = prefix + name
                    full = os.path.join(top, name)
                    if os.path.islink(full):  # os.walk does not follow links: keep the link itself
                        files.append(name)
                        continue
                    if self._kept(rel):
                        entries.append(Entry(rel, "dir", full))
                        kept_dirs.append(name)
                    elif negations or self.dockerfile.startswith(rel + "/"):
                        kept_dirs.append(name)  # an excluded directory may still hold re-included files
                dirs[:] = kept_dirs
                for name in sorted(files):
                    rel = prefix + name
                    if not self._kept(rel):
                        continue
                    full = os.path.join(top, name)
                    try:
                        info = os.lstat(full)
                    except OSError as exc:
                        raise ContextError("cannot read %s: %s" % (full, exc.strerror or exc)) from None
                    if stat.S_ISLNK(info.st_mode):
                        entries.append(Entry(rel, "link", full, target=os.readlink(full)))
                    elif stat.S_ISREG(info.st_mode):
                        entries.append(Entry(rel, "file", full, executable=bool(info.st_mode & stat.S_IXUSR)))
                    # sockets, fifos and devices are not part of a build context
            self._entries = self._with_parents(entries)
        return self._entries

    def _with_parents(self, entries):
        """Files re-included inside an excluded directory need their parent directories in the archive."""
        paths = {entry.path for entry in entries}
        for entry in list(entries):
            parts = entry.path.split("/")[:-1]
            for i in range(len(parts)):
                parent = "/".join(parts[:i + 1])
                if parent not in paths:
                    paths.add(parent)
                    entries.append(Entry(parent, "dir", os.path.join(self.root, *parts[:i + 1])))
        return sorted(entries, key=lambda e: e.path)

    @property
    def digest(self):
        """SHA-256 (hex) of the context, the Dockerfile path, the build arguments and the builder."""
        if self._digest is None:
            digest = hashlib.sha256()
            header = {"version": HASH_VERSION, "dockerfile": self.dockerfile,
                      "build_args": sorted([str(k), str(v)] for k, v in self.build_args.items())}
            if self.builder:  # only when given: contexts hashed without one keep their hash
                header["builder"] = self.builder
            digest.update(json.dumps(header, sort_keys=True).encode("utf-8") + b"\n")
            for entry in self.entries:
                if entry.kind == "file":
                    record = ["file", entry.path, "x" if entry.executable else "-", _file_digest(entry.full)]
                elif entry.kind == "link":
                    record = ["link", entry.path, entry.target]
                else:
                    record = ["dir", entry.path]
                digest.update(json.dumps(record).encode("utf-8") + b"\n")
            self._digest = digest.hexdigest()
        return self._digest

    def tag(self, length=20):
        """The image tag derived from the digest: V(ctx-) and its first hex digits."""
        return "ctx-" + self.digest[:length]

    def archive(self):
        """The context as a reproducible tar.gz (bytes)."""
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as zipped:
            with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for entry in self.entries:
                    info = tarfile.TarInfo(entry.path)
                    info.mtime = 0
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    if entry.kind == "dir":
                        info.type = tarfile.DIRTYPE
                        info.mode = 0o755
                        tar.addfile(info)
                    elif entry.kind == "link":
                        info.type = tarfile.SYMTYPE
                        info.linkname = entry.target
                        info.mode = 0o777
                        tar.addfile(info)
                    else:
                        info.mode = 0o755 if entry.executable else 0o644
                        try:
                            with open(entry.full, "rb") as handle:
                                info.size = os.fstat(handle.fileno()).st_size
                                tar.addfile(info, handle)
                        except OSError as exc:
                            raise ContextError("cannot read %s: %s" % (entry.full, exc.strerror or exc)) from None
        return buffer.getvalue()
