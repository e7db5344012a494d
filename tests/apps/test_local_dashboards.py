"""The local dashboards (`make dashboards`, tests/standins/dashboards.py) with the worked example's data, in a
real browser.

The worked example runs as `make local` runs it: site.yml on inventories/local creates the mlops tables in the
BigQuery emulator, then examples/diabetes_progression trains and registers the model in a real MLflow, serves
the held-out patients (bmi drifted on purpose), logs the predictions and runs the drift job. The renderer then
draws both provisioned dashboards with their own time range (now-7d to now), and headless Chromium (Debian's
package, /usr/bin/chromium) opens each page: in the DOM after the page's scripts ran, every panel must hold a
plot whose traces drew marks, or a table with rows. Screenshots and pages are kept in tests/output/dashboards/
(git-ignored) to look at.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest

from drift_fixtures import GRAFANA_DIR, PROJECT
from test_example import run_example, site
from tests.apps.conftest import ROOT
from tests.standins import dashboards, services
from tests.standins.grafana_queries import query_panels

pytestmark = pytest.mark.xdist_group("apps")

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=(
    "headless Chromium is not installed (/usr/bin/chromium): apt-get install -y chromium; CI's .ci/run installs it"))
ARTEFACTS = ROOT / "tests" / "output" / "dashboards"
SOURCE = GRAFANA_DIR / "dashboards"
# The example's model is a regressor: it logs no predicted class and the drift job writes no classification metric,
# so these panels have nothing to show (Grafana too says "No data" there). Every other panel must draw the example's
# data.
EMPTY_FOR_A_REGRESSOR = {"mlops-serving": {"Predicted classes"},
                         "mlops-model-health": {"Precision and recall", "Log loss"}}


# -- the browser ------------------------------------------------------------------------------------------------
def chromium(*arguments, timeout=120):
    """Headless Chromium with a fresh profile and nothing that reaches the network; its standard output."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             "--user-data-dir=" + profile, "--virtual-time-budget=20000"] + list(arguments),
            capture_output=True, timeout=timeout, check=False, env=dict(os.environ, HOME=profile))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    return proc.stdout.decode(errors="replace")


class DrawnPanels(HTMLParser):
    """What the browser drew in each panel of a page: from the DOM after the page's scripts ran."""

    def __init__(self):
        super().__init__()
        self.panels, self.current, self.in_body, self.in_number = {}, None, False, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and "data-panel-key" in attrs:
            self.current = self.panels[attrs["data-panel-key"]] = {
                "attrs": attrs, "plots": 0, "traces": 0, "marks": 0, "rows": 0, "text": []}
            return
        if self.current is None:
            return
        classes = (attrs.get("class") or "").split()
        panel = self.current
        panel["plots"] += tag == "svg" and "main-svg" in classes
        panel["traces"] += tag == "g" and "trace" in classes
        # scatter markers and lines, bars (and state spans), a stat's number
        panel["marks"] += ((tag == "path" and ("point" in classes or "js-line" in classes) and bool(attrs.get("d")))
                           or (tag == "g" and classes == ["point"]))
        self.in_number = tag == "text" and "number" in classes
        if tag == "tbody":
            self.in_body = True
        panel["rows"] += tag == "tr" and self.in_body

    def handle_data(self, data):
        if self.current is not None and data.strip():
            self.current["text"].append(data.strip())
            if self.in_number:
                self.current["marks"] += 1

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None
        elif tag == "tbody":
            self.in_body = False
        elif tag == "text":
            self.in_number = False


def open_in_browser(page, artefact_prefix=""):
    """What the browser drew in each panel of a rendered page (DrawnPanels.panels); the page and its screenshot
    are kept in tests/output/dashboards/."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = page.path.with_suffix(".png")
    chromium("--window-size=%d,%d" % (dashboards.PAGE_WIDTH_PX, page.height_px), "--screenshot=%s" % screenshot,
             page.path.as_uri())
    assert screenshot.stat().st_size > 10000, "the screenshot of %s is empty" % page.path.name
    for artefact in (screenshot, page.path):
        shutil.copyfile(artefact, ARTEFACTS / (artefact_prefix + artefact.name))
    parser = DrawnPanels()
    parser.feed(chromium("--dump-dom", page.path.as_uri()))
    return parser.panels


def empty_panels(page, drawn):
    """Titles of the panels that drew nothing; fails on a panel missing from the DOM or drawn short of its data."""
    empty = set()
    for panel in page.panels:
        found = drawn.get(panel.key)
        assert found, "panel %r is not on %s" % (panel.title, page.path.name)
        assert found["attrs"]["data-status"] == panel.status
        if panel.status != "ok":
            empty.add(panel.title)
        elif panel.type == "table":
            assert found["rows"] == panel.rows > 0, "%r shows %d rows of %d" % (panel.title, found["rows"], panel.rows)
        else:
            assert found["plots"] >= 1 and found["traces"] == panel.traces > 0, (panel.title, found)
            assert found["marks"] > 0, "%r has an empty chart" % panel.title
    return empty


# -- the worked example's data ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def example(mlflow_server, bigquery_emulator, storage_emulator, tmp_path_factory):
    """The dataset `make local` fills: site.yml's tables and one run of the worked example; (dataset, its summary)."""
    unique = uuid.uuid4().hex[:8]
    dataset = "dashboards_%s" % unique
    site(bigquery_emulator, storage_emulator, dataset, "dashboards-%s" % unique)
    _stdout, summary = run_example(mlflow_server.url, bigquery_emulator, dataset, "diabetes-%s" % unique,
                                   tmp_path_factory.mktemp("example") / "summary.json")
    return dataset, summary


@pytest.fixture(scope="module")
def pages(example, bigquery_emulator, tmp_path_factory):
    dataset, _summary = example
    return dashboards.render(tmp_path_factory.mktemp("dashboards"), PROJECT, dataset, bigquery_emulator)


def by_title(page):
    return {panel.title: panel for panel in page.panels}


def test_every_panel_draws_the_worked_example(pages, example):
    _dataset, summary = example
    assert [page.path.name for page in pages] == sorted(path.stem + ".html" for path in SOURCE.glob("*.json"))
    for page in pages:
        assert not page.error, page.error
        dashboard = json.loads((SOURCE / page.path.name.replace(".html", ".json")).read_text())
        assert {panel.id for panel in page.panels} == {item["id"] for item in query_panels(dashboard)}
        for panel in page.panels:
            if panel.title in EMPTY_FOR_A_REGRESSOR[page.uid]:
                assert panel.status == "no-data" and panel.points == 0, (panel.title, panel.status, panel.message)
            else:
                assert panel.status == "ok" and panel.points > 0, (panel.title, panel.status, panel.message)
    for page in pages:  # laid out as Grafana's grid: no panel covers another
        cells = [(panel.x + column, panel.y + row) for panel in page.panels
                 for column in range(panel.w) for row in range(panel.h)]
        assert len(cells) == len(set(cells)), page.title
    serving, health = (by_title(page) for page in sorted(pages, key=lambda page: page.uid != "mlops-serving"))
    # the example's predictions, all of them, in the last 7 days
    volume = serving["Prediction volume"].figure.data
    assert sum(sum(trace.y) for trace in volume) == summary["predictions"]["in_bigquery"] > 0
    # one drift panel per feature of the example, and bmi, drifted on purpose, above both its thresholds
    drift = {title for title in health if title.startswith("Drift of ")}
    assert drift == {"Drift of %s against its threshold" % name for name in summary["features"]}
    assert health["Mean shift"].y >= max(health[title].y + health[title].h for title in drift)  # pushed below
    traces = {}
    for trace in health["Drift of bmi against its threshold"].figure.data:
        words = trace.name.split(" · ")[0].split()  # "<column> <model> <metric>", then the legend's numbers
        traces[words[0], words[-1]] = trace
    for metric in ("psi", "ks"):
        value, threshold = traces["value", metric].y[-1], traces["threshold", metric].y[-1]
        assert value > threshold == summary["thresholds"][metric], (metric, value, threshold)
        assert value == pytest.approx(summary["features"]["bmi"][metric])


@needs_chromium
def test_the_pages_show_every_panel_in_a_browser(pages):
    for page in pages:
        drawn = open_in_browser(page)
        expected = EMPTY_FOR_A_REGRESSOR[page.uid]
        assert empty_panels(page, drawn) == expected
        for title in expected:
            (key,) = [panel.key for panel in page.panels if panel.title == title]
            assert "No data" in drawn[key]["text"]


@needs_chromium
def test_a_panel_added_to_the_json_is_drawn_and_an_unknown_type_listed(example, bigquery_emulator, tmp_path):
    """A stat panel with thresholds and a time series drawing its threshold line, added to a copy of a provisioned
    dashboard, appear without a code change; a panel type the renderer does not know is said, not dropped."""
    dataset, summary = example
    source = tmp_path / "source"
    source.mkdir()
    dashboard = json.loads((SOURCE / "mlops-serving.json").read_text())
    template = copy.deepcopy(dashboard["panels"][0])  # "Prediction volume": a time series of the predictions
    stat = dict(copy.deepcopy(template), id=101, type="stat", title="Predictions in range", options={},
                gridPos={"x": 0, "y": 40, "w": 6, "h": 5},
                fieldConfig={"defaults": {"unit": "short", "thresholds": {"mode": "absolute", "steps": [
                    {"color": "green", "value": None}, {"color": "red", "value": 1}]}}, "overrides": []})
    stat["targets"] = [dict(template["targets"][0], format=1, rawSql=(
        "SELECT COUNT(*) AS predictions FROM `${dataset}.predictions` WHERE $__timeFilter(timestamp)"))]
    latency = dict(copy.deepcopy(dashboard["panels"][1]), id=102, title="Latency against its objective",
                   gridPos={"x": 6, "y": 40, "w": 12, "h": 8})
    latency["fieldConfig"]["defaults"].update(thresholds={"mode": "absolute", "steps": [
        {"color": "green", "value": None}, {"color": "red", "value": 250}]})
    latency["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] = {"mode": "dashed"}
    pie = dict(copy.deepcopy(template), id=103, type="piechart", title="Share of versions",
               gridPos={"x": 18, "y": 40, "w": 6, "h": 5})
    dashboard["panels"] += [stat, latency, pie]
    (source / "mlops-serving.json").write_text(json.dumps(dashboard))

    (page,) = dashboards.render(tmp_path / "out", PROJECT, dataset, bigquery_emulator, source_dir=source)
    drawn_stat, drawn_latency, unknown = (by_title(page)[item["title"]] for item in (stat, latency, pie))
    assert drawn_stat.status == "ok" and drawn_stat.figure.data[0].value == summary["predictions"]["in_bigquery"]
    assert drawn_stat.figure.data[0].number.font.color == dashboards.NAMED_COLORS["red"]  # over the threshold at 1
    assert [shape.y0 for shape in drawn_latency.figure.layout.shapes] == [250]
    assert unknown.status == "unsupported"

    drawn = open_in_browser(page, artefact_prefix="added-panels-")
    assert empty_panels(page, drawn) == EMPTY_FOR_A_REGRESSOR["mlops-serving"] | {"Share of versions"}
    assert str(summary["predictions"]["in_bigquery"]) in drawn[drawn_stat.key]["text"]
    assert any("piechart" in text for text in drawn[unknown.key]["text"])
    assert "Share of versions (piechart)" in page.path.read_text()  # in the list at the top of the page


# -- without the services ----------------------------------------------------------------------------------------------
def test_layout_interval_and_time_range_follow_grafana():
    # as Grafana's grid: a panel overlapping one before it (a repeated panel's copy) goes below it, and panels
    # move up into free space
    panels = [dashboards.Panel(key=key, id=1, type="timeseries", title=key, description="", x=x, y=y, w=12, h=8)
              for key, x, y in (("copy-0", 0, 9), ("copy-1", 12, 9), ("copy-2", 0, 17), ("below", 0, 17),
                                ("beside", 12, 40))]
    assert [(panel.title, panel.y) for panel in dashboards.place(panels)] == [
        ("copy-0", 0), ("copy-1", 0), ("copy-2", 8), ("below", 16), ("beside", 8)]
    now = dashboards.parse_time("2026-02-03T06:00:00Z", None)
    week = (dashboards.parse_time("now-7d", now), dashboards.parse_time("now", now))
    assert week[1] - week[0] == datetime.timedelta(days=7)
    # 7 days over a half-width panel (800 px): 756 s per point, rounded up to Grafana's 15m step
    assert dashboards.panel_interval({"gridPos": {"w": 12}}, week) == "15m"
    assert dashboards.panel_interval({"gridPos": {"w": 12}, "interval": "1h"}, week) == "1h"
    with pytest.raises(dashboards.DashboardError, match="--from/--to"):
        dashboards.parse_time("now/d", now)


def test_the_browser_check_fails_on_an_empty_chart_or_a_missing_panel(tmp_path):
    """The DOM checks above can fail: a plot without marks, a table without rows, a panel not on the page."""
    def page_with(*panels):
        return dashboards.Page(uid="u", title="t", path=tmp_path / "t.html", time_range=(), panels=list(panels))

    chart = dashboards.Panel(key="1", id=1, type="timeseries", title="chart", description="", x=0, y=0, w=12, h=8,
                             traces=1, points=3)
    table = dashboards.Panel(key="2", id=2, type="table", title="table", description="", x=12, y=0, w=12, h=8,
                             rows=2, points=2)
    drawn = DrawnPanels()
    drawn.feed('<section data-panel-key="1" data-status="ok"><svg class="main-svg"><g class="trace scatter">'
               '<path class="js-line" d=""></path></g></svg></section>'
               '<section data-panel-key="2" data-status="ok"><table><thead><tr><th>a</th></tr></thead>'
               '<tbody><tr><td>1</td></tr><tr><td>2</td></tr></tbody></table></section>')
    assert drawn.panels["1"]["traces"] == 1 and drawn.panels["2"]["rows"] == 2
    with pytest.raises(AssertionError, match="empty chart"):
        empty_panels(page_with(chart), drawn.panels)
    assert empty_panels(page_with(table), drawn.panels) == set()
    with pytest.raises(AssertionError, match="shows 2 rows of 3"):
        empty_panels(page_with(dataclasses.replace(table, rows=3)), drawn.panels)
    with pytest.raises(AssertionError, match="is not on"):
        empty_panels(page_with(dataclasses.replace(table, key="3")), drawn.panels)


def test_the_summary_ends_with_the_pages(tmp_path):
    assert "none drawn yet" in services.summary_dashboards(tmp_path)
    (tmp_path / "dashboards").mkdir()
    for name in ("mlops-serving.html", "mlops-model-health.html"):
        (tmp_path / "dashboards" / name).write_text("<html></html>")
    line = services.summary_dashboards(tmp_path)
    assert line.endswith("%s %s" % (tmp_path.resolve() / "dashboards" / "mlops-model-health.html",
                                    tmp_path.resolve() / "dashboards" / "mlops-serving.html"))
