"""Grafana's provisioned dashboards drawn locally, where no Grafana server can run (`make dashboards`, and
the end of `make local`):

    python -m tests.standins.dashboards render --dir .local    # writes .local/dashboards/<dashboard>.html

Every panel of every dashboard JSON in roles/grafana/files/dashboards runs its own SQL, expanded as the
BigQuery plugin does (tests/standins/grafana_queries.py, the code the dashboard tests check), against the
local BigQuery emulator, and is drawn with plotly into one static HTML page per dashboard (plotly.js inline:
the pages work offline). The JSON is the only source: a panel added there appears here without a code
change, where its gridPos puts it; a repeated panel gets one copy per value of its variable.

Read from the JSON: the time range (now-7d style; --from/--to override it), the variables (query variables
set to All, as the dashboards open), each panel's type, title, description, gridPos, repeat, interval and
maxDataPoints, its fieldConfig defaults and overrides (byName, byRegexp, byType and byFrameRefID matchers;
unit, decimals, displayName, color, thresholds and thresholdsStyle, value mappings, min, max, and the custom
draw style, line style, points, fill, stacking and cell colours) and its legend, orientation and sort
options. Panel types drawn: timeseries, barchart, stat, table, state-timeline, and rows as headings. Any
other type is listed at the top of its page and shown as a box saying so. As in Grafana, a query that
fails shows its error in its panel, and one without rows shows "No data".
"""

from __future__ import annotations

import argparse
import copy
import datetime
import html
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.standins.grafana_queries import (DashboardError, all_panels, expand, interpolate_variables,
                                            panel_instances, parse_interval_ms, resolve_variables, run_query)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "roles" / "grafana" / "files" / "dashboards"
UTC = datetime.timezone.utc
NUMERIC = ("INTEGER", "INT64", "FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC")
TIME = ("TIMESTAMP", "DATETIME", "DATE")
SUPPORTED = ("timeseries", "barchart", "stat", "table", "state-timeline")
# Grafana's grid: 24 columns, rows of 30 px with 8 px between panels; a panel's title bar.
COLUMNS, ROW_PX, GAP_PX, TITLE_PX = 24, 30, 8, 30
# The page's width; $__interval follows a panel's width in pixels, as in Grafana.
PAGE_WIDTH_PX = 1600
# The steps Grafana rounds $__interval to (its rangeutil.roundInterval), in milliseconds.
NICE_INTERVALS_MS = [1000 * seconds for seconds in (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600,
                                                    7200, 10800, 21600, 43200, 86400, 604800)]
# Grafana's named colours and its classic palette, so that a page looks like the dashboard it stands for.
NAMED_COLORS = {"red": "#F2495C", "green": "#73BF69", "blue": "#5794F2", "yellow": "#FADE2A", "orange": "#FF9830",
                "purple": "#B877D9", "text": "#464C54", "transparent": "rgba(0,0,0,0)"}
PALETTE = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9", "#705DA0", "#508642",
           "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477"]
# Grafana unit -> (d3 format, suffix) of plotly's axes and stat numbers; another unit is written after the number.
UNIT_FORMATS = {"none": ("", ""), "short": ("~s", ""), "ms": ("", " ms"), "s": ("", " s"), "percent": ("", "%"),
                "percentunit": (".1%", ""), "dateTimeAsIso": ("", "")}
LEGEND_CALCS = {"lastNotNull": "last", "last": "last", "firstNotNull": "first", "first": "first", "max": "max",
                "min": "min", "mean": "mean", "sum": "total", "count": "count"}


@dataclass
class Frame:
    """One query's result."""
    ref_id: str
    rows: list
    columns: dict  # name -> BigQuery type, in the query's order


@dataclass
class Panel:  # pylint: disable=too-many-instance-attributes
    """One panel as drawn (a repeated panel gives one per value of its variable)."""
    key: str
    id: int
    type: str
    title: str
    description: str
    x: int
    y: int
    w: int
    h: int
    status: str = "ok"  # ok, no-data, error, unsupported, or row (a heading)
    message: str = ""   # what the panel says instead of a drawing
    body: str = ""      # the drawing: a plotly div or a table
    points: int = 0     # data values drawn
    traces: int = 0     # plotly traces drawn (none for a table)
    rows: int = 0       # table rows
    figure: object = field(default=None, repr=False)  # the plotly figure: what was drawn, for tests to read


@dataclass
class Page:
    uid: str
    title: str
    path: Path
    time_range: tuple
    time_text: str = ""  # the time range as written where it comes from
    panels: list = field(default_factory=list)
    variables: dict = field(default_factory=dict)  # name -> the values "All" stands for
    error: str = ""

    @property
    def height_px(self):
        """The page's height, to size a screenshot: the grid and the header above it."""
        return max((panel.y + panel.h for panel in self.panels), default=0) * (ROW_PX + GAP_PX) + 400


# -- time range and interval -------------------------------------------------------------------------------------
def parse_time(text, now):
    """A Grafana time of the forms now, now-7d, an RFC 3339 time or epoch milliseconds."""
    text = str(text).strip()
    match = re.fullmatch(r"now(?:-(\d+(?:ms|s|m|h|d|w)))?", text)
    if match:
        return now - datetime.timedelta(milliseconds=parse_interval_ms(match.group(1))) if match.group(1) else now
    if text.isdigit():
        return datetime.datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DashboardError("time %r is not one the renderer reads (now, now-7d, an RFC 3339 time); "
                             "pass --from/--to" % text) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_interval(milliseconds):
    for unit, size in (("w", 604800000), ("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000)):
        if milliseconds % size == 0:
            return "%d%s" % (milliseconds // size, unit)
    return "%dms" % milliseconds


def panel_interval(item, time_range):
    """$__interval as Grafana computes it: the time range over the panel's data points (its width in pixels
    unless maxDataPoints says), rounded up to a step, never below the panel's minimum interval."""
    span_ms = (time_range[1] - time_range[0]).total_seconds() * 1000
    points = item.get("maxDataPoints") or max(1, round(item["gridPos"]["w"] / COLUMNS * PAGE_WIDTH_PX))
    step = next((nice for nice in NICE_INTERVALS_MS if nice >= span_ms / points), NICE_INTERVALS_MS[-1])
    if item.get("interval"):
        step = max(step, parse_interval_ms(item["interval"]))
    return format_interval(step)


# -- field configuration -----------------------------------------------------------------------------------------
def set_path(config, dotted, value):
    keys = dotted.split(".")
    for key in keys[:-1]:
        config = config.setdefault(key, {})
    config[keys[-1]] = value


def field_config(item, name, display, kind, ref_id):
    """The panel's field defaults with the overrides that match this field applied, as Grafana merges them."""
    config = copy.deepcopy(item.get("fieldConfig", {}).get("defaults", {}))
    for override in item.get("fieldConfig", {}).get("overrides", []):
        matcher, option = override["matcher"]["id"], override["matcher"].get("options")
        if matcher == "byRegexp":
            pattern = re.sub(r"^/(.*)/[a-z]*$", r"\1", option)
            matched = bool(re.search(pattern, display) or re.search(pattern, name))
        else:
            candidates = {"byName": (name, display), "byType": (kind,), "byFrameRefID": (ref_id,)}
            matched = option in candidates.get(matcher, ())
        if matched:
            for prop in override.get("properties", []):
                set_path(config, prop["id"], prop.get("value"))
    return config


def kind_of(bigquery_type):
    if bigquery_type in NUMERIC:
        return "number"
    if bigquery_type in TIME:
        return "time"
    return "boolean" if bigquery_type in ("BOOLEAN", "BOOL") else "string"


def named(color):
    return NAMED_COLORS.get(color, color)


def color_of(config, index):
    color = config.get("color", {})
    if color.get("mode") == "fixed" and color.get("fixedColor"):
        return named(color["fixedColor"])
    return PALETTE[index % len(PALETTE)]


def threshold_color(config, value):
    """The colour of the highest threshold step a number reaches (Grafana's default: green, red from 80)."""
    default = [{"color": "green", "value": None}, {"color": "red", "value": 80}]
    steps = config.get("thresholds", {}).get("steps") or default
    reached = [step for step in steps[1:] if value is not None and step.get("value") is not None
               and value >= step["value"]]
    return named((reached or steps)[-1 if reached else 0]["color"])


def mapped(config, value):
    """(text, colour) of the value mapping that matches a value, else None."""
    key = str(value).lower() if isinstance(value, bool) else str(value)  # Grafana's keys: "true", "false"
    for mapping in config.get("mappings", []):
        if mapping.get("type") == "value" and key in mapping.get("options", {}):
            result = mapping["options"][key]
            return result.get("text", str(value)), named(result.get("color"))
    return None


# -- values as text --------------------------------------------------------------------------------------------
def format_time(value):
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime.datetime) else str(value)


def format_number(value, decimals=None):
    if decimals is not None:
        return "%.*f" % (int(decimals), value)
    if not math.isfinite(value) or value == int(value):
        return "%g" % value if not math.isfinite(value) or abs(value) >= 1e15 else "%d" % value
    # about four significant digits, as Grafana's automatic decimals show
    return "%.*f" % (max(0, 3 - int(math.floor(math.log10(abs(value))))), value)


def format_value(value, config):
    """A cell or legend value with the field's unit and decimals."""
    unit, decimals = config.get("unit", "none"), config.get("decimals")
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return format_time(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if unit == "percentunit":
        return format_number(value * 100, decimals) + "%"
    if unit == "short":  # Grafana's short scale
        index = 0
        while abs(value) >= 1000 and index < 4:
            value, index = value / 1000, index + 1
        return format_number(value, decimals) + ["", " K", " Mil", " Bil", " Tri"][index]
    return format_number(value, decimals) + UNIT_FORMATS.get(unit, ("", " " + unit))[1]


def plotly_time(value):
    """Plotly shows a time as written: the dashboards' times are UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# -- time series ---------------------------------------------------------------------------------------------
@dataclass
class Series:
    name: str   # the display name, as Grafana forms it
    column: str  # the value column
    ref_id: str
    times: list = field(default_factory=list)
    values: list = field(default_factory=list)


def time_column(frame):
    if frame.columns.get("time") in TIME:
        return "time"
    return next((name for name, kind in frame.columns.items() if kind in TIME), None)


def to_series(frames):
    """Grafana's long-to-wide conversion: one series per numeric column and combination of string columns."""
    series = {}
    for frame in frames:
        time_name = time_column(frame)
        if time_name is None:
            raise DashboardError("query %s has no time column to draw over time" % frame.ref_id)
        numeric = [name for name, kind in frame.columns.items() if kind in NUMERIC]
        labels = [name for name, kind in frame.columns.items() if name != time_name and kind not in NUMERIC]
        for row in frame.rows:
            label = " ".join(str(row[name]) for name in labels if row[name] is not None)
            for column in numeric:
                name = label if label and len(numeric) == 1 else " ".join(part for part in (column, label) if part)
                entry = series.setdefault((frame.ref_id, name), Series(name, column, frame.ref_id))
                entry.times.append(row[time_name])
                entry.values.append(row[column])
    return list(series.values())


def reduce(values, calc):
    present = [value for value in values if value is not None]
    if calc == "count":
        return len(values)
    if calc in ("last", "first"):
        return values[-1 if calc == "last" else 0] if values else None
    if not present:
        return None
    return {"lastNotNull": present[-1], "firstNotNull": present[0], "max": max(present), "min": min(present),
            "mean": sum(present) / len(present), "sum": sum(present)}.get(calc)


def legend_name(name, values, config, calcs):
    """The series name with the legend's calculations (Grafana shows them as table columns)."""
    parts = ["%s %s" % (LEGEND_CALCS.get(calc, calc), format_value(reduce(values, calc), config)) for calc in calcs]
    return " · ".join([name] + parts)


def axis_format(config):
    unit = config.get("unit", "none")
    tickformat, suffix = UNIT_FORMATS.get(unit, ("", " " + unit))
    axis = {"tickformat": tickformat, "ticksuffix": suffix}
    if config.get("min") is not None or config.get("max") is not None:
        axis["range"] = [config.get("min"), config.get("max")]  # a missing end is autoscaled
    return axis


def threshold_shapes(config):
    """Horizontal lines at the threshold steps, when the field draws its thresholds (custom.thresholdsStyle)."""
    mode = config.get("custom", {}).get("thresholdsStyle", {}).get("mode", "off")
    if mode == "off":
        return []
    return [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": step["value"], "y1": step["value"],
             "line": {"color": named(step["color"]), "width": 2, "dash": "dash" if "dash" in mode else "solid"}}
            for step in config.get("thresholds", {}).get("steps", []) if step.get("value") is not None]


def line_trace(entry, config, color, name, times):
    """A plotly scatter trace drawn as the field's custom options say (Grafana's line, points and fill)."""
    custom = config.get("custom", {})
    drawn = sum(value is not None for value in entry.values)
    show_points = custom.get("showPoints", "auto")
    markers = show_points == "always" or (show_points == "auto" and drawn < 50)  # auto: where few enough to tell apart
    marker = {"color": color, "size": 7}
    if not markers and drawn == 1:
        # A line through one point is invisible: a level mark keeps the value in sight (a threshold that
        # one drift window gives reads as a short line at its height).
        markers = True
        marker = {"color": color, "size": 26, "symbol": "line-ew-open", "line": {"width": 3, "color": color}}
    dash = {"dash": "dash", "dot": "dot"}.get(custom.get("lineStyle", {}).get("fill"), "solid")
    trace = {"x": times, "y": entry.values, "name": name, "marker": marker,
             "mode": "markers" if custom.get("drawStyle") == "points" else ("lines+markers" if markers else "lines"),
             "line": {"color": color, "width": custom.get("lineWidth", 1), "dash": dash},
             "connectgaps": custom.get("spanNulls") is True}
    stacking = custom.get("stacking", {}).get("mode", "none")
    if stacking in ("normal", "percent"):
        trace.update(stackgroup=custom["stacking"].get("group", "A"),
                     groupnorm="percent" if stacking == "percent" else "")
    elif custom.get("fillOpacity", 0) > 0:
        trace.update(fill="tozeroy")
    return trace


def timeseries_figure(item, frames, interval):
    import plotly.graph_objects as go

    figure = go.Figure()
    calcs = item.get("options", {}).get("legend", {}).get("calcs", [])
    defaults = item.get("fieldConfig", {}).get("defaults", {})
    series = to_series(frames)
    # One time for every series (one bucket, one drift window): plotly can size neither a bar nor the axis
    # from gaps that do not exist, so a bar is one interval wide and the axis spans a few intervals around it.
    single_time = len({moment for entry in series for moment in entry.times}) == 1
    interval_ms = parse_interval_ms(interval)
    points = 0
    for index, entry in enumerate(series):
        drawn = sum(value is not None for value in entry.values)
        if not drawn:
            continue  # nothing to draw (a threshold the job has none for); Grafana's legend would list it empty
        points += drawn
        config = field_config(item, entry.column, entry.name, "number", entry.ref_id)
        color, name = color_of(config, index), legend_name(entry.name, entry.values, config, calcs)
        times = [plotly_time(moment) for moment in entry.times]
        if config.get("custom", {}).get("drawStyle") == "bars":
            figure.add_bar(x=times, y=entry.values, name=name, marker_color=color,
                           width=interval_ms if single_time else None,
                           opacity=max(config["custom"].get("fillOpacity", 80), 20) / 100)
        else:
            figure.add_scatter(**line_trace(entry, config, color, name, times))
    stacking = defaults.get("custom", {}).get("stacking", {}).get("mode", "none")
    figure.update_layout(barmode="stack" if stacking in ("normal", "percent") else "group",
                         barnorm="percent" if stacking == "percent" else None, shapes=threshold_shapes(defaults))
    figure.update_xaxes(type="date")
    if single_time:
        moment, span = series[0].times[0], datetime.timedelta(milliseconds=3 * interval_ms)
        figure.update_xaxes(range=[plotly_time(moment - span), plotly_time(moment + span)])
    figure.update_yaxes(**axis_format(defaults))
    return figure, points


# -- bar chart, stat, state timeline -------------------------------------------------------------------------------
def barchart_figure(item, frames):
    """One bar per row of each numeric column, over the categories of options.xField."""
    import plotly.graph_objects as go

    options = item.get("options", {})
    horizontal = options.get("orientation") == "horizontal"
    figure = go.Figure()
    points, index = 0, 0
    for frame in frames:
        x_field = options.get("xField") or next((n for n, k in frame.columns.items() if k not in NUMERIC), None)
        if x_field not in frame.columns:
            raise DashboardError("bar chart field %s is not a column of query %s" % (x_field, frame.ref_id))
        categories = [format_value(row[x_field], {}) for row in frame.rows]
        for column in [name for name, kind in frame.columns.items() if kind in NUMERIC and name != x_field]:
            config = field_config(item, column, column, "number", frame.ref_id)
            values = [row[column] for row in frame.rows]
            text = [format_value(value, config) for value in values] if options.get("showValue") == "always" else None
            figure.add_bar(x=values if horizontal else categories, y=categories if horizontal else values,
                           orientation="h" if horizontal else "v", name=config.get("displayName", column),
                           marker_color=color_of(config, index), text=text)
            points += sum(value is not None for value in values)
            index += 1
    figure.update_layout(barmode="stack" if options.get("stacking", "none") != "none" else "group")
    value_axis = figure.update_xaxes if horizontal else figure.update_yaxes
    value_axis(**axis_format(item.get("fieldConfig", {}).get("defaults", {})))
    return figure, points


def stat_figure(item, frames):
    """One big number per numeric field, reduced as reduceOptions says and coloured by its thresholds."""
    import plotly.graph_objects as go

    options = item.get("options", {})
    calc = (options.get("reduceOptions", {}).get("calcs") or ["lastNotNull"])[0]
    fields = [(frame, name) for frame in frames for name, kind in frame.columns.items() if kind in NUMERIC]
    figure = go.Figure()
    points = 0
    for index, (frame, name) in enumerate(fields):
        config = field_config(item, name, name, "number", frame.ref_id)
        value = reduce([row[name] for row in frame.rows], calc)
        tickformat, suffix = UNIT_FORMATS.get(config.get("unit", "none"), ("", " " + config.get("unit", "")))
        color = threshold_color(config, value) if options.get("colorMode", "value") == "value" else None
        title = config.get("displayName", name) if len(fields) > 1 else ""  # one number: the panel's title says it
        figure.add_indicator(mode="number", value=value, title={"text": title},
                             number={"valueformat": tickformat or ",.4~g", "suffix": suffix, "font": {"color": color}},
                             domain={"x": [index / len(fields), (index + 1) / len(fields)], "y": [0, 1]})
        points += value is not None
    return figure, points


def state_spans(item, frames, end_of_range):
    """(row, state, start, end, field config) of each state: a state lasts until the next time, the last one until
    the end of the time range; equal neighbours merge, as mergeValues does."""
    merge = item.get("options", {}).get("mergeValues", True)
    spans = []
    for frame in frames:
        time_name = time_column(frame)
        if time_name is None:
            raise DashboardError("query %s has no time column for a state timeline" % frame.ref_id)
        for column in [name for name in frame.columns if name != time_name]:
            config = field_config(item, column, column, kind_of(frame.columns[column]), frame.ref_id)
            states = [(row[time_name], row[column]) for row in frame.rows]
            for index, (start, state) in enumerate(states):
                end = states[index + 1][0] if index + 1 < len(states) else end_of_range
                if merge and spans and spans[-1][:2] == (column, state) and spans[-1][3] == start:
                    spans[-1] = (column, state, spans[-1][2], end, config)
                elif state is not None:
                    spans.append((column, state, start, end, config))
    return spans


def state_timeline_figure(item, frames, time_range):
    """Each value column as a row of coloured spans, one colour per state (its value mapping's, if any)."""
    import plotly.graph_objects as go

    spans = state_spans(item, frames, time_range[1])
    figure = go.Figure()
    for index, state in enumerate(dict.fromkeys(str(span[1]) for span in spans)):
        mine = [span for span in spans if str(span[1]) == state]
        color = (mapped(mine[0][4], mine[0][1]) or (None, None))[1] or PALETTE[index % len(PALETTE)]
        figure.add_bar(orientation="h", y=[span[0] for span in mine], base=[plotly_time(span[2]) for span in mine],
                       x=[(span[3] - span[2]).total_seconds() * 1000 for span in mine], name=state,
                       marker_color=color, text=[state] * len(mine), textposition="inside", insidetextanchor="middle")
    figure.update_layout(barmode="overlay")
    figure.update_xaxes(type="date")
    return figure, len(spans)


# -- table -------------------------------------------------------------------------------------------------------
def table_cell(config, value):
    text, color = mapped(config, value) or (format_value(value, config), None)
    cell_type = config.get("custom", {}).get("cellOptions", {}).get("type", "auto")
    if color is None and cell_type != "auto" and isinstance(value, (int, float)) and not isinstance(value, bool):
        color = threshold_color(config, value)
    style = ""
    if color and cell_type == "color-background":
        style = ' style="background:%s;color:#fff"' % color
    elif color and cell_type == "color-text":
        style = ' style="color:%s"' % color
    return "<td%s>%s</td>" % (style, html.escape(text))


def table_html(item, frames):
    """The first query's rows as Grafana's table shows them: units, decimals, value mappings, cell colours, sort."""
    frame = frames[0]
    configs = {name: field_config(item, name, name, kind_of(kind), frame.ref_id)
               for name, kind in frame.columns.items()}
    columns = [name for name in frame.columns if not configs[name].get("custom", {}).get("hidden")]
    rows = list(frame.rows)
    for sort in reversed(item.get("options", {}).get("sortBy", [])):
        name = sort.get("displayName")
        if name in frame.columns:
            rows.sort(key=lambda row, n=name: (row[n] is not None, row[n]), reverse=bool(sort.get("desc")))
    head = "".join("<th>%s</th>" % html.escape(configs[name].get("displayName", name)) for name in columns)
    body = "".join("<tr>%s</tr>" % "".join(table_cell(configs[name], row[name]) for name in columns) for row in rows)
    return '<table class="grafana-table"><thead><tr>%s</tr></thead><tbody>%s</tbody></table>' % (head, body), len(rows)


# -- panels ---------------------------------------------------------------------------------------------------
def run_frames(client, item, instance, time_range, interval):
    frames = []
    for target in [target for target in item.get("targets", []) if not target.get("hide")]:
        sql = expand(target["rawSql"], instance, time_range, interval)
        frames.append(Frame(target.get("refId", "A"), *run_query(client, sql)))
    return frames


def empty_variables(item, instance):
    """Multi-value variables that the panel's queries use and that have no value in the time range: `IN ()` is not
    SQL, and nothing to select means nothing to show."""
    sql = " ".join(target.get("rawSql", "") for target in item.get("targets", []))
    return ["$" + name for name, (value, _quoted) in instance.items()
            if isinstance(value, list) and not value and re.search(r"\$\{?%s\b|\[\[%s\b" % (name, name), sql)]


def draw(panel, item, frames, time_range, interval):
    """Give the panel its drawing, or the reason it has none."""
    if not any(frame.rows for frame in frames):
        panel.status, panel.message = "no-data", "No data"
        return
    if item["type"] == "table":
        panel.body, panel.rows = table_html(item, frames)
        panel.points = panel.rows
        return
    if item["type"] == "timeseries":
        figure, panel.points = timeseries_figure(item, frames, interval)
    elif item["type"] == "barchart":
        figure, panel.points = barchart_figure(item, frames)
    elif item["type"] == "stat":
        figure, panel.points = stat_figure(item, frames)
    else:
        figure, panel.points = state_timeline_figure(item, frames, time_range)
    if panel.points == 0:
        panel.status, panel.message = "no-data", "No data (every value is null)"
        return
    legend = item.get("options", {}).get("legend", {})
    height = panel.h * (ROW_PX + GAP_PX) - GAP_PX - TITLE_PX - 8
    figure.update_layout(
        template="plotly_white", height=height, margin={"l": 60, "r": 20, "t": 10, "b": 40},
        hovermode="x unified" if item["type"] == "timeseries" else "closest",
        showlegend=legend.get("showLegend", True) and legend.get("displayMode") != "hidden",
        # below the plot: the whole figure is the reference, so the legend never covers the axis
        legend={"orientation": "v", "x": 1.02, "y": 1} if legend.get("placement") == "right" else
        {"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0})
    panel.traces, panel.figure = len(figure.data), figure
    panel.body = figure.to_html(full_html=False, include_plotlyjs=False, div_id="plot-%s" % panel.key,
                                default_height="%dpx" % height, config={"displayModeBar": False, "responsive": True})


def panel_copies(item, variables, options, interval):
    """(key, title, gridPos, variables) of each copy of a panel, placed as Grafana places repeats: side by side
    (at most maxPerRow, default 4, a row) or one below the other (repeatDirection v)."""
    repeat, horizontal = item.get("repeat"), item.get("repeatDirection", "h") == "h"
    instances = panel_instances(item, variables, options)
    if repeat and not instances:
        instances = [dict(variables, **{repeat: ([], True)})]  # shown once, saying it has nothing to show
    grid = item["gridPos"]
    if repeat and horizontal:
        grid = dict(grid, w=max(COLUMNS // len(instances), COLUMNS // (item.get("maxPerRow") or 4)))
    copies = []
    for index, instance in enumerate(instances):
        position = dict(grid)
        if repeat and horizontal:
            per_row = max(1, COLUMNS // grid["w"])
            position.update(x=(index % per_row) * grid["w"], y=grid["y"] + (index // per_row) * grid["h"])
        elif repeat:
            position.update(y=grid["y"] + index * grid["h"])
        try:
            title = interpolate_variables(item.get("title", ""), instance, interval, quote=False)
        except DashboardError:
            title = item.get("title", "")  # Grafana leaves what it cannot replace as written
        copies.append(("%s-%d" % (item["id"], index) if repeat else str(item["id"]), title, position, instance))
    return copies


def render_panel(client, panel, item, instance, time_range):
    """Run the panel's queries and draw them; a failure is shown in the panel, as Grafana does."""
    if item["type"] == "row":
        panel.status = "row"
    elif item["type"] not in SUPPORTED:
        panel.status = "unsupported"
        panel.message = "Panel type %s is not drawn by the local renderer (it draws %s)" % (
            item["type"], ", ".join(SUPPORTED))
    elif empty_variables(item, instance):
        panel.status = "no-data"
        panel.message = "No data: no %s in the time range" % ", ".join(empty_variables(item, instance))
    else:
        interval = panel_interval(item, time_range)
        try:
            draw(panel, item, run_frames(client, item, instance, time_range, interval), time_range, interval)
        except Exception as exc:  # pylint: disable=broad-except
            panel.status, panel.message = "error", "%s: %s" % (type(exc).__name__, (str(exc).splitlines() or [""])[0])


def place(panels):
    """Grafana's grid (react-grid-layout, compacted upwards): in order of position, each panel moves up while
    the space above it is free, then down past any panel placed before it that it overlaps."""
    def overlapping(panel, placed):
        return [other for other in placed if panel.x < other.x + other.w and other.x < panel.x + panel.w
                and panel.y < other.y + other.h and other.y < panel.y + panel.h]

    placed = []
    for panel in sorted(panels, key=lambda p: (p.y, p.x)):  # stable: the JSON's order among equals
        while panel.y > 0:
            panel.y -= 1
            if overlapping(panel, placed):
                panel.y += 1
                break
        while overlapping(panel, placed):
            panel.y = max(other.y + other.h for other in overlapping(panel, placed))
        placed.append(panel)
    return placed


def render_dashboard(client, dashboard, path, dataset, time_range):
    page = Page(uid=dashboard.get("uid", path.stem), title=dashboard.get("title", path.stem), path=path,
                time_range=time_range)
    variables, options = {}, {}
    try:
        # variable queries get the interval of a full-width panel
        variables, options = resolve_variables(client, dashboard, dataset, time_range,
                                               panel_interval({"gridPos": {"w": COLUMNS}}, time_range))
    except Exception as exc:  # pylint: disable=broad-except
        page.error = "the dashboard's variables could not be resolved: %s: %s" % (
            type(exc).__name__, (str(exc).splitlines() or [""])[0])
    panels, pushes = [], []  # pushes: (row, rows): a repeat's extra copies push what starts at or below row down
    for item in all_panels(dashboard):  # a collapsed row's panels right after it: a static page shows rows open
        grid = item["gridPos"]
        if page.error:
            copies = [(str(item.get("id")), item.get("title", ""), grid, None)]
        else:
            copies = panel_copies(item, variables, options, panel_interval(item, time_range))
        shift = sum(rows for row, rows in pushes if grid["y"] >= row)
        bottom = max(position["y"] + position["h"] for _key, _title, position, _instance in copies)
        pushes.append((grid["y"] + grid["h"], bottom - grid["y"] - grid["h"]))
        for key, title, position, instance in copies:
            panel = Panel(key=key, id=item.get("id"), type=item["type"], title=title,
                          description=item.get("description", ""), x=position["x"], y=position["y"] + shift,
                          w=position["w"], h=position["h"])
            if page.error and item["type"] != "row":
                panel.status, panel.message = "error", page.error
            else:
                render_panel(client, panel, item, instance, time_range)
            panels.append(panel)
    page.panels, page.variables = place(panels), options
    return page


# -- the page ----------------------------------------------------------------------------------------------------
STYLE = """
body { font-family: Inter, Helvetica, Arial, sans-serif; margin: 0; background: #f4f5f5; color: #24292e; }
header { padding: 12px 16px; background: #fff; border-bottom: 1px solid #dce1e6; }
header h1 { font-size: 20px; margin: 0 0 4px; }
header p { margin: 2px 0; font-size: 13px; color: #57606a; }
nav a { margin-right: 12px; font-size: 13px; }
.note { margin: 8px 0 0; padding: 8px 12px; background: #fff4e5; border: 1px solid #f5b73b; font-size: 13px; }
.note.error { background: #fdecea; border-color: #e0226e; }
main { display: grid; grid-template-columns: repeat(%(columns)d, minmax(0, 1fr)); grid-auto-rows: %(row)dpx;
       gap: %(gap)dpx; padding: 8px; width: %(width)dpx; box-sizing: border-box; }
.panel { background: #fff; border: 1px solid #dce1e6; border-radius: 2px; overflow: hidden; display: flex;
         flex-direction: column; }
.panel h2 { font-size: 14px; font-weight: 500; margin: 0; padding: 6px 8px; height: %(title)dpx;
            box-sizing: border-box; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.panel .body { flex: 1; overflow: auto; padding: 0 4px 4px; }
.panel .message { display: flex; align-items: center; justify-content: center; height: 100%%; color: #6e7781; }
.panel[data-status=error] .message { color: #c4162a; font-size: 12px; padding: 8px; }
.panel[data-status=unsupported] .message { color: #8a5a00; }
.panel.row-heading { background: transparent; border: 0; }
.panel.row-heading h2 { font-size: 16px; font-weight: 600; }
table.grafana-table { border-collapse: collapse; width: 100%%; font-size: 12px; }
.grafana-table th { text-align: left; position: sticky; top: 0; background: #f7f8fa; padding: 4px 6px;
                    border-bottom: 1px solid #dce1e6; }
.grafana-table td { border-bottom: 1px solid #eef0f2; padding: 3px 6px; white-space: nowrap; }
""" % {"columns": COLUMNS, "row": ROW_PX, "gap": GAP_PX, "width": PAGE_WIDTH_PX, "title": TITLE_PX}

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%(title)s</title>
<style>%(style)s</style>
<script>%(plotly)s</script></head>
<body data-dashboard-uid="%(uid)s">
<header><h1>%(title)s</h1><p>%(description)s</p>
<p>Time range %(start)s to %(end)s UTC (%(time_text)s); %(variables)s</p>
<p>Data: %(source)s; drawn %(now)s UTC from roles/grafana/files/dashboards/%(file)s. A picture of that moment:
<code>make dashboards</code> draws it again.</p>
<nav>%(links)s</nav>%(notes)s</header>
<main>
%(panels)s
</main></body></html>
"""


def panel_section(panel):
    """The panel in its place on the grid, with what it drew as data-* attributes (for tests and the curious)."""
    attributes = {"class": "panel row-heading" if panel.status == "row" else "panel", "data-panel-key": panel.key,
                  "data-panel-id": panel.id, "data-panel-type": panel.type, "data-status": panel.status,
                  "data-points": panel.points, "data-traces": panel.traces, "data-rows": panel.rows,
                  "style": "grid-column: %d / span %d; grid-row: %d / span %d" % (
                      panel.x + 1, panel.w, panel.y + 1, panel.h)}
    opening = " ".join('%s="%s"' % (name, html.escape(str(value))) for name, value in attributes.items())
    body = panel.body if panel.status == "ok" else '<div class="message">%s</div>' % html.escape(panel.message)
    return '<section %s><h2 title="%s">%s</h2>%s</section>' % (
        opening, html.escape(panel.description), html.escape(panel.title),
        "" if panel.status == "row" else '<div class="body">%s</div>' % body)


def page_html(page, dashboard, links, source, plotly_js):
    notes = []
    if page.error:
        notes.append('<p class="note error">%s</p>' % html.escape(page.error))
    unsupported = ["%s (%s)" % (panel.title, panel.type) for panel in page.panels if panel.status == "unsupported"]
    if unsupported:
        notes.append('<p class="note">Not drawn here (panel types the local renderer does not support): %s</p>'
                     % html.escape("; ".join(unsupported)))
    variables = "; ".join("%s = All (%s)" % (name, ", ".join(values) or "none")
                          for name, values in page.variables.items())
    return PAGE % {
        "title": html.escape(page.title), "style": STYLE, "plotly": plotly_js, "uid": html.escape(page.uid),
        "description": html.escape(dashboard.get("description", "")), "start": format_time(page.time_range[0]),
        "end": format_time(page.time_range[1]), "time_text": html.escape(page.time_text),
        "variables": html.escape(variables or "no variables"), "source": html.escape(source),
        "now": format_time(datetime.datetime.now(UTC)), "file": html.escape(page.path.stem + ".json"),
        "links": "".join('<a href="%s">%s</a>' % (html.escape(href), html.escape(text)) for text, href in links),
        "notes": "".join(notes), "panels": "\n".join(panel_section(panel) for panel in page.panels)}


def dashboard_links(dashboard, others):
    """Grafana's dashboard links of type `dashboards`: (title, page) of the other dashboards with one of the tags."""
    links = []
    for link in dashboard.get("links", []):
        if link.get("type") == "dashboards":
            tags = set(link.get("tags", []))
            links += [(other["title"], page) for page, other in others
                      if other is not dashboard and (not tags or tags & set(other.get("tags", [])))]
    return list(dict.fromkeys(links))


# -- entry points --------------------------------------------------------------------------------------------------
def bigquery_client(project, endpoint):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=endpoint))


def render(out_dir, project, dataset, endpoint, time_from=None, time_to=None, source_dir=DASHBOARDS_DIR, now=None):
    """Draw every dashboard JSON of source_dir into out_dir/<its name>.html; returns the Pages."""
    import plotly.offline

    client = bigquery_client(project, endpoint)
    now = now or datetime.datetime.now(UTC)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dashboards = [(path, json.loads(path.read_text())) for path in sorted(Path(source_dir).glob("*.json"))]
    pages_of = [(path.stem + ".html", dashboard) for path, dashboard in dashboards]
    plotly_js = plotly.offline.get_plotlyjs()
    source = "BigQuery %s.%s at %s" % (project, dataset, endpoint)
    pages = []
    for path, dashboard in dashboards:
        start = time_from or dashboard.get("time", {}).get("from", "now-6h")  # Grafana's default range
        end = time_to or dashboard.get("time", {}).get("to", "now")
        page = render_dashboard(client, dashboard, out_dir / (path.stem + ".html"), dataset,
                                (parse_time(start, now), parse_time(end, now)))
        page.time_text = "%s to %s, %s" % (start, end, "as asked" if time_from or time_to else "the dashboard's")
        page.path.write_text(page_html(page, dashboard, dashboard_links(dashboard, pages_of), source, plotly_js))
        pages.append(page)
    return pages


def describe(page):
    counts = {}
    for panel in page.panels:
        if panel.status != "row":
            counts[panel.status] = counts.get(panel.status, 0) + 1
    return "%s (%s)" % (page.path, ", ".join(
        "%d %s" % (count, "with data" if status == "ok" else status) for status, count in sorted(counts.items())))


def main(argv=None):
    from tests.standins import services

    parser = argparse.ArgumentParser(prog="python -m tests.standins.dashboards",
                                     description="draw the provisioned Grafana dashboards from the BigQuery emulator")
    parser.add_argument("action", choices=["render"])
    parser.add_argument("--dir", default=".local", type=Path, help="state directory: pages go to <dir>/dashboards")
    parser.add_argument("--inventory", default=None, type=Path,
                        help="the inventory site.yml ran on (default inventories/local): project and dataset")
    parser.add_argument("--project", default=None, help="default: mlops_gcp_project of the inventory")
    parser.add_argument("--dataset", default=None, help="default: mlops_bigquery_dataset of the inventory")
    parser.add_argument("--endpoint", default=services.url_of("bigquery"), help="BigQuery emulator URL")
    parser.add_argument("--from", dest="time_from", help="start of the time range (default: each dashboard's)")
    parser.add_argument("--to", dest="time_to", help="end of the time range (default: each dashboard's)")
    args = parser.parse_args(argv)
    try:
        settings = services.local_settings(args.project, args.inventory)
    except RuntimeError as exc:
        sys.exit(str(exc))
    project, dataset = settings["project"], args.dataset or settings["dataset"]
    if not services.http_ok("%s/bigquery/v2/projects/%s/datasets" % (args.endpoint, project), timeout=5):
        sys.exit("the BigQuery emulator does not answer at %s: start the local pipeline first (make local)"
                 % args.endpoint)
    for page in render(args.dir / "dashboards", project, dataset, args.endpoint, args.time_from, args.time_to):
        print("dashboard %s: %s" % (page.title, describe(page)))
        if page.error:
            print("  " + page.error)
        for panel in page.panels:
            if panel.status in ("error", "unsupported") and panel.message != page.error:
                print("  panel %r: %s" % (panel.title, panel.message))


if __name__ == "__main__":
    main()
