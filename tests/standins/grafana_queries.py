"""What Grafana and its Google BigQuery datasource plugin do to a dashboard's SQL before BigQuery runs it.

Shared by the dashboard tests (tests/apps/test_grafana_dashboards.py, which run every panel's query on the
emulator) and the local renderer (tests/standins/dashboards.py, which draws the panels from the same
queries), so what the tests check is what a local user sees:

1. Grafana's frontend replaces dashboard variables ($name, ${name}, [[name]]) before the query leaves the
   browser, with the plugin's interpolateVariable rule: a value of a multi-value or include-All variable
   is quoted as a SQL string literal ('a', with ' doubled) and several values are joined with commas;
   a single-value variable is inserted as it is. "All" (no custom all value) means every option the
   variable's query returned. $__interval becomes the interval text ("1h"), $__interval_ms its
   milliseconds. A panel repeated over a variable gets one value of it per copy.
2. The plugin backend (grafana/sqlds macros plus the plugin's own) expands, with the panel's time range:
   $__timeFilter(col) -> col >= 'FROM' AND col <= 'TO' (RFC 3339, UTC, whole seconds);
   $__timeFrom(col) -> col >= 'FROM'; $__timeTo(col) -> col <= 'TO';
   $__timeGroup(col, 1h) -> TIMESTAMP_MILLIS(DIV(UNIX_MILLIS(col), 3600000) * 3600000).
   A macro's arguments end at the first ")", as in the plugin's regular expression, so macro arguments
   must not contain parentheses; an unknown macro is an error (BigQuery would reject it).
3. The query runs with the datasource's default project as the job project, so `${dataset}.table`
   resolves to the dataset of the client's project.

Anything this module does not expand raises DashboardError instead of sending BigQuery a query Grafana
would not have sent.
"""

from __future__ import annotations

import datetime
import re

# Grafana's interval units ("1M" months and "1y" years have no fixed length and are not used here).
INTERVAL_UNITS_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000, "w": 604800000}


class DashboardError(ValueError):
    """A dashboard uses something Grafana or the plugin would expand differently from this module."""


def all_panels(dashboard):
    for item in dashboard["panels"]:
        yield item
        yield from item.get("panels", [])  # panels inside a collapsed row


def query_panels(dashboard):
    return [item for item in all_panels(dashboard) if item["type"] != "row"]


def quote_literal(value):
    return "'" + str(value).replace("'", "''") + "'"


def parse_interval_ms(text):
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip().strip("'\""))
    if not match:
        raise DashboardError("interval %r is not one this module expands (month intervals are not used)" % text)
    return int(match.group(1)) * INTERVAL_UNITS_MS[match.group(2)]


def interpolate_variables(sql, variables, interval, quote=True):
    """Grafana frontend: dashboard variables and $__interval, as the plugin's interpolateVariable does.

    variables maps a name to (value, quoted): a list is a multi-value selection. With quote=False the text
    is for people (a panel title): values as they are, several joined with " + " as Grafana shows them.
    """
    interval_ms = parse_interval_ms(interval)

    def replace(match):
        name = match.group(1) or match.group(2) or match.group(4)
        if match.group(3) or match.group(5):
            raise DashboardError("variable format %s is not expanded by this module" % match.group(0))
        if name == "__interval":
            return interval
        if name == "__interval_ms":
            return str(interval_ms)
        if name.startswith("__"):
            return match.group(0)  # a backend macro
        if name not in variables:
            raise DashboardError("unknown variable %s in %r" % (match.group(0), sql))
        value, quoted = variables[name]
        if not quote:
            return " + ".join(str(item) for item in value) if isinstance(value, (list, tuple)) else str(value)
        if isinstance(value, (list, tuple)):
            return ",".join(quote_literal(item) for item in value)
        return quote_literal(value) if quoted else str(value)

    pattern = r"\$(\w+)|\$\{(\w+)(?::([^}]+))?\}|\[\[(\w+)(?::([^\]]+))?\]\]"
    return re.sub(pattern, replace, sql)


def expand_macros(sql, time_range):
    """The plugin backend's macros ($__timeFilter, $__timeFrom, $__timeTo, $__timeGroup)."""
    start, end = (moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") for moment in time_range)

    def replace(match):
        name, args = match.group(1), [arg.strip() for arg in (match.group(2) or "").split(",")]
        if name == "timeFilter":
            if len(args) != 1 or not args[0]:
                raise DashboardError("$__timeFilter takes one column: %s" % match.group(0))
            return "%s >= '%s' AND %s <= '%s'" % (args[0], start, args[0], end)
        if name == "timeFrom":
            return "%s >= '%s'" % (args[0], start)
        if name == "timeTo":
            return "%s <= '%s'" % (args[0], end)
        if name == "timeGroup":
            if len(args) < 2 or not args[0]:
                raise DashboardError("$__timeGroup needs a column and an interval: %s" % match.group(0))
            milliseconds = parse_interval_ms(args[1])
            return "TIMESTAMP_MILLIS(DIV(UNIX_MILLIS(%s), %d) * %d)" % (args[0], milliseconds, milliseconds)
        raise DashboardError("macro %s is not one the BigQuery plugin expands" % match.group(0))

    expanded = re.sub(r"\$__(\w+)(?:\((.*?)\))?", replace, sql)
    if "$" in expanded:
        raise DashboardError("unexpanded variable or macro left in:\n%s" % expanded)
    return expanded


def expand(sql, variables, time_range, interval):
    """The SQL BigQuery receives for a panel query: frontend interpolation, then the backend's macros."""
    return expand_macros(interpolate_variables(sql, variables, interval), time_range)


def run_query(client, sql, timeout=60):
    """Rows (as dicts) and {column: BigQuery type} of a query; no retries, so a failure shows at once."""
    job = client.query(sql, retry=None, job_retry=None, timeout=timeout)
    result = job.result(retry=None, timeout=timeout)
    return [dict(row.items()) for row in result], {field.name: field.field_type for field in result.schema}


def resolve_variables(client, dashboard, dataset, time_range, interval):
    """({name: (value, quoted)}, {name: options}) as Grafana sets them when the dashboard opens: the dataset
    constant to the given dataset (what the Grafana image's start script writes), every query variable to
    All, i.e. every value its query returns in the time range (an empty list when it returns none)."""
    variables, options = {}, {}
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        if variable["type"] == "constant":
            variables[name] = (dataset if name == "dataset" else variable["query"], False)
        elif variable["type"] == "query":
            rows, columns = run_query(client, expand(variable["query"]["rawSql"], variables, time_range, interval))
            first = next(iter(columns))
            if columns[first] != "STRING":
                raise DashboardError("variable %s: first column %s is %s, not STRING" % (name, first, columns[first]))
            values = sorted({row[first] for row in rows if row[first] is not None})
            options[name] = values
            quoted = variable.get("multi") or variable.get("includeAll")
            variables[name] = (values if quoted else (values[0] if values else ""), bool(quoted))
        else:
            raise DashboardError("variable type %s is not expanded by this module" % variable["type"])
    return variables, options


def panel_instances(item, variables, options):
    """The variable sets of each copy of a panel: one per value of its repeat variable, else one."""
    repeat = item.get("repeat")
    if not repeat:
        return [variables]
    return [dict(variables, **{repeat: ([value], True)}) for value in options[repeat]]
