"""Grafana alerting provisioning (roles/grafana/templates/alerting): rules, contact points and policy.

The templates are rendered with Ansible's own templating, as tasks/deploy.yml renders them, from the collection's
defaults (roles/common, roles/grafana) plus an inventory. Each rendered file is validated against a JSON schema of
Grafana's alerting file-provisioning format (apiVersion 1, written from Grafana's documentation and its provisioning
types) and against what the schema cannot say: refIds that `condition` and the expressions name exist, unique UIDs
of at most 40 characters, Prometheus-style durations, known datasource UIDs, no "$" where Grafana would replace
environment variables.

Every BigQuery rule's query then runs on the BigQuery emulator (the macros expanded by tests/standins/grafana_queries.py
with the rule's relative time range) on data seeded so that it fires for some label sets and not for others, and
the rule's reduce/threshold/math chain is evaluated here the way Grafana's server-side expressions do.
"""

from __future__ import annotations

import datetime
import json
import operator
import os
import re
import subprocess
import uuid
from pathlib import Path

import jsonschema
import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from drift_fixtures import GRAFANA_DIR, client_for, create_dataset, insert, timestamp
from tests.standins.grafana_queries import expand_macros, run_query

ROOT = Path(__file__).resolve().parents[2]
ROLE_DIR = ROOT / "roles" / "grafana"
TEMPLATES = ROLE_DIR / "templates" / "alerting"
DEFAULT_FILES = (ROOT / "roles" / "common" / "defaults" / "main.yml", ROLE_DIR / "defaults" / "main.yml")
DATASOURCES_DIR = GRAFANA_DIR / "provisioning" / "datasources"
NUMERIC = ("INTEGER", "INT64", "FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC")
UTC = datetime.timezone.utc
# The moment the rules are evaluated at in the emulator tests.
NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

INVENTORY = {"mlops_gcp_project": "my-project", "mlops_gcp_region": "europe-west1"}
# A sample inventory with every kind of contact point and both kinds of quality threshold.
SAMPLE = dict(INVENTORY, mlops_bigquery_dataset="churn_mlops", mlops_alert_contact_points=[
    {"name": "ML team", "type": "email", "addresses": ["ml@example.com", "oncall@example.com"]},
    {"name": "ops-webhook", "type": "webhook", "url_secret": "grafana-ops-webhook"},
    {"name": "slack", "type": "slack", "url_secret": "grafana_slack_url"},
], mlops_alert_smtp={"host": "smtp.example.com:587", "from_address": "grafana@example.com", "user": "grafana",
                     "password_secret": "grafana-smtp-password"},
    mlops_alert_quality_thresholds=[{"metric": "rmse", "above": 50}, {"metric": "accuracy", "below": 0.7}])


# ---- rendering, as Ansible does ----

def trusted(value):
    """Role defaults are templates to Ansible (they refer to the mlops_* settings): mark them so."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return value


def role_variables(inventory):
    variables = {}
    for path in DEFAULT_FILES:
        variables.update(trusted(yaml.safe_load(path.read_text())))
    variables.update(inventory)
    return variables


def render(name, inventory=None):
    """A template of templates/alerting rendered with the role's and the collection's defaults and an inventory
    (trim_blocks, as lookup('ansible.builtin.template') renders)."""
    variables = role_variables(INVENTORY if inventory is None else inventory)
    templar = Templar(loader=DataLoader(), variables=variables)
    text = "#jinja2: trim_blocks: True\n" + (TEMPLATES / name).read_text()
    result = templar.template(trust_as_template(text))
    return "" if result is None else str(result)


def rules_file(inventory=None):
    return yaml.safe_load(render("rules.yaml.j2", inventory))


def notifications_file(inventory=None):
    return yaml.safe_load(render("notifications.yaml.j2", inventory))


def problems(inventory):
    return [line.strip() for line in render("problems.j2", inventory).splitlines() if line.strip()]


def rules(document):
    return [rule for group in document["groups"] for rule in group["rules"]]


def rule(document, uid):
    (found,) = [item for item in rules(document) if item["uid"] == uid]
    return found


# ---- Grafana's alerting provisioning format ----

DURATION = r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$"  # Prometheus' model.ParseDuration
NAME = {"type": "string", "minLength": 1}
EXPRESSION_TYPES = ["math", "reduce", "resample", "classic_conditions", "threshold", "sql"]
QUERY = {
    "type": "object",
    "required": ["refId", "datasourceUid", "model"],
    "additionalProperties": False,
    "properties": {
        "refId": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*$"},
        "queryType": {"type": "string"},
        "relativeTimeRange": {
            "type": "object", "required": ["from", "to"], "additionalProperties": False,
            "properties": {"from": {"type": "integer", "minimum": 0}, "to": {"type": "integer", "minimum": 0}},
        },
        "datasourceUid": NAME,
        "model": {"type": "object", "required": ["refId"]},
    },
    # An expression names its type, and reduce/threshold/math what they read.
    "if": {"properties": {"datasourceUid": {"const": "__expr__"}}},
    "then": {"properties": {"model": {
        "required": ["type", "expression"],
        "properties": {
            "type": {"enum": EXPRESSION_TYPES},
            "expression": {"type": "string", "minLength": 1},
            "reducer": {"enum": ["last", "mean", "min", "max", "sum", "count", "median"]},
            "settings": {"type": "object", "properties": {"mode": {"enum": ["", "dropNN", "replaceNN", "strict"]}}},
            "conditions": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["evaluator"],
                "properties": {"evaluator": {
                    "type": "object", "required": ["type", "params"],
                    "properties": {
                        "type": {"enum": ["gt", "lt", "within_range", "outside_range", "gte", "lte", "eq", "ne",
                                          "within_range_included", "outside_range_included"]},
                        "params": {"type": "array", "minItems": 1, "items": {"type": "number"}},
                    },
                }},
            }},
        },
        "allOf": [
            {"if": {"properties": {"type": {"const": "reduce"}}}, "then": {"required": ["reducer"]}},
            {"if": {"properties": {"type": {"const": "threshold"}}}, "then": {"required": ["conditions"]}},
        ],
    }}},
}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
RULES_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "groups"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": 1},
        "groups": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["orgId", "name", "folder", "interval", "rules"],
            "additionalProperties": False,
            "properties": {
                "orgId": {"type": "integer", "minimum": 1},
                "name": NAME,
                "folder": NAME,
                "interval": {"type": "string", "pattern": DURATION, "minLength": 2},
                "rules": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "required": ["uid", "title", "condition", "data", "noDataState", "execErrState", "for"],
                    "additionalProperties": False,
                    "properties": {
                        "uid": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,40}$"},
                        "title": NAME,
                        "condition": NAME,
                        "data": {"type": "array", "minItems": 1, "items": QUERY},
                        "dashboardUid": {"type": "string"},
                        "panelId": {"type": "integer"},
                        "noDataState": {"enum": ["NoData", "Alerting", "OK", "KeepLast"]},
                        "execErrState": {"enum": ["Error", "Alerting", "OK", "KeepLast"]},
                        "for": {"type": "string", "pattern": DURATION, "minLength": 2},
                        "keepFiringFor": {"type": "string", "pattern": DURATION},
                        "annotations": STRING_MAP,
                        "labels": STRING_MAP,
                        "isPaused": {"type": "boolean"},
                    },
                }},
            },
        }},
        "deleteRules": {"type": "array"},
    },
}
RECEIVER_SETTINGS = {
    "email": {"required": ["addresses"], "properties": {"addresses": {"type": "string", "minLength": 3}}},
    "webhook": {"required": ["url"], "properties": {"url": {"type": "string"}, "httpMethod": {"enum": ["POST", "PUT"]}}},
    "slack": {"required": ["url"], "properties": {"url": {"type": "string"}}},
}
ROUTE = {
    "type": "object",
    "required": ["receiver"],
    "properties": {
        "receiver": NAME,
        "group_by": {"type": "array", "items": {"type": "string"}},
        "object_matchers": {"type": "array", "items": {
            "type": "array", "minItems": 3, "maxItems": 3,
            "prefixItems": [NAME, {"enum": ["=", "!=", "=~", "!~"]}, {"type": "string"}]}},
        "continue": {"type": "boolean"},
        "group_wait": {"type": "string", "pattern": DURATION},
        "group_interval": {"type": "string", "pattern": DURATION},
        "repeat_interval": {"type": "string", "pattern": DURATION},
        "routes": {"type": "array", "items": {"$ref": "#/$defs/route"}},
    },
}
NOTIFICATIONS_SCHEMA = {
    "$defs": {"route": ROUTE},
    "type": "object",
    "required": ["apiVersion", "policies"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": 1},
        "contactPoints": {"type": "array", "items": {
            "type": "object", "required": ["orgId", "name", "receivers"], "additionalProperties": False,
            "properties": {
                "orgId": {"type": "integer", "minimum": 1},
                "name": NAME,
                "receivers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["uid", "type", "settings"], "additionalProperties": False,
                    "properties": {
                        "uid": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,40}$"},
                        "type": {"enum": sorted(RECEIVER_SETTINGS)},
                        "settings": {"type": "object", "minProperties": 1},
                        "disableResolveMessage": {"type": "boolean"},
                    },
                    "allOf": [{"if": {"properties": {"type": {"const": kind}}}, "then": {"properties": {"settings": schema}}}
                              for kind, schema in RECEIVER_SETTINGS.items()],
                }},
            },
        }},
        # One policy tree per organisation: its root has no matchers.
        "policies": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
            "allOf": [{"$ref": "#/$defs/route"}],
            "required": ["orgId", "receiver"],
            "properties": {"orgId": {"type": "integer", "minimum": 1}},
            "not": {"anyOf": [{"required": ["object_matchers"]}, {"required": ["matchers"]}]},
        }},
    },
}


def provisioned_datasource_uids():
    uids = {}
    for path in DATASOURCES_DIR.glob("*.yaml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            uids[source["uid"]] = source["type"]
    return uids


def check_rules(document):
    """Raise AssertionError on what Grafana would refuse or mangle in a rules file."""
    jsonschema.validate(document, RULES_SCHEMA)
    datasources = provisioned_datasource_uids()
    uids = [item["uid"] for item in rules(document)]
    assert len(uids) == len(set(uids)), "duplicate rule uids: %s" % uids
    for group in document["groups"]:
        titles = [item["title"] for item in group["rules"]]
        assert len(titles) == len(set(titles)), "duplicate titles in group %s" % group["name"]
    for item in rules(document):
        refs = [query["refId"] for query in item["data"]]
        assert len(refs) == len(set(refs)), "%s: duplicate refIds" % item["uid"]
        assert item["condition"] in refs, "%s: condition %s is not a refId" % (item["uid"], item["condition"])
        for query in item["data"]:
            model, where = query["model"], "%s/%s" % (item["uid"], query["refId"])
            assert model["refId"] == query["refId"], where
            if query["datasourceUid"] == "__expr__":
                named = re.findall(r"\$\{?(\w+)\}?", model["expression"]) if model["type"] == "math" else [model["expression"]]
                assert named and all(ref in refs and ref != query["refId"] for ref in named), "%s reads %s" % (where, named)
            else:
                assert query["datasourceUid"] in datasources, "%s: unknown datasource %s" % (where, query["datasourceUid"])
                assert model["datasource"] == {"type": datasources[query["datasourceUid"]], "uid": query["datasourceUid"]}, where
                assert query["relativeTimeRange"]["from"] > query["relativeTimeRange"]["to"], where
        # Grafana replaces $VAR in titles and labels with the environment: none may hold a "$".
        for text in [item["title"]] + list(item.get("labels", {}).values()) + list(item.get("labels", {})):
            assert "$" not in text, "%s: %r would be interpolated" % (item["uid"], text)


def check_notifications(document):
    jsonschema.validate(document, NOTIFICATIONS_SCHEMA)
    points = document.get("contactPoints", [])
    names = [point["name"] for point in points] + ["grafana-default-email"]
    assert len(names) == len(set(names)), names
    receiver_uids = [receiver["uid"] for point in points for receiver in point["receivers"]]
    assert len(receiver_uids) == len(set(receiver_uids)), receiver_uids

    def walk(route):
        assert route["receiver"] in names, "policy sends to unknown contact point %s" % route["receiver"]
        for child in route.get("routes", []):
            walk(child)
    walk(document["policies"][0])


# ---- the expression chain, as Grafana's server-side expressions evaluate it ----

REDUCERS = {"last": lambda values: values[-1], "max": max, "min": min, "sum": sum,
            "mean": lambda values: sum(values) / len(values), "count": len}
EVALUATORS = {"gt": operator.gt, "lt": operator.lt, "gte": operator.ge, "lte": operator.le}
MATH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def number_set(rows, columns):
    """A query's table as Grafana's alerting reads it: string columns are labels, the one numeric column is the
    value; each row one series of one point. Duplicate label sets are an error in Grafana."""
    numeric = [name for name, kind in columns.items() if kind in NUMERIC]
    labels = sorted(name for name, kind in columns.items() if kind == "STRING")
    assert len(numeric) == 1 and len(numeric) + len(labels) == len(columns), "not a numeric table: %s" % columns
    result = {}
    for row in rows:
        key = tuple((name, row[name]) for name in labels)
        assert key not in result, "duplicate label set %s" % (key,)
        result[key] = [row[numeric[0]]]
    return result


def evaluate(item, results):
    """{label set: fires?} of a rule given its datasource queries' results ({refId: {labels: [values]}}), or None
    for No Data (every query empty)."""
    values = dict(results)
    for query in item["data"]:
        model, ref = query["model"], query["refId"]
        if query["datasourceUid"] != "__expr__":
            continue
        if model["type"] == "reduce":
            drop = model.get("settings", {}).get("mode") == "dropNN"
            out = {}
            for key, series in values[model["expression"]].items():
                points = [point for point in series if point is not None] if drop else series
                if points:
                    out[key] = [REDUCERS[model["reducer"]](points)]
            values[ref] = out
        elif model["type"] == "math":
            left, sign, right = re.fullmatch(r"\$(\w+)\s*([-+*/])\s*\$(\w+)", model["expression"]).groups()
            values[ref] = {key: [MATH[sign](value[0], values[right][key][0])]
                           for key, value in values[left].items() if key in values[right] and values[right][key][0]}
        elif model["type"] == "threshold":
            evaluator = model["conditions"][0]["evaluator"]
            compare = EVALUATORS[evaluator["type"]]
            values[ref] = {key: [compare(value[0], evaluator["params"][0])] for key, value in values[model["expression"]].items()}
        else:
            raise AssertionError("expression type %s is not evaluated by this test" % model["type"])
    condition = values[item["condition"]]
    return {key: value[0] for key, value in condition.items()} if condition else None


def state(item, evaluation):
    """The rule's state per label set, or the no-data state."""
    if evaluation is None:
        return item["noDataState"]
    return {dict(key).get("feature") or key: ("Alerting" if fires else "Normal") for key, fires in evaluation.items()}


# ---- structure ----

@pytest.mark.parametrize("inventory", [INVENTORY, SAMPLE], ids=["defaults", "sample"])
def test_rendered_files_follow_grafanas_provisioning_format(inventory):
    document = rules_file(inventory)
    check_rules(document)
    check_notifications(notifications_file(inventory))
    assert problems(inventory) == []
    uids = {item["uid"] for item in rules(document)}
    assert {"mlops-drift", "mlops-volume", "mlops-serving-errors"} <= uids
    quality = {uid for uid in uids if uid.startswith("mlops-quality-")}
    assert quality == ({"mlops-quality-rmse", "mlops-quality-accuracy"} if inventory is SAMPLE else set())
    (group,) = document["groups"]
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "mlops.yaml").read_text())["providers"]
    assert group["folder"] == providers[0]["folder"]  # the dashboards' folder


def test_the_schema_checks_can_fail():
    document = rules_file(SAMPLE)
    broken = json.loads(json.dumps(document))
    broken["groups"][0]["rules"][0]["noDataState"] = "Quiet"
    with pytest.raises(jsonschema.ValidationError):
        check_rules(broken)
    broken = json.loads(json.dumps(document))
    broken["groups"][0]["rules"][0]["for"] = "5 minutes"
    with pytest.raises(jsonschema.ValidationError):
        check_rules(broken)
    broken = json.loads(json.dumps(document))
    broken["groups"][0]["rules"][0]["condition"] = "Z"
    with pytest.raises(AssertionError, match="condition Z"):
        check_rules(broken)
    broken = json.loads(json.dumps(document))
    broken["groups"][0]["rules"][0]["data"][1]["model"]["expression"] = "Q"
    with pytest.raises(AssertionError, match="reads"):
        check_rules(broken)
    broken = json.loads(json.dumps(document))
    broken["groups"][0]["rules"][1]["uid"] = broken["groups"][0]["rules"][0]["uid"]
    with pytest.raises(AssertionError, match="duplicate rule uids"):
        check_rules(broken)
    broken = json.loads(json.dumps(document))
    broken["groups"][0]["rules"][0]["uid"] = "x" * 41
    with pytest.raises(jsonschema.ValidationError):
        check_rules(broken)
    broken = json.loads(json.dumps(document))
    broken["groups"][0]["rules"][0]["data"][0]["datasourceUid"] = "elsewhere"
    with pytest.raises(AssertionError, match="unknown datasource"):
        check_rules(broken)
    notifications = notifications_file(SAMPLE)
    notifications["policies"][0]["routes"][0]["receiver"] = "nobody"
    with pytest.raises(AssertionError, match="unknown contact point"):
        check_notifications(notifications)
    notifications = notifications_file(SAMPLE)
    del notifications["contactPoints"][0]["receivers"][0]["settings"]["addresses"]
    with pytest.raises(jsonschema.ValidationError):
        check_notifications(notifications)


def test_rules_read_the_provisioned_datasources():
    datasources = provisioned_datasource_uids()
    assert datasources == {"mlops-bigquery": "grafana-bigquery-datasource", "mlops-cloud-monitoring": "stackdriver"}
    monitoring = yaml.safe_load((DATASOURCES_DIR / "cloud-monitoring.yaml").read_text())["datasources"][0]
    assert monitoring["editable"] is False and monitoring["jsonData"]["authenticationType"] == "${GF_BIGQUERY_AUTHENTICATION_TYPE}"


def test_each_rules_sql_names_the_inventorys_dataset_and_keeps_the_macros():
    for item in rules(rules_file(SAMPLE)):
        for query in item["data"]:
            if query["datasourceUid"] == "mlops-bigquery":
                sql = query["model"]["rawSql"]
                assert re.findall(r"`([^`]+)`", sql) and all(name.startswith("churn_mlops.") for name in re.findall(r"`([^`]+)`", sql))
                assert "$__timeFilter(" in sql and query["model"]["format"] == 1  # a table: Grafana's numeric table


def test_serving_errors_rule_counts_the_serving_services_5xx():
    item = rule(rules_file(SAMPLE), "mlops-serving-errors")
    queries = {query["refId"]: query["model"] for query in item["data"]}
    errors, everything = queries["A"]["timeSeriesList"], queries["B"]["timeSeriesList"]
    for series in (errors, everything):
        assert series["projectName"] == "my-project"
        text = " ".join(series["filters"])
        assert "metric.type = run.googleapis.com/request_count" in text
        assert "resource.label.service_name = serving" in text
    assert "metric.label.response_code_class = 5xx" in " ".join(errors["filters"])
    assert "response_code_class" not in " ".join(everything["filters"])
    # 5 errors out of 100 requests is the threshold, not above it; 10 out of 100 fires.
    assert evaluate(item, {"A": {(): [3, 2]}, "B": {(): [50, 50]}}) == {(): False}
    assert evaluate(item, {"A": {(): [4, 6]}, "B": {(): [40, 60]}}) == {(): True}
    # No 5xx series at all (no error) is no data, which this rule treats as OK.
    assert evaluate(item, {"A": {}, "B": {(): [100]}}) is None and item["noDataState"] == "OK"


# ---- contact points and secrets ----

def test_contact_points_come_from_the_inventory_and_urls_stay_in_secret_manager():
    text = render("notifications.yaml.j2", SAMPLE)
    document = yaml.safe_load(text)
    points = {point["name"]: point["receivers"][0] for point in document["contactPoints"]}
    assert points["ML team"]["type"] == "email"
    assert points["ML team"]["settings"]["addresses"] == "ml@example.com;oncall@example.com"
    assert points["ops-webhook"]["settings"]["url"] == "${MLOPS_ALERT_URL_GRAFANA_OPS_WEBHOOK}"
    assert points["slack"]["settings"]["url"] == "${MLOPS_ALERT_URL_GRAFANA_SLACK_URL}"
    # Every alert of the pipeline reaches every contact point.
    policy = document["policies"][0]
    assert [route["receiver"] for route in policy["routes"]] == ["ML team", "ops-webhook", "slack"]
    assert all(route["continue"] is True and route["object_matchers"] == [["pipeline", "=", "mlops"]] for route in policy["routes"])
    assert all(item["labels"]["pipeline"] == "mlops" for item in rules(rules_file(SAMPLE)))
    # Every ${VAR} is a secret env var tasks/alerting.yml names (MLOPS_ALERT_URL_ + the secret ID, upper case).
    references = set(re.findall(r"\$\{(\w+)\}", text))
    secrets = [point["url_secret"] for point in SAMPLE["mlops_alert_contact_points"] if "url_secret" in point]
    assert references == {"MLOPS_ALERT_URL_" + secret.upper().replace("-", "_") for secret in secrets}
    alerting_tasks = (ROLE_DIR / "tasks" / "alerting.yml").read_text()
    assert "'MLOPS_ALERT_URL_' ~ (item | upper | replace('-', '_'))" in alerting_tasks
    assert "https://" not in text and "hooks.slack.com" not in text


def test_without_contact_points_the_rules_go_to_grafanas_default_contact_point():
    document = notifications_file(INVENTORY)
    assert "contactPoints" not in document
    assert document["policies"][0]["receiver"] == "grafana-default-email" and "routes" not in document["policies"][0]
    assert len(rules(rules_file(INVENTORY))) == 3


def test_the_volume_rule_pauses_at_zero_minutes():
    assert rule(rules_file(INVENTORY), "mlops-volume")["isPaused"] is False
    paused = rule(rules_file(dict(INVENTORY, mlops_alert_volume_minutes=0)), "mlops-volume")
    assert paused["isPaused"] is True
    check_rules(rules_file(dict(INVENTORY, mlops_alert_volume_minutes=0)))


@pytest.mark.parametrize("settings, complaint", [
    ({"mlops_alert_contact_points": [{"name": "x", "type": "pager", "url_secret": "s"}]}, "type must be email, webhook or slack"),
    ({"mlops_alert_contact_points": [{"name": "x", "type": "slack"}]}, "needs url_secret"),
    ({"mlops_alert_contact_points": [{"name": "x", "type": "webhook", "url_secret": "a/b"}]}, "needs url_secret"),
    ({"mlops_alert_contact_points": [{"name": "x", "type": "email"}], "mlops_alert_smtp": {"host": "h", "from_address": "f@x"}},
     "needs addresses"),
    ({"mlops_alert_contact_points": [{"name": "x", "type": "email", "addresses": ["a@b.c"]}]}, "needs mlops_alert_smtp"),
    ({"mlops_alert_contact_points": [{"name": "x", "type": "email", "addresses": "a@b.c"}], "mlops_alert_smtp": {"host": "h", "from_address": "f@x"}},
     "needs addresses"),
    ({"mlops_alert_contact_points": [{"type": "slack", "url_secret": "s"}]}, "name is required"),
    ({"mlops_alert_contact_points": [{"name": "x", "type": "slack", "url_secret": "s"}, {"name": "x", "type": "slack", "url_secret": "t"}]},
     "used twice"),
    ({"mlops_alert_contact_points": [{"name": "x", "type": "slack", "url_secret": "s-1"}, {"name": "y", "type": "slack", "url_secret": "s_1"}]},
     "same environment variable"),
    ({"mlops_alert_contact_points": {"name": "x"}}, "must be a list"),
    ({"mlops_alert_smtp": {"host": "h", "password": "hunter2"}}, "unknown key password"),
    ({"mlops_alert_smtp": {"host": "h", "password_secret": "projects/p/secrets/s"}}, "password_secret must be"),
    ({"mlops_alert_quality_thresholds": [{"metric": "rmse"}]}, "exactly one of above"),
    ({"mlops_alert_quality_thresholds": [{"metric": "rmse", "above": 1, "below": 0}]}, "exactly one of above"),
    ({"mlops_alert_quality_thresholds": [{"metric": "rmse", "above": "high"}]}, "must be a number"),
    ({"mlops_alert_quality_thresholds": [{"metric": "RMSE'; --", "above": 1}]}, "metric must be"),
    ({"mlops_alert_quality_thresholds": [{"metric": "rmse", "above": 1}, {"metric": "rmse", "above": 2}]}, "two thresholds"),
    ({"mlops_alert_volume_minutes": -5}, "mlops_alert_volume_minutes"),
    ({"mlops_alert_serving_error_ratio": 5}, "mlops_alert_serving_error_ratio"),
    ({"mlops_alert_serving_error_minutes": 0}, "mlops_alert_serving_error_minutes"),
    ({"mlops_bigquery_dataset": "a.b"}, "dataset name"),
])
def test_wrong_settings_are_refused_with_a_clear_message(settings, complaint):
    found = problems(dict(INVENTORY, **settings))
    assert any(complaint in line for line in found), found


def test_a_url_pasted_into_the_inventory_is_refused_without_being_repeated():
    url = "https://hooks.slack.com/services/T000/B000/very-secret"
    found = problems(dict(INVENTORY, mlops_alert_contact_points=[{"name": "s", "type": "slack", "url": url}]))
    assert any("never put a URL in the inventory" in line for line in found), found
    assert url not in " ".join(found)


# ---- the start script writes the files Grafana reads ----

def test_start_script_writes_the_rendered_files_into_the_alerting_directory(tmp_path):
    password = tmp_path / "admin-password"
    password.write_text("a-long-generated-secret")
    rules_text, notifications_text = render("rules.yaml.j2", SAMPLE), render("notifications.yaml.j2", SAMPLE)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GF_SECURITY_ADMIN_PASSWORD__FILE": str(password),
           "MLOPS_GRAFANA_ALLOW_SQLITE": "true", "GF_BIGQUERY_PROJECT": "p", "GF_BIGQUERY_AUTHENTICATION_TYPE": "gce",
           "MLOPS_ALERTING_DIR": str(tmp_path / "alerting"), "MLOPS_ALERT_RULES": rules_text,
           "MLOPS_ALERT_NOTIFICATIONS": notifications_text}
    proc = subprocess.run(["sh", str(GRAFANA_DIR / "entrypoint.sh"), "true"], env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((tmp_path / "alerting" / "mlops-rules.yaml").read_text()) == yaml.safe_load(rules_text)
    assert yaml.safe_load((tmp_path / "alerting" / "mlops-notifications.yaml").read_text()) == yaml.safe_load(notifications_text)
    dockerfile = (GRAFANA_DIR / "Dockerfile").read_text()
    assert "ENV MLOPS_ALERTING_DIR=/etc/grafana/provisioning/alerting" in dockerfile
    assert 'chown 472:0 "${MLOPS_ALERTING_DIR}"' in dockerfile  # the grafana user writes there


def test_deploy_passes_the_rendered_files_and_the_secrets_to_cloud_run():
    deploy = yaml.safe_load((ROLE_DIR / "tasks" / "deploy.yml").read_text())
    (task,) = [task for task in deploy if "deployml.mlops.cloud_run_service" in task]
    env = task["deployml.mlops.cloud_run_service"]["env"]
    assert "alerting/rules.yaml.j2" in env["MLOPS_ALERT_RULES"]
    assert "alerting/notifications.yaml.j2" in env["MLOPS_ALERT_NOTIFICATIONS"]
    assert "grafana_alert_secret_env" in task["deployml.mlops.cloud_run_service"]["secret_env"]
    assert not any("PASSWORD" in name for name in env)
    assert "| from_yaml | to_json" in env["MLOPS_ALERT_RULES"]
    # Cloud Run takes env values of at most 32768 bytes: with the most quality rules allowed, the rules (as the JSON
    # deploy.yml sends) stay below it with room to spare; one more is refused.
    many = dict(SAMPLE, mlops_alert_quality_thresholds=[{"metric": "metric_%d" % i, "above": i} for i in range(12)])
    assert problems(many) == []
    assert len(json.dumps(yaml.safe_load(render("rules.yaml.j2", many))).encode()) < 32768 * 0.9
    many["mlops_alert_quality_thresholds"].append({"metric": "one_more", "below": 1})
    assert any("at most 12" in line for line in problems(many))


# ---- every BigQuery rule on the emulator ----

def hours_ago(hours):
    return NOW - datetime.timedelta(hours=hours)


def metric_row(model, window_end, metric, value, feature=None, drift=None, version=None, alias=None):
    return {"window_start": timestamp(window_end - datetime.timedelta(hours=24)), "window_end": timestamp(window_end),
            "computed_at": timestamp(window_end), "model_name": model, "model_version": version, "model_alias": alias,
            "feature": feature, "metric_type": metric, "value": value, "threshold": 0.2 if feature else None,
            "drift_detected": drift}


def prediction_row(when, served, model="diabetes-progression"):
    return {"prediction_id": str(uuid.uuid4()), "timestamp": timestamp(when), "model_name": model,
            "model_version": "3", "model_alias": "champion", "prediction": 1.0, "latency_ms": 2.0, "served": served}


@pytest.fixture(scope="module")
def seeded(bigquery_emulator):
    """The mlops tables with drift and quality metrics and predictions around NOW (see each test)."""
    client = client_for(bigquery_emulator)
    dataset = "alerts_%d" % os.getpid()
    create_dataset(client, dataset)
    latest, older = hours_ago(2), hours_ago(26)
    insert(client, dataset, "drift_metrics", [
        # churn: total_charges drifted (on ks) in its latest window; tenure_months did in the older one only.
        metric_row("churn", latest, "psi", 0.5, "total_charges", False),
        metric_row("churn", latest, "ks", 0.4, "total_charges", True),
        metric_row("churn", latest, "psi", 0.01, "tenure_months", False),
        metric_row("churn", older, "psi", 0.9, "tenure_months", True),
        # steady: drift in its older window only; the latest one is clean.
        metric_row("steady", older, "psi", 0.7, "monthly_charges", True),
        metric_row("steady", latest, "psi", 0.02, "monthly_charges", False),
        # stale: drifted, but its window ended outside the lookback (48 h).
        metric_row("stale", hours_ago(100), "psi", 0.8, "monthly_charges", True),
        # Quality (feature null). charges: rmse 60 in the latest window (above 50), 10 before.
        metric_row("charges", latest, "rmse", 60.0), metric_row("charges", older, "rmse", 10.0),
        metric_row("charges", latest, "rmse", 20.0, version="4", alias="challenger"),
        # good: rmse 20. churn: accuracy 0.8 now, 0.5 before; churn-v2 (champion version 7) 0.6 now.
        metric_row("good", latest, "rmse", 20.0),
        metric_row("churn", latest, "accuracy", 0.8), metric_row("churn", older, "accuracy", 0.5),
        metric_row("churn-v2", latest, "accuracy", 0.6, version="7", alias="champion"),
    ])
    insert(client, dataset, "predictions", [
        # In the last hour before NOW: one served prediction (served null: logged before the column existed)
        # and shadow predictions. From NOW + 1 h, only shadow predictions are recent.
        prediction_row(NOW - datetime.timedelta(minutes=20), None),
        prediction_row(NOW - datetime.timedelta(minutes=10), False),
        prediction_row(NOW + datetime.timedelta(minutes=50), False),
        prediction_row(NOW + datetime.timedelta(minutes=55), False),
        # Three hours later, one served prediction.
        prediction_row(NOW + datetime.timedelta(hours=3, minutes=-5), True),
    ])
    return client, dataset


def run_rule(seeded, item, now=NOW):
    """Run the rule's BigQuery queries for an evaluation at `now` and evaluate its expressions."""
    client, _dataset = seeded
    results = {}
    for query in item["data"]:
        if query["datasourceUid"] != "mlops-bigquery":
            continue
        window = query["relativeTimeRange"]
        time_range = (now - datetime.timedelta(seconds=window["from"]), now - datetime.timedelta(seconds=window["to"]))
        sql = expand_macros(query["model"]["rawSql"], time_range)
        try:
            rows, columns = run_query(client, sql)
        except Exception as exc:  # pylint: disable=broad-except
            raise AssertionError("%s failed: %s\n%s" % (item["uid"], exc, sql)) from exc
        results[query["refId"]] = number_set(rows, columns)
    return evaluate(item, results)


def seeded_rules(seeded):
    _client, dataset = seeded
    return rules_file(dict(SAMPLE, mlops_bigquery_dataset=dataset))


def test_drift_rule_fires_for_the_features_drifted_in_the_latest_window(seeded):
    item = rule(seeded_rules(seeded), "mlops-drift")
    result = run_rule(seeded, item)
    assert result == {
        (("feature", "tenure_months"), ("model_name", "churn")): False,
        (("feature", "total_charges"), ("model_name", "churn")): True,
        (("feature", "monthly_charges"), ("model_name", "steady")): False,
    }
    # Days later no window is within the lookback: the drift job has stopped, which shows as No Data.
    assert run_rule(seeded, item, now=NOW + datetime.timedelta(days=5)) is None
    assert item["noDataState"] == "NoData"


def test_quality_rules_fire_above_or_below_their_thresholds(seeded):
    document = seeded_rules(seeded)
    rmse = run_rule(seeded, rule(document, "mlops-quality-rmse"))
    assert rmse == {
        (("model_alias", "all"), ("model_name", "charges"), ("model_version", "all")): True,
        (("model_alias", "challenger"), ("model_name", "charges"), ("model_version", "4")): False,
        (("model_alias", "all"), ("model_name", "good"), ("model_version", "all")): False,
    }
    accuracy = run_rule(seeded, rule(document, "mlops-quality-accuracy"))
    assert accuracy == {
        (("model_alias", "all"), ("model_name", "churn"), ("model_version", "all")): False,
        (("model_alias", "champion"), ("model_name", "churn-v2"), ("model_version", "7")): True,
    }
    # Outcomes not in yet: no data, which is normal for quality.
    assert run_rule(seeded, rule(document, "mlops-quality-rmse"), now=NOW + datetime.timedelta(days=5)) is None
    assert rule(document, "mlops-quality-rmse")["noDataState"] == "OK"


def test_volume_rule_fires_when_no_served_prediction_came_in_the_period(seeded):
    item = rule(seeded_rules(seeded), "mlops-volume")
    assert item["data"][0]["relativeTimeRange"] == {"from": 3600, "to": 0}
    assert run_rule(seeded, item) == {(): False}  # a served prediction 20 minutes ago
    # An hour later only shadow predictions are recent: they are not traffic.
    assert run_rule(seeded, item, now=NOW + datetime.timedelta(hours=1)) == {(): True}
    assert run_rule(seeded, item, now=NOW + datetime.timedelta(hours=3)) == {(): False}


def test_the_evaluator_can_tell_firing_from_not_firing():
    """The evaluator itself: a threshold the other way round flips the result (the emulator tests can fail)."""
    item = rule(rules_file(SAMPLE), "mlops-volume")
    assert evaluate(item, {"A": {(): [0]}}) == {(): True}
    assert evaluate(item, {"A": {(): [5]}}) == {(): False}
    assert evaluate(item, {"A": {}}) is None
    with pytest.raises(AssertionError, match="duplicate label set"):
        number_set([{"m": "a", "v": 1}, {"m": "a", "v": 2}], {"m": "STRING", "v": "INTEGER"})
    with pytest.raises(AssertionError, match="not a numeric table"):
        number_set([], {"m": "STRING", "v": "INTEGER", "w": "FLOAT"})
