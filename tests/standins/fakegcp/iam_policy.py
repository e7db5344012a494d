"""IAM policies, one implementation for every resource: versions, conditions, etags, member and role checks.

Policies are stored in fake.state["policies"] by key "<api>:<resource name>". As in Google:
- setIamPolicy with an etag that is not the current one fails 409 ABORTED; without an etag it overwrites.
- the etag changes on every set; an empty policy's etag is "ACAB".
- conditional bindings need version 3 (and a title and expression); reading a policy with conditions at a
  lower requested version returns the conditional roles renamed "<role>_withcond_<hash>".
- members need a known type prefix; roles must be roles/x, projects/P/roles/x or organizations/O/roles/x,
  and a predefined role must be one Google has (the catalog in permissions.py): 400 "Role roles/x is not
  supported for this resource." otherwise (terraform-provider-google #9130, terraform-google-iam #219).
- each (role, member) binding remembers when it appeared: with fake.realism.propagation it counts in permission
  checks only after the IAM propagation delay (effective()).
- a user-managed service account named in a binding must exist (400 otherwise), and, with
  fake.realism.propagation, have existed for a while (IAM accepts a new account after a delay, see iam.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re

from tests.standins.fakegcp.durations import DURATIONS
from tests.standins.fakegcp.errors import aborted, invalid
from tests.standins.fakegcp.permissions import NOT_SUPPORTED as ROLE_NOT_SUPPORTED, known_role
from tests.standins.fakegcp.util import new_etag

EMPTY_ETAG = "ACAB"
EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
ROLE = re.compile(r"^(roles/[A-Za-z0-9_.]+|(projects|organizations)/[a-z0-9-]+/roles/[A-Za-z0-9_.]+)$")
USER_MANAGED_SA = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@([a-z][a-z0-9-]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com$")
CONCURRENT = ("There were concurrent policy changes. Please retry the whole read-modify-write with exponential "
              "backoff. The request's ETag '%s' did not match the current policy's ETag '%s'.")


def member_problem(member, account_exists=None):
    """Why a member string is not acceptable, or None."""
    if member in ("allUsers", "allAuthenticatedUsers"):
        return None
    if ":" not in member:
        return 'Policy members must be of the form "<type>:<value>", got "%s".' % member
    kind, value = member.split(":", 1)
    if kind in ("user", "group", "serviceAccount"):
        if not EMAIL.match(value):
            return "Invalid member '%s': '%s' is not a valid email address." % (member, value)
        if kind == "serviceAccount" and account_exists is not None and USER_MANAGED_SA.match(value) \
                and not account_exists(value):
            return "Service account %s does not exist." % value
        return None
    if kind == "domain":
        return None if DOMAIN.match(value) else "Invalid member '%s': not a domain name." % member
    if kind in ("principal", "principalSet"):
        return None if value.startswith("//iam.googleapis.com/") else \
            "Invalid member '%s': principal identifiers start with //iam.googleapis.com/." % member
    if kind == "deleted":
        inner = value.split("?uid=", 1)
        if len(inner) == 2 and inner[1].isdigit() and inner[0].split(":", 1)[0] in ("user", "group", "serviceAccount") \
                and ":" in inner[0] and EMAIL.match(inner[0].split(":", 1)[1]):
            return None
        return "Invalid member '%s': deleted principals look like deleted:user:EMAIL?uid=NUMBER." % member
    return "Invalid member type '%s' in '%s'." % (kind, member)


def _condition_key(condition):
    return json.dumps(condition, sort_keys=True) if condition else ""


class PolicyStore:
    def __init__(self, fake):
        self.fake = fake

    @property
    def data(self):
        return self.fake.state.setdefault("policies", {})

    def stored(self, key):
        return self.data.get(key) or {"version": 1, "etag": EMPTY_ETAG, "bindings": []}

    def seed(self, key, bindings):
        """Give a resource a starting policy (e.g. the project owner) unless it has one."""
        if key not in self.data:
            self.data[key] = {"version": 1, "etag": new_etag(), "bindings": _normalize(bindings)}

    def drop(self, key):
        self.data.pop(key, None)

    def get(self, key, requested_version=None):
        """The policy as getIamPolicy returns it."""
        policy = copy.deepcopy(self.stored(key))
        requested = requested_version or 0
        if requested not in (0, 1, 3):
            raise invalid("Invalid requested policy version %s: valid values are 0, 1 and 3." % requested,
                          field="options.requestedPolicyVersion")
        if policy["version"] == 3 and requested < 3:
            for binding in policy["bindings"]:
                condition = binding.pop("condition", None)
                if condition:
                    digest = hashlib.sha256(_condition_key(condition).encode()).hexdigest()[:16]
                    binding["role"] += "_withcond_" + digest
            policy["version"] = 1
        return _render(policy)

    def set(self, key, request):
        """Apply a (schema-checked) SetIamPolicyRequest; returns the new policy as rendered."""
        new = request.get("policy")
        if new is None:
            raise invalid("Invalid request: field policy is required.", field="policy")
        mask = [p.strip() for p in (request.get("updateMask") or "bindings,etag").split(",") if p.strip()]
        mask = [re.sub(r"^policy\.", "", p) for p in mask]
        current = self.stored(key)
        version = new.get("version", 0)
        if version not in (0, 1, 3):
            raise invalid("Invalid policy version %s: valid values are 0, 1 and 3." % version, field="policy.version")
        etag = new.get("etag")
        if etag and etag != current["etag"]:
            raise aborted(CONCURRENT % (etag, current["etag"]))
        bindings = new.get("bindings") or []
        self._check_bindings(bindings, version)
        if version < 3 and any(b.get("condition") for b in current["bindings"]) and "bindings" in mask:
            raise invalid("The policy has conditional role bindings: a setIamPolicy request must use policy version 3 "
                          "to change it.", field="policy.version")
        stored = copy.deepcopy(current)
        if "bindings" in mask:
            stored["bindings"] = _normalize(bindings)
        if "auditConfigs" in mask or "audit_configs" in mask:
            stored["auditConfigs"] = copy.deepcopy(new.get("auditConfigs") or [])
        stored["version"] = 3 if any(b.get("condition") for b in stored["bindings"]) else 1
        stored["etag"] = new_etag()
        self._stamp_grants(key, current["bindings"], stored["bindings"])
        self.data[key] = stored
        return _render(copy.deepcopy(stored))

    # ---- when grants take effect (fake.realism.propagation; read by permissions.py) -----------------------------
    @property
    def grant_times(self):
        """{policy key: {"ROLE MEMBER": realism clock when the binding appeared}}; a binding without an entry
        (seeded, or granted by fake.add_principal) has always been effective."""
        return self.fake.state.setdefault("policy_grant_times", {})

    def _stamp_grants(self, key, before, after):
        if getattr(self.fake, "realism", None) is None:
            return  # a store outside FakeGcp (the BigQuery emulator's table policies): no propagation
        old = {(b["role"], m) for b in before for m in b["members"]}
        times = self.grant_times.get(key, {})
        stamped = {}
        for binding in after:
            for member in binding["members"]:
                label = "%s %s" % (binding["role"], member)
                if (binding["role"], member) not in old:
                    stamped[label] = self.fake.realism.now()
                elif label in times:
                    stamped[label] = times[label]
        self.grant_times[key] = stamped

    def grant_now(self, key, role, member):
        """Add member to role on a policy, effective at once (test setup: fake.add_principal)."""
        policy = self.data.get(key) or {"version": 1, "etag": new_etag(), "bindings": []}
        policy["bindings"] = _normalize(policy["bindings"] + [{"role": role, "members": [member]}])
        policy["etag"] = new_etag()
        self.data[key] = policy
        self.grant_times.get(key, {}).pop("%s %s" % (role, member), None)

    def effective(self, key, role, member):
        """Whether a (role, member) binding counts in permission checks yet: with fake.realism.propagation, only
        once it is older than the IAM propagation delay (durations.py "iam.grant.propagation")."""
        since = self.grant_times.get(key, {}).get("%s %s" % (role, member))
        if since is None or not getattr(self.fake, "realism", None) or not self.fake.realism.propagation:
            return True
        return self.fake.realism.now() - since >= self.fake.realism.seconds(DURATIONS["iam.grant.propagation"])

    def _check_bindings(self, bindings, version):
        exists = self._member_exists()
        for index, binding in enumerate(bindings):
            where = "policy.bindings[%d]" % index
            role = binding.get("role")
            if not role:
                raise invalid("Invalid policy: binding %d has no role." % index, field=where + ".role")
            if not ROLE.match(role):
                raise invalid("Role %s is not a valid role name: use roles/NAME, projects/PROJECT/roles/NAME or "
                              "organizations/ORG/roles/NAME." % role, field=where + ".role")
            if not known_role(role):  # Google's answer for a predefined role that does not exist
                raise invalid(ROLE_NOT_SUPPORTED % role, field=where + ".role")
            for member in binding.get("members") or []:
                problem = member_problem(member, exists)
                if problem:
                    raise invalid(problem, field=where + ".members")
            condition = binding.get("condition")
            if condition:
                if version != 3:
                    raise invalid("Invalid policy: conditional role bindings require policy version 3, got %s."
                                  % version, field="policy.version")
                if not condition.get("expression"):
                    raise invalid("Invalid policy: condition of binding %d has no expression." % index,
                                  field=where + ".condition.expression")
                if not condition.get("title"):
                    raise invalid("Invalid policy: condition of binding %d has no title." % index,
                                  field=where + ".condition.title")

    def _member_exists(self):
        """The account_exists hook of member_problem: IAM's view of an account as a member when the fake serves
        IAM (it lags behind creation, see iam.py), else the fake's own hook (None: not checked)."""
        iam = (getattr(self.fake, "apis", None) or {}).get("iam")
        return iam.known_as_member if iam is not None else self.fake.service_account_exists

    def replace_member(self, old, new):
        """Rename a member in every policy (a deleted service account becomes deleted:serviceAccount:...)."""
        for policy in self.data.values():
            changed = False
            for binding in policy["bindings"]:
                if old in binding["members"]:
                    binding["members"] = sorted(set(binding["members"]) - {old} | {new})
                    changed = True
            if changed:
                policy["etag"] = new_etag()


def _normalize(bindings):
    """Merge bindings of the same role and condition, dedupe and sort members, drop empty bindings."""
    merged = {}
    for binding in bindings:
        key = (binding["role"], _condition_key(binding.get("condition")))
        entry = merged.setdefault(key, {"role": binding["role"], "members": set()})
        if binding.get("condition"):
            entry["condition"] = copy.deepcopy(binding["condition"])
        entry["members"].update(binding.get("members") or [])
    out = []
    for key in sorted(merged):
        entry = merged[key]
        if entry["members"]:
            entry["members"] = sorted(entry["members"])
            out.append(entry)
    return out


def _render(policy):
    body = {"version": policy["version"], "etag": policy["etag"]}
    if policy.get("bindings"):
        body["bindings"] = policy["bindings"]
    if policy.get("auditConfigs"):
        body["auditConfigs"] = policy["auditConfigs"]
    return body
