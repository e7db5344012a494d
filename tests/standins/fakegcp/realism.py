"""How slow and strict the fake is: Google Cloud's delays and checks, each switchable, on a scaled clock.

    fake = FakeGcp(realism=True, time_scale=0.02)   # every behaviour on, 1 s of Google time = 20 ms here
    fake.realism.permissions = False                # one behaviour off again (unit-style tests)

Behaviours (each a boolean attribute of Realism; FakeGcp(realism=False), the default, turns all off):
- timed_operations: operations finish by (scaled) time from durations.py, polled or not;
- service_enablement: calls to an API that is not enabled in the project get 403 SERVICE_DISABLED, and keep
  getting it for a propagation delay after it is enabled;
- propagation: a new service account is refused as an IAM member for a while, a granted role becomes
  effective for permission checks after a delay;
- permissions: access tokens map to principals that need the permissions Google checks (an anonymous caller
  is allowed everything, as before).

Request gates: an API (or the fake) appends a callable gate(request) to fake.gates; each runs before a
handler, in order, and raises ApiError to refuse the call. request.principal is the caller's member string
("user:a@example.com"), None when anonymous; request.token is the bearer token as sent.
"""

from __future__ import annotations

import time

SWITCHES = ("timed_operations", "service_enablement", "propagation", "permissions")


class Realism:
    def __init__(self, enabled=False, time_scale=1.0):
        for switch in SWITCHES:
            setattr(self, switch, bool(enabled))
        self.time_scale = float(time_scale)

    def seconds(self, gcp_seconds):
        """Real seconds here for gcp_seconds of Google Cloud time."""
        return gcp_seconds * self.time_scale

    @staticmethod
    def now():
        """The clock every delay is measured on (monotonic seconds)."""
        return time.monotonic()

    def set(self, **settings):
        """Change switches and time_scale (the /_fake/realism control); unknown names are an error."""
        for key, value in settings.items():
            if key == "time_scale":
                self.time_scale = float(value)
            elif key in SWITCHES:
                setattr(self, key, bool(value))
            else:
                raise ValueError("unknown realism setting %r (known: time_scale, %s)" % (key, ", ".join(SWITCHES)))

    def as_dict(self):
        return dict({switch: getattr(self, switch) for switch in SWITCHES}, time_scale=self.time_scale)
