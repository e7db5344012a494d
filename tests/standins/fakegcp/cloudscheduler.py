"""Cloud Scheduler v1: jobs create, get, list, patch, delete, pause, resume, run (synchronous, no operations).

As Google:
- names use the project id: projects/P/locations/L/jobs/J, J of letters, digits, hyphens or underscores
  (at most 500); the name in the body of a create must be under the parent;
- schedule (unix-cron, 5 fields) is required at create, timeZone must be a tz database name ("utc" too);
  a bad one fails 400 "Schedule or time zone is invalid.";
- exactly one target; an httpTarget needs an http(s) uri, a body only with POST, PUT or PATCH, at most
  one of oauthToken and oidcToken, and a service account that exists;
- what Cloud Scheduler fills in is filled in: httpMethod POST, headers User-Agent: Google-Cloud-Scheduler
  (and Content-Type: application/octet-stream when there is a body), oauthToken.scope cloud-platform,
  timeZone Etc/UTC, attemptDeadline 180s, retryConfig {maxRetryDuration 0s, minBackoffDuration 5s,
  maxBackoffDuration 3600s, maxDoublings 5}, state ENABLED, userUpdateTime, scheduleTime (next run);
- retryCount is 0 to 5, attemptDeadline 15s to 30min for HTTP targets, minBackoff <= maxBackoff;
- pause needs an ENABLED job, resume a PAUSED one (else 400 FAILED_PRECONDITION); run records an attempt.
"""

from __future__ import annotations

import datetime
import re
import uuid
import zoneinfo

from tests.standins.fakegcp.api import Api, handles
from tests.standins.fakegcp.errors import ApiError, already_exists, failed_precondition, invalid, not_found
from tests.standins.fakegcp.util import apply_mask, deep, mask_paths, now, paginate

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
LOCATION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")
TARGETS = ("httpTarget", "pubsubTarget", "appEngineHttpTarget")
MUTABLE = ("description", "schedule", "timeZone", "retryConfig", "attemptDeadline") + TARGETS
BODY_METHODS = ("POST", "PUT", "PATCH")
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
RETRY_DEFAULTS = {"maxRetryDuration": "0s", "minBackoffDuration": "5s", "maxBackoffDuration": "3600s",
                  "maxDoublings": 5}
BAD_SCHEDULE = "Schedule or time zone is invalid."
MONTHS = {name: number for number, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
DAYS = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
# (low, high, names) of minute, hour, day of month, month, day of week (0 and 7 are Sunday).
FIELDS = ((0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, MONTHS), (0, 7, DAYS))


def parse_cron(schedule):
    """The allowed values of each of the 5 fields of a unix-cron schedule; ValueError when malformed."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError("a unix-cron schedule has 5 fields (minute hour day-of-month month day-of-week), got %d"
                         % len(fields))
    out = []
    for text, (low, high, names) in zip(fields, FIELDS):
        values = set()
        for item in text.split(","):
            values |= _cron_item(item.upper(), low, high, names)
        out.append(values)
    if 7 in out[4]:
        out[4] = (out[4] - {7}) | {0}
    return out


def _cron_item(item, low, high, names):
    match = re.match(r"^(\*|[A-Z0-9]+(?:-[A-Z0-9]+)?)(?:/([0-9]+))?$", item)
    if not match:
        raise ValueError("invalid cron field item %r" % item)
    span, step = match.group(1), int(match.group(2) or 1)
    if step < 1:
        raise ValueError("invalid step in %r" % item)
    if span == "*":
        first, last = low, high
    else:
        bounds = [_cron_value(v, low, high, names) for v in span.split("-")]
        first, last = bounds[0], bounds[-1]
        if match.group(2) and len(bounds) == 1:
            last = high
        if first > last:
            raise ValueError("invalid range %r" % item)
    return set(range(first, last + 1, step))


def _cron_value(text, low, high, names):
    value = names.get(text) if not text.isdigit() else int(text)
    if value is None or not low <= value <= high:
        raise ValueError("value %r out of range %d-%d" % (text, low, high))
    return value


def next_run(schedule, zone, after=None):
    """The next time (UTC, RFC 3339) the schedule fires after `after` (now), or None within 5 years."""
    minutes, hours, days, months, weekdays = parse_cron(schedule)
    fields = schedule.split()
    any_day, any_weekday = fields[2].startswith("*"), fields[4].startswith("*")
    start = (after or datetime.datetime.now(datetime.timezone.utc)).astimezone(zone)
    day = start.date()
    for _offset in range(5 * 366):
        weekday = (day.weekday() + 1) % 7  # cron: 0 = Sunday
        in_month, in_week = day.day in days, weekday in weekdays
        matches = in_month or in_week if not (any_day or any_weekday) else in_month and in_week
        if day.month in months and matches:
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    when = datetime.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                    if when > start:
                        return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        day += datetime.timedelta(days=1)
    return None


def time_zone(name):
    if name.lower() == "utc":
        return datetime.timezone.utc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise invalid(BAD_SCHEDULE, field="job.time_zone") from None


def seconds(duration):
    return float(duration[:-1])


class CloudScheduler(Api):
    name = "cloudscheduler"
    document = "cloudscheduler.v1"

    def reset(self):
        super().reset()
        self.state["jobs"] = {}  # "project_id/location/job_id" -> job

    # ---- names --------------------------------------------------------------------------------------
    def _parent(self, parent):
        parts = parent.split("/")
        project_id = self.projects.resolve(parts[1])[0]
        if not LOCATION.match(parts[3]):
            raise invalid("Invalid location %r: use a region such as us-central1." % parts[3], field="parent")
        return project_id, parts[3]

    def _key(self, name):
        project_id, location = self._parent("/".join(name.split("/")[:4]))
        return "%s/%s/%s" % (project_id, location, name.split("/")[5])

    def _job(self, name):
        job = self.state["jobs"].get(self._key(name))
        if job is None:
            raise not_found("Job not found.")
        return job

    # ---- validation and server defaults ------------------------------------------------------------------
    def _complete(self, job):
        """Check a whole job and fill in what Cloud Scheduler fills in."""
        if len(job.get("description") or "") > 500:
            raise invalid("The description must not hold more than 500 characters.", field="job.description")
        if not job.get("schedule"):
            raise invalid("Invalid request: field job.schedule is required.", field="job.schedule")
        job.setdefault("timeZone", "Etc/UTC")
        zone = time_zone(job["timeZone"])
        try:
            parse_cron(job["schedule"])
        except ValueError as exc:
            raise ApiError(400, BAD_SCHEDULE, status="INVALID_ARGUMENT", field="job.schedule",
                           description="%r: %s" % (job["schedule"], exc)) from None
        targets = [t for t in TARGETS if t in job]
        if len(targets) != 1:
            raise invalid("A job needs exactly one target (http_target, pubsub_target or app_engine_http_target), "
                          "got %d." % len(targets), field="job")
        if "httpTarget" in job:
            self._http_target(job["httpTarget"])
        elif "pubsubTarget" in job:
            target = job["pubsubTarget"]
            if not TOPIC.match(target.get("topicName") or ""):
                raise invalid("Invalid topic name %r: expected projects/PROJECT/topics/TOPIC." % target.get("topicName"),
                              field="job.pubsub_target.topic_name")
            if not target.get("data") and not target.get("attributes"):
                raise invalid("A Pub/Sub target needs data or at least one attribute.", field="job.pubsub_target")
        else:
            target = job["appEngineHttpTarget"]
            target.setdefault("httpMethod", "POST")
            if target["httpMethod"] in ("PATCH", "OPTIONS"):
                raise invalid("App Engine targets do not allow %s." % target["httpMethod"],
                              field="job.app_engine_http_target.http_method")
        if "pubsubTarget" not in job:
            job.setdefault("attemptDeadline", "180s")
            deadline = seconds(job["attemptDeadline"])
            if "httpTarget" in job and not 15 <= deadline <= 1800:
                raise invalid("attempt_deadline must be between 15 seconds and 30 minutes for HTTP targets, got %s."
                              % job["attemptDeadline"], field="job.attempt_deadline")
        retry = job["retryConfig"] = dict(RETRY_DEFAULTS, **(job.get("retryConfig") or {}))
        if not 0 <= retry.get("retryCount", 0) <= 5:
            raise invalid("retry_count must be between 0 and 5, got %s." % retry["retryCount"],
                          field="job.retry_config.retry_count")
        if retry.get("retryCount") == 0:
            del retry["retryCount"]
        if not 0 <= retry["maxDoublings"]:
            raise invalid("max_doublings must not be negative.", field="job.retry_config.max_doublings")
        for field in ("maxRetryDuration", "minBackoffDuration", "maxBackoffDuration"):
            if seconds(retry[field]) < 0:
                raise invalid("%s must not be negative." % field, field="job.retry_config")
        if seconds(retry["minBackoffDuration"]) > seconds(retry["maxBackoffDuration"]):
            raise invalid("min_backoff_duration must not be greater than max_backoff_duration.",
                          field="job.retry_config.min_backoff_duration")
        return zone

    def _http_target(self, target):
        uri = target.get("uri") or ""
        if not re.match(r"^https?://[^/\s]+", uri) or len(uri) > 2083:
            raise invalid("Invalid http_target.uri %r: it must begin with http:// or https:// and hold at most 2083 "
                          "characters." % uri, field="job.http_target.uri")
        method = target.get("httpMethod", "HTTP_METHOD_UNSPECIFIED")
        if method == "HTTP_METHOD_UNSPECIFIED":
            method = target["httpMethod"] = "POST"
        if target.get("body") and method not in BODY_METHODS:
            raise invalid("A body is allowed only with the POST, PUT and PATCH methods, not %s." % method,
                          field="job.http_target.body")
        if "oauthToken" in target and "oidcToken" in target:
            raise invalid("Only one of http_target.oauth_token and http_target.oidc_token can be set.",
                          field="job.http_target")
        for kind in ("oauthToken", "oidcToken"):
            token = target.get(kind)
            if token is None:
                continue
            email = token.get("serviceAccountEmail") or ""
            if not email:
                raise invalid("%s.service_account_email is required." % kind, field="job.http_target")
            if not self.fake.service_account_exists(email):
                raise invalid("Service account %s does not exist." % email,
                              field="job.http_target.%s.service_account_email" % kind)
        if "oauthToken" in target:
            target["oauthToken"].setdefault("scope", CLOUD_PLATFORM)
        headers = target.setdefault("headers", {})
        headers.setdefault("User-Agent", "Google-Cloud-Scheduler")
        if target.get("body") and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/octet-stream"
        if sum(len(k) + len(v) for k, v in headers.items()) > 80 * 1024:
            raise invalid("The headers of a job must total less than 80KB.", field="job.http_target.headers")

    def _schedule(self, job, zone):
        when = next_run(job["schedule"], zone)
        if when:
            job["scheduleTime"] = when
        else:
            job.pop("scheduleTime", None)

    # ---- handlers --------------------------------------------------------------------------------------
    @handles("cloudscheduler.projects.locations.jobs.create")
    def create(self, req):
        project_id, location = self._parent(req["parent"])
        job = deep(req.body)
        name = job.get("name") or "%s/jobs/%s" % (req["parent"], uuid.uuid4().hex)
        match = re.match(r"^projects/([^/]+)/locations/([^/]+)/jobs/([^/]+)$", name)
        if not match or self._parent("projects/%s/locations/%s" % match.groups()[:2]) != (project_id, location):
            raise invalid("Job name %r must be under the parent: %s/jobs/JOB_ID." % (name, req["parent"]),
                          field="job.name")
        if not JOB_ID.match(match.group(3)):
            raise invalid("Invalid job id %r: use at most 500 letters, digits, hyphens or underscores."
                          % match.group(3), field="job.name")
        key = "%s/%s/%s" % (project_id, location, match.group(3))
        if key in self.state["jobs"]:
            raise already_exists("Job %s/jobs/%s already exists." % (req["parent"], match.group(3)))
        zone = self._complete(job)
        job.update(name="projects/%s/locations/%s/jobs/%s" % (project_id, location, match.group(3)),
                   state="ENABLED", userUpdateTime=now())
        self._schedule(job, zone)
        self.state["jobs"][key] = job
        return deep(job)

    @handles("cloudscheduler.projects.locations.jobs.get")
    def get(self, req):
        return deep(self._job(req["name"]))

    @handles("cloudscheduler.projects.locations.jobs.list")
    def list(self, req):
        project_id, location = self._parent(req["parent"])
        prefix = "%s/%s/" % (project_id, location)
        jobs = [j for k, j in sorted(self.state["jobs"].items()) if k.startswith(prefix)]
        page, token = paginate(jobs, req.get("pageSize"), req.get("pageToken"), default_size=500, max_size=500)
        body = {"jobs": deep(page)} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("cloudscheduler.projects.locations.jobs.patch")
    def patch(self, req):
        key = self._key(req["name"])
        job = self._job(req["name"])
        paths = mask_paths(req.get("updateMask"))
        if not paths:
            paths = [k for k in req.body if k != "name"]
        for path in paths:
            if path.split(".")[0] not in MUTABLE:
                raise invalid("Invalid update_mask path %r: it is not a field of the job that can be updated." % path,
                              field="update_mask")
        candidate = deep(job)
        apply_mask(candidate, req.body, paths)
        for target in TARGETS:  # one of: setting a target replaces the other kinds
            if target in req.body and any(p.split(".")[0] == target for p in paths):
                for other in TARGETS:
                    if other != target:
                        candidate.pop(other, None)
        zone = self._complete(candidate)
        if candidate != job:
            candidate["userUpdateTime"] = now()
        self._schedule(candidate, zone)
        self.state["jobs"][key] = candidate
        return deep(candidate)

    @handles("cloudscheduler.projects.locations.jobs.delete")
    def delete(self, req):
        self._job(req["name"])
        del self.state["jobs"][self._key(req["name"])]
        return {}

    @handles("cloudscheduler.projects.locations.jobs.pause")
    def pause(self, req):
        job = self._job(req["name"])
        if job["state"] != "ENABLED":
            raise failed_precondition("Job %s is %s: only an ENABLED job can be paused." % (job["name"], job["state"]))
        job["state"], job["userUpdateTime"] = "PAUSED", now()
        return deep(job)

    @handles("cloudscheduler.projects.locations.jobs.resume")
    def resume(self, req):
        job = self._job(req["name"])
        if job["state"] != "PAUSED":
            raise failed_precondition("Job %s is %s: only a PAUSED job can be resumed." % (job["name"], job["state"]))
        job["state"], job["userUpdateTime"] = "ENABLED", now()
        self._schedule(job, time_zone(job["timeZone"]))
        return deep(job)

    @handles("cloudscheduler.projects.locations.jobs.run")
    def run(self, req):
        job = self._job(req["name"])
        job["lastAttemptTime"] = now()
        job["status"] = {}
        return deep(job)
