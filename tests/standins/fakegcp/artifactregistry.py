"""Artifact Registry v1: repositories (create, get, list, patch, delete), operations.get, docker images,
packages, versions and tags.

As Google:
- repository names use the project id: projects/P/locations/L/repositories/R; repositoryId is 1 to 63
  lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen;
- create and delete answer a google.longrunning operation (projects/P/locations/L/operations/UUID); the
  repository exists once the create operation is done and goes when the delete operation is done;
- format, mode and kmsKeyName are immutable; a patch applies the fields of its updateMask (or, without a
  mask, every field of the body);
- cleanup policies are checked (at most 10, an action, exactly one of condition and mostRecentVersions,
  mostRecentVersions with KEEP only, the map key is the policy id);
- package ids with slashes (nested image names) are written with %2F in resource names; a docker image is
  named IMAGE@sha256:DIGEST and a version sha256:DIGEST;
- with dockerConfig.immutableTags a tag cannot be moved or deleted (it can be created).

Images enter a repository through the Python hook push_image() (Cloud Build uses it, tests may too):
    fake.apis["artifactregistry"].push_image("projects/P/locations/L/repositories/R", "app", "v1")
"""

from __future__ import annotations

import hashlib
import re
import uuid
from urllib.parse import quote, unquote

from tests.standins.fakegcp.api import Api, handles
from tests.standins.fakegcp.errors import ApiError, already_exists, failed_precondition, invalid, not_found
from tests.standins.fakegcp.util import apply_mask, deep, label_problems, mask_paths, now, paginate

TYPE = "type.googleapis.com/google.devtools.artifactregistry.v1."
REPOSITORY_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
LOCATION = re.compile(r"^[a-z]+(-[a-z]+[0-9]+)?$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
IMAGE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
IMMUTABLE = ("format", "mode", "kmsKeyName", "name")
MUTABLE = ("description", "labels", "cleanupPolicies", "cleanupPolicyDryRun", "dockerConfig", "mavenConfig",
           "virtualRepositoryConfig", "remoteRepositoryConfig", "vulnerabilityScanningConfig", "platformLogsConfig",
           "disallowUnspecifiedMode")
HOSTS = {"DOCKER": "docker", "MAVEN": "maven", "NPM": "npm", "APT": "apt", "YUM": "yum", "PYTHON": "python",
         "GO": "go", "KFP": "kfp", "GOOGET": "googet", "GENERIC": "generic", "RUBY": "ruby", "CONDA": "conda"}
MAX_POLICIES = 10
# What Artifact Registry reports while the Container Scanning API is off (output only).
SCANNING = {"enablementState": "SCANNING_DISABLED",
            "enablementStateReason": "API containerscanning.googleapis.com is not enabled."}
MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
# Methods whose last path segment may hold ':' (sha256:..., tags) or '@' (IMAGE@sha256:...).
COLON_IDS = ("dockerImages.get", "packages.versions.get", "packages.tags.get", "packages.tags.patch",
             "packages.tags.delete")


def keep_escapes(method):
    """Make a method hand its path parameters over still %-escaped (checked against their patterns as sent).

    Package ids hold '/' escaped as %2F; discovery.py unquotes before checking the pattern, which would
    turn packages/team%2Fapp/tags/t into an extra segment. Handlers unquote segment by segment (split_name).
    """
    def path_params(path):
        match = method.path_regex.match(path)
        if not match:
            raise ApiError(404, "The requested URL %s was not found on this server." % path)
        params = {}
        for group, value in match.groupdict().items():
            name = next((p for p in method.parameters if re.sub(r"\W", "_", p) == group), group)
            pattern = (method.parameters.get(name) or {}).get("pattern")
            if pattern and not re.match(pattern, value):
                raise ApiError(400, "Invalid resource field value in the request.", status="INVALID_ARGUMENT",
                               reason="badRequest", field=name, description="%r does not match %s" % (value, pattern))
            params[name] = value
        return params
    method.path_params = path_params


def allow_colon(method):
    """Let the last path variable of a method's flat path hold ':' (it never ends in a custom verb)."""
    pattern = method.flat_regex.pattern
    if pattern.endswith("[^/:]+)$"):
        method.flat_regex = re.compile(pattern[:-len("[^/:]+)$")] + "[^/]+)$")


def split_name(name):
    """The unescaped segments of a resource name."""
    return [unquote(part) for part in name.split("/")]


def escape(package):
    return quote(package, safe="")


class ArtifactRegistry(Api):
    name = "artifactregistry"
    document = "artifactregistry.v1"

    def __init__(self, fake):
        super().__init__(fake)
        for method in self.doc.methods.values():
            keep_escapes(method)
        for suffix in COLON_IDS:
            allow_colon(self.doc.method("artifactregistry.projects.locations.repositories." + suffix))

    def reset(self):
        super().reset()
        # "project_id/location/repo" -> {"repo": {...}, "ready": bool, "packages": {package id: {...}}}
        self.state["repositories"] = {}

    # ---- names -----------------------------------------------------------------------------------------
    def _parent(self, parent):
        """(project_id, location) of projects/P/locations/L."""
        parts = split_name(parent)
        project_id = self.projects.resolve(parts[1])[0]
        location = parts[3]
        if not LOCATION.match(location):
            raise invalid("Invalid location %r: use a region such as us-central1 or a multi-region such as us."
                          % location, field="parent")
        return project_id, location

    @staticmethod
    def repo_name(project_id, location, repo_id):
        return "projects/%s/locations/%s/repositories/%s" % (project_id, location, repo_id)

    def _entry(self, name, pending_ok=False):
        """(entry, key) for a repository name (or any name below it); 404 when missing."""
        parts = split_name(name)
        project_id, location = self._parent("/".join(parts[:4]))
        key = "%s/%s/%s" % (project_id, location, parts[5])
        entry = self.state["repositories"].get(key)
        if entry is None or not (entry["ready"] or pending_ok):
            raise not_found('Repository "%s" not found' % self.repo_name(project_id, location, parts[5]))
        return entry, key

    def _package(self, name):
        """(entry, package record, package id) for .../repositories/R/packages/PKG[/...]."""
        entry, _key = self._entry(name)
        package_id = split_name(name)[7]
        record = entry["packages"].get(package_id)
        if record is None:
            raise not_found('Package "%s/packages/%s" not found' % (entry["repo"]["name"], escape(package_id)))
        return entry, record, package_id

    # ---- validation ---------------------------------------------------------------------------------------
    @staticmethod
    def _check_policies(policies):
        policies = policies or {}
        if len(policies) > MAX_POLICIES:
            raise invalid("A repository can have at most %d cleanup policies, got %d." % (MAX_POLICIES, len(policies)),
                          field="repository.cleanup_policies")
        for key, policy in policies.items():
            where = "repository.cleanup_policies[%s]" % key
            if not key or len(key) > 128:
                raise invalid("Cleanup policy ids are 1 to 128 characters long, got %r." % key, field=where)
            if policy.get("id", key) != key:
                raise invalid("Cleanup policy id %r does not match its map key %r." % (policy["id"], key),
                              field=where + ".id")
            policy["id"] = key
            action = policy.get("action", "ACTION_UNSPECIFIED")
            if action == "ACTION_UNSPECIFIED":
                raise invalid("Cleanup policy %r: action must be DELETE or KEEP." % key, field=where + ".action")
            kinds = [k for k in ("condition", "mostRecentVersions") if k in policy]
            if len(kinds) != 1:
                raise invalid("Cleanup policy %r must have exactly one of condition and most_recent_versions." % key,
                              field=where)
            if "mostRecentVersions" in policy:
                if action != "KEEP":
                    raise invalid("Cleanup policy %r: most_recent_versions may only be used with the KEEP action."
                                  % key, field=where + ".most_recent_versions")
                if policy["mostRecentVersions"].get("keepCount", 0) < 0:
                    raise invalid("Cleanup policy %r: keep_count must not be negative." % key,
                                  field=where + ".most_recent_versions.keep_count")
                continue
            condition = policy["condition"]
            if condition.get("tagPrefixes") and condition.get("tagState") == "UNTAGGED":
                raise invalid("Cleanup policy %r: tag_prefixes cannot be used with tag_state UNTAGGED." % key,
                              field=where + ".condition.tag_prefixes")
            for field in ("olderThan", "newerThan"):
                if field in condition and float(condition[field][:-1]) <= 0:
                    raise invalid("Cleanup policy %r: %s must be a positive duration." % (key, field),
                                  field=where + ".condition." + field)

    def _check_repository(self, repo):
        problem = label_problems(repo.get("labels"), "labels")
        if problem:
            raise invalid(problem, field="repository.labels")
        if len(repo.get("description") or "") > 2048:
            raise invalid("The description is longer than 2048 characters.", field="repository.description")
        self._check_policies(repo.get("cleanupPolicies"))
        if repo.get("dockerConfig") and repo.get("format") != "DOCKER":
            raise invalid("docker_config can only be set on a DOCKER repository.", field="repository.docker_config")

    def _size(self, entry):
        total = sum(int(v["imageSizeBytes"]) for p in entry["packages"].values() for v in p["versions"].values())
        if total:
            entry["repo"]["sizeBytes"] = str(total)
        else:
            entry["repo"].pop("sizeBytes", None)

    # ---- repositories ---------------------------------------------------------------------------------------
    @handles("artifactregistry.projects.locations.repositories.create")
    def create_repository(self, req):
        project_id, location = self._parent(req["parent"])
        repo_id = req.get("repositoryId")
        if not repo_id:
            raise invalid("Invalid request: repository_id is required.", field="repository_id")
        if not REPOSITORY_ID.match(repo_id):
            raise invalid("Invalid repository id %r: use 1 to 63 lowercase letters, digits or hyphens, starting with "
                          "a letter and ending with a letter or digit." % repo_id, field="repository_id")
        key = "%s/%s/%s" % (project_id, location, repo_id)
        if key in self.state["repositories"]:
            raise already_exists("the repository already exists")
        repo = deep(req.body)
        if repo.get("format", "FORMAT_UNSPECIFIED") == "FORMAT_UNSPECIFIED":
            raise invalid("Invalid request: the repository format must be specified.", field="repository.format")
        if repo.get("mode", "MODE_UNSPECIFIED") == "MODE_UNSPECIFIED":
            repo["mode"] = "STANDARD_REPOSITORY"
        elif repo["mode"] != "STANDARD_REPOSITORY":
            raise invalid("The fake serves standard repositories only, not %s." % repo["mode"],
                          field="repository.mode")
        self._check_repository(repo)
        stamp = now()
        host = "%s-%s.pkg.dev" % (location, HOSTS.get(repo["format"], "docker"))
        repo.update(name=self.repo_name(project_id, location, repo_id), createTime=stamp, updateTime=stamp,
                    registryUri="%s/%s/%s" % (host, project_id, repo_id),
                    vulnerabilityScanningConfig=dict(repo.get("vulnerabilityScanningConfig") or {}, **SCANNING))
        repo.pop("sizeBytes", None)
        entry = {"repo": repo, "ready": False, "packages": {}}
        self.state["repositories"][key] = entry

        def finish(ok):
            if not ok:
                self.state["repositories"].pop(key, None)
                return None
            entry["ready"] = True
            return dict(deep(repo), **{"@type": TYPE + "Repository"})

        operation = self._lro(project_id, location, finish, "artifactregistry.repository.create", repo["name"])
        entry["operation"] = operation["name"]
        return operation

    def _lro(self, project_id, location, finish, kind, target):
        name = "projects/%s/locations/%s/operations/%s" % (project_id, location, uuid.uuid4())
        return deep(self.start_lro(name, finish, {"@type": TYPE + "OperationMetadata"}, kind=kind, target=target))

    @handles("artifactregistry.projects.locations.repositories.get")
    def get_repository(self, req):
        # A repository being created moves on as it is read (on Google Cloud time does it): a client that lost
        # the create's answer, and so its operation's name, sees it appear.
        entry = self._entry(req["name"], pending_ok=True)[0]
        if not entry["ready"] and entry.get("operation"):
            self.operations.poll(entry["operation"])
        return deep(self._entry(req["name"])[0]["repo"])

    @handles("artifactregistry.projects.locations.repositories.list")
    def list_repositories(self, req):
        project_id, location = self._parent(req["parent"])
        prefix = "%s/%s/" % (project_id, location)
        repos = [e["repo"] for k, e in sorted(self.state["repositories"].items()) if k.startswith(prefix) and e["ready"]]
        flt = (req.get("filter") or "").strip()
        if flt:
            match = re.match(r'^name\s*=\s*"?([^"]+)"?$', flt)
            if not match:
                raise invalid("The fake supports the filter name=\"NAME\" (a glob with *), not %r." % flt,
                              field="filter")
            pattern = re.compile("^" + ".*".join(re.escape(p) for p in match.group(1).split("*")) + "$")
            repos = [r for r in repos if pattern.match(r["name"]) or pattern.match(r["name"].rsplit("/", 1)[1])]
        order = (req.get("orderBy") or "").strip()
        if order:
            if order not in ("name", "name desc", "name asc"):
                raise invalid("Invalid order_by %r: the fake supports name [asc|desc]." % order, field="order_by")
            repos = sorted(repos, key=lambda r: r["name"], reverse=order.endswith("desc"))
        page, token = paginate(repos, req.get("pageSize"), req.get("pageToken"), default_size=1000, max_size=1000)
        body = {"repositories": deep(page)} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("artifactregistry.projects.locations.repositories.patch")
    def patch_repository(self, req):
        entry = self._entry(req["name"])[0]
        repo = entry["repo"]
        paths = mask_paths(req.get("updateMask"))
        if paths is None or not paths:
            paths = [k for k in req.body if k not in ("name",)]
        for path in paths:
            top = path.split(".")[0]
            if top in IMMUTABLE:
                if top == "name" or req.body.get(top, repo.get(top)) == repo.get(top):
                    continue
                raise invalid("The %s of a repository cannot be changed." % top, field="update_mask")
            if top not in MUTABLE:
                raise invalid("Invalid update_mask path %r: it is not a field of the repository that can be "
                              "updated." % path, field="update_mask")
        paths = [p for p in paths if p.split(".")[0] in MUTABLE]
        candidate = deep(repo)
        apply_mask(candidate, req.body, paths)
        candidate["vulnerabilityScanningConfig"] = dict(candidate.get("vulnerabilityScanningConfig") or {}, **SCANNING)
        self._check_repository(candidate)
        if candidate != repo:
            candidate["updateTime"] = now()
        entry["repo"] = candidate
        return deep(candidate)

    @handles("artifactregistry.projects.locations.repositories.delete")
    def delete_repository(self, req):
        entry, key = self._entry(req["name"])
        project_id, location = key.split("/")[:2]

        def finish(ok):
            if ok:
                if self.state["repositories"].get(key) is entry:
                    del self.state["repositories"][key]
                self.policies.drop("artifactregistry:%s" % entry["repo"]["name"])
                return {"@type": "type.googleapis.com/google.protobuf.Empty"}
            return None

        return self._lro(project_id, location, finish, "artifactregistry.repository.delete", entry["repo"]["name"])

    @handles("artifactregistry.projects.locations.operations.get")
    def get_operation(self, req):
        return deep(self.poll_lro(req["name"]))

    # ---- IAM ------------------------------------------------------------------------------------------
    @handles("artifactregistry.projects.locations.repositories.getIamPolicy")
    def get_iam_policy(self, req):
        entry = self._entry(req["resource"])[0]
        return self.policies.get("artifactregistry:%s" % entry["repo"]["name"], req.get("options.requestedPolicyVersion"))

    @handles("artifactregistry.projects.locations.repositories.setIamPolicy")
    def set_iam_policy(self, req):
        entry = self._entry(req["resource"])[0]
        return self.policies.set("artifactregistry:%s" % entry["repo"]["name"], req.body)

    # ---- images: the Python hook ------------------------------------------------------------------------
    def find_repository(self, ref):
        """The repository entry for projects/P/locations/L/repositories/R or LOCATION-docker.pkg.dev/P/R; None."""
        match = re.match(r"^([a-z0-9-]+)-docker\.pkg\.dev/([^/]+)/([^/]+)$", ref)
        if match:
            location, project, repo_id = match.groups()
        else:
            match = re.match(r"^projects/([^/]+)/locations/([^/]+)/repositories/([^/]+)$", ref)
            if not match:
                raise ValueError("not a repository name: %r" % ref)
            project, location, repo_id = match.groups()
        try:
            project_id = self.projects.resolve(project)[0]
        except ApiError:
            return None
        entry = self.state["repositories"].get("%s/%s/%s" % (project_id, location, repo_id))
        return entry if entry is not None and entry["ready"] else None

    def push_image(self, repository_name, image, tag=None, digest=None, size_bytes=None, build_time=None):
        """Store a docker image (as `docker push` would) and return its DockerImage.

        repository_name: projects/P/locations/L/repositories/R or LOCATION-docker.pkg.dev/P/R; image: the
        image name inside the repository (may hold '/'); tag: a tag to point at it (moved from another image
        unless the repository has immutable tags); digest: sha256:<64 hex> (derived from the inputs when
        omitted). Raises ApiError: 404 (no such repository), 400 FAILED_PRECONDITION (not a docker
        repository, or an immutable tag that points to another image), 400 (bad image name, tag or digest).
        """
        with self.fake.lock:
            entry = self.find_repository(repository_name)
            if entry is None:
                raise not_found('Repository "%s" not found' % repository_name)
            repo = entry["repo"]
            if repo["format"] != "DOCKER":
                raise failed_precondition("Repository %s holds %s packages, not docker images."
                                          % (repo["name"], repo["format"]))
            if not IMAGE.match(image or ""):
                raise invalid("Invalid image name %r." % image)
            if tag is not None and not TAG.match(tag):
                raise invalid("Invalid tag %r." % tag)
            if digest is None:
                digest = "sha256:" + hashlib.sha256(("%s/%s:%s/%s" % (repo["name"], image, tag, uuid.uuid4()))
                                                    .encode()).hexdigest()
            if not DIGEST.match(digest):
                raise invalid("Invalid digest %r: expected sha256:<64 hex digits>." % digest)
            stamp = now()
            record = entry["packages"].get(image)
            if record is None:
                record = entry["packages"][image] = {
                    "package": {"name": "%s/packages/%s" % (repo["name"], escape(image)), "createTime": stamp,
                                "updateTime": stamp},
                    "versions": {}, "tags": {}}
            if tag is not None and record["tags"].get(tag, digest) != digest \
                    and (repo.get("dockerConfig") or {}).get("immutableTags"):
                raise failed_precondition(
                    "denied: the tag %r of image %s/%s is immutable and already points to another image (%s)."
                    % (tag, repo["registryUri"], image, record["tags"][tag]))
            version = record["versions"].get(digest)
            if version is None:
                version = record["versions"][digest] = {
                    "digest": digest, "createTime": stamp,
                    "imageSizeBytes": str(size_bytes if size_bytes is not None else
                                          10 ** 7 + int(digest[7:15], 16) % (9 * 10 ** 7)),
                    "buildTime": build_time or stamp, "uploadTime": stamp}
            version["updateTime"] = stamp
            if tag is not None:
                record["tags"][tag] = digest
            record["package"]["updateTime"] = stamp
            self._size(entry)
            return self._docker_image(repo, image, record, digest)

    # ---- rendering --------------------------------------------------------------------------------------
    @staticmethod
    def _tags_of(record, digest):
        return sorted(t for t, d in record["tags"].items() if d == digest)

    def _docker_image(self, repo, image, record, digest):
        version = record["versions"][digest]
        body = {"name": "%s/dockerImages/%s@%s" % (repo["name"], escape(image), digest),
                "uri": "%s/%s@%s" % (repo["registryUri"], image, digest),
                "imageSizeBytes": version["imageSizeBytes"], "uploadTime": version["uploadTime"],
                "mediaType": MEDIA_TYPE, "buildTime": version["buildTime"], "updateTime": version["updateTime"]}
        tags = self._tags_of(record, digest)
        if tags:
            body["tags"] = tags
        return body

    def _version(self, record, digest, full=True):
        version = record["versions"][digest]
        name = "%s/versions/%s" % (record["package"]["name"], digest)
        body = {"name": name, "createTime": version["createTime"], "updateTime": version["updateTime"],
                "metadata": {"imageSizeBytes": version["imageSizeBytes"], "mediaType": MEDIA_TYPE,
                             "buildTime": version["buildTime"], "name": name}}
        if full:
            tags = [self._tag(record, t) for t in self._tags_of(record, digest)]
            if tags:
                body["relatedTags"] = tags
        return body

    @staticmethod
    def _tag(record, tag):
        package = record["package"]["name"]
        return {"name": "%s/tags/%s" % (package, quote(tag, safe="-._~:@")),
                "version": "%s/versions/%s" % (package, record["tags"][tag])}

    # ---- docker images ----------------------------------------------------------------------------------
    @handles("artifactregistry.projects.locations.repositories.dockerImages.list")
    def list_docker_images(self, req):
        entry = self._entry(req["parent"])[0]
        images = [self._docker_image(entry["repo"], image, record, digest)
                  for image, record in sorted(entry["packages"].items()) for digest in record["versions"]]
        order = (req.get("orderBy") or "").strip()
        if order:
            match = re.match(r"^(name|update_time|upload_time|build_time|image_size_bytes|media_type)"
                             r"(\s+(asc|desc))?$", order)
            if not match:
                raise invalid("Invalid order_by %r." % order, field="order_by")
            field = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), match.group(1))
            images.sort(key=lambda i: (int(i[field]) if field == "imageSizeBytes" else i[field]),
                        reverse=match.group(3) == "desc")
        page, token = paginate(images, req.get("pageSize"), req.get("pageToken"), default_size=1000, max_size=1000)
        body = {"dockerImages": page} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("artifactregistry.projects.locations.repositories.dockerImages.get")
    def get_docker_image(self, req):
        entry = self._entry(req["name"])[0]
        ref = split_name(req["name"])[7]
        image, sep, digest = ref.partition("@")
        record = entry["packages"].get(image)
        if not sep or record is None or digest not in record["versions"]:
            raise not_found('Requested entity was not found: docker image "%s/dockerImages/%s".'
                            % (entry["repo"]["name"], escape(image) + sep + digest))
        return self._docker_image(entry["repo"], image, record, digest)

    # ---- packages, versions, tags ----------------------------------------------------------------------
    @handles("artifactregistry.projects.locations.repositories.packages.list")
    def list_packages(self, req):
        entry = self._entry(req["parent"])[0]
        packages = [deep(r["package"]) for _i, r in sorted(entry["packages"].items())]
        page, token = paginate(packages, req.get("pageSize"), req.get("pageToken"), default_size=1000, max_size=1000)
        body = {"packages": page} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("artifactregistry.projects.locations.repositories.packages.get")
    def get_package(self, req):
        return deep(self._package(req["name"])[1]["package"])

    @handles("artifactregistry.projects.locations.repositories.packages.versions.list")
    def list_versions(self, req):
        record = self._package(req["parent"])[1]
        full = req.get("view") == "FULL"
        versions = sorted((self._version(record, d, full) for d in record["versions"]), key=lambda v: v["createTime"],
                          reverse=True)
        page, token = paginate(versions, req.get("pageSize"), req.get("pageToken"), default_size=1000, max_size=1000)
        body = {"versions": page} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("artifactregistry.projects.locations.repositories.packages.versions.get")
    def get_version(self, req):
        record = self._package(req["name"])[1]
        digest = split_name(req["name"])[9]
        if digest not in record["versions"]:
            raise not_found('Version "%s/versions/%s" not found' % (record["package"]["name"], digest))
        return self._version(record, digest, req.get("view") == "FULL")

    @handles("artifactregistry.projects.locations.repositories.packages.tags.list")
    def list_tags(self, req):
        record = self._package(req["parent"])[1]
        tags = [self._tag(record, t) for t in sorted(record["tags"])]
        flt = (req.get("filter") or "").strip()
        if flt:
            match = re.match(r'^(version|name)\s*=\s*"?([^"]+)"?$', flt)
            if not match:
                raise invalid('The fake supports the filters version="VERSION NAME" and name="TAG NAME", not %r.' % flt,
                              field="filter")
            tags = [t for t in tags if unquote(t[match.group(1)]) == unquote(match.group(2))]
        page, token = paginate(tags, req.get("pageSize"), req.get("pageToken"), default_size=1000, max_size=1000)
        body = {"tags": page} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    def _tag_of(self, name):
        entry, record, _package_id = self._package(name)
        tag = split_name(name)[9]
        if tag not in record["tags"]:
            raise not_found('Tag "%s/tags/%s" not found' % (record["package"]["name"], tag))
        return entry, record, tag

    @handles("artifactregistry.projects.locations.repositories.packages.tags.get")
    def get_tag(self, req):
        record, tag = self._tag_of(req["name"])[1:]
        return self._tag(record, tag)

    @staticmethod
    def _target(record, version):
        """The digest of a version name, which must be a version of the package of `record`."""
        if not version:
            raise invalid("Invalid request: tag.version is required.", field="tag.version")
        prefix = unquote(record["package"]["name"] + "/versions/")
        digest = unquote(version)[len(prefix):] if unquote(version).startswith(prefix) else None
        if digest not in record["versions"]:
            raise invalid("Version %r is not a version of package %s." % (version, record["package"]["name"]),
                          field="tag.version")
        return digest

    @handles("artifactregistry.projects.locations.repositories.packages.tags.create")
    def create_tag(self, req):
        _entry, record, _package_id = self._package(req["parent"])
        tag = req.get("tagId") or ""
        if not TAG.match(tag):
            raise invalid("Invalid tag id %r." % tag, field="tag_id")
        if tag in record["tags"]:
            raise already_exists('Tag "%s/tags/%s" already exists' % (record["package"]["name"], tag))
        record["tags"][tag] = self._target(record, req.body.get("version"))
        return self._tag(record, tag)

    @handles("artifactregistry.projects.locations.repositories.packages.tags.patch")
    def patch_tag(self, req):
        entry, record, tag = self._tag_of(req["name"])
        paths = mask_paths(req.get("updateMask")) or ["version"]
        if paths != ["version"]:
            raise invalid("Only the version of a tag can be updated.", field="update_mask")
        digest = self._target(record, req.body.get("version"))
        if digest != record["tags"][tag] and (entry["repo"].get("dockerConfig") or {}).get("immutableTags"):
            raise failed_precondition("Cannot move tag %r: the repository has immutable tags." % tag)
        record["tags"][tag] = digest
        return self._tag(record, tag)

    @handles("artifactregistry.projects.locations.repositories.packages.tags.delete")
    def delete_tag(self, req):
        entry, record, tag = self._tag_of(req["name"])
        if (entry["repo"].get("dockerConfig") or {}).get("immutableTags"):
            raise failed_precondition("Cannot delete tag %r: the repository has immutable tags." % tag)
        del record["tags"][tag]
        return {}
