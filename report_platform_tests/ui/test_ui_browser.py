"""The Dagster UI of the live deployment in headless Chromium: what a person sees on the
Automation, Lineage and backfill pages. Screenshots go to the test's tmp_path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from report_platform_tests.ui.conftest import Launched
from report_platform_tests.ui.live import LivePlatform, wait_until

pytestmark = [pytest.mark.timeout(900)]  # the first test of a worker also starts the live instance

USAGE_ASSETS = ("voice_calls", "sms_messages", "aegis_transactions", "aegis_events", "aegis_interactions")
EXPORT_ASSETS = ("voice_usage_export", "sms_usage_export", "aegis_interaction_export", "billing_export")
# The usage assets each export reads (billing_export reads the collapsed `billing` group).
FEEDS = {
    "voice_usage_export": ("voice_calls",),
    "sms_usage_export": ("sms_messages",),
    "aegis_interaction_export": ("aegis_transactions", "aegis_events", "aegis_interactions"),
}

# Screen positions of a node box (the card around an asset's name) and of every edge's two ends.
NODE_BOX_JS = """name => {
  const label = Array.from(document.querySelectorAll('foreignObject div'))
    .find(e => e.childElementCount === 0 && e.textContent.trim() === name);
  if (!label) return null;
  const box = (label.closest('[class*="assetNodeBox"]') || label.closest('foreignObject')).getBoundingClientRect();
  return {left: box.left, right: box.right, top: box.top, bottom: box.bottom};
}"""
EDGE_ENDS_JS = """() => Array.from(document.querySelectorAll('svg path'))
  .filter(p => p.closest('marker') === null && getComputedStyle(p).stroke !== 'none' && p.getTotalLength() > 0)
  .map(p => {
    const m = p.getScreenCTM();
    const a = p.getPointAtLength(0).matrixTransform(m);
    const b = p.getPointAtLength(p.getTotalLength()).matrixTransform(m);
    return {x1: a.x, y1: a.y, x2: b.x, y2: b.y};
  })"""


def open_ui(page: Any, live: LivePlatform, path: str) -> None:
    """Open a page of the UI once its navigation has rendered.

    The "Join the Dagster community" dialog, when it shows, is closed with "Skip" by the
    handler the `page` fixture registers (before every assertion and action)."""
    page.goto(live.url + path, wait_until="domcontentloaded")
    expect(page.get_by_role("link", name="Automation").first).to_be_visible(timeout=60_000)


def joins(edge: dict[str, float], source: dict[str, float], target: dict[str, float]) -> bool:
    """Whether `edge` leaves the right side of the `source` box and enters the left of `target`."""
    starts = abs(edge["x1"] - source["right"]) < 6 and source["top"] <= edge["y1"] <= source["bottom"]
    ends = abs(edge["x2"] - target["left"]) < 16 and target["top"] <= edge["y2"] <= target["bottom"]
    return starts and ends


def visible_text(page: Any, text: str, timeout: float = 30_000) -> Any:
    """The first visible element whose whole text is `text` (fails if none appears)."""
    locator = page.get_by_text(text, exact=True).locator("visible=true").first
    expect(locator).to_be_visible(timeout=timeout)
    return locator


def test_automation_page_lists_the_schedule_of_each_reports_timing(
    page: Any, live_platform: LivePlatform, launched: Launched, tmp_path: Path
) -> None:
    late_id = launched.late_report.result().stdout.strip()
    report_ids = [*live_platform.report_ids.values(), late_id]
    wait_until(
        lambda: live_platform.schedule_of(late_id) in live_platform.schedule_names(),
        60,
        "the late report's schedule loads",
    )
    open_ui(page, live_platform, "/automation")
    visible_text(page, "report_platform")  # the code location's section
    for report_id in report_ids:
        visible_text(page, live_platform.schedule_of(report_id))
    visible_text(page, "report_registry_sensor")
    visible_text(page, "report_run_failure_sensor")
    # Each schedule row says when it fires, in the report's own timezone (New York: EST/EDT).
    sms_id = live_platform.report_ids["sms_email"]
    hour = int(live_platform.definitions["sms_email"]["schedule"]["time_of_day"][:2])
    when = f"{(hour - 1) % 12 + 1:02d}:00 {'AM' if hour < 12 else 'PM'} E[SD]T"
    row = re.compile(rf"{live_platform.schedule_of(sms_id)}\s+Scheduled At {when}\n")
    wait_until(lambda: row.search(page.inner_text("body")), 30, f"the Automation page shows {row.pattern!r}")
    page.screenshot(path=tmp_path / "automation.png", full_page=True)


def test_lineage_page_draws_usage_assets_feeding_the_report_exports(
    page: Any, live_platform: LivePlatform, tmp_path: Path
) -> None:
    # The global lineage graph is zoomed to fit its width, and below a scale of 0.6 Dagster draws
    # minimal nodes whose names are cut to 18 characters ("aegis_inte…_export"). With the usage
    # group three assets deep (aegis_transactions, aegis_events, aegis_interactions) the graph
    # scales to 0.59 in a 1600 px wide window; 1920 px draws it at 0.77 with every name whole,
    # and 1440 px high holds all of it at that scale.
    page.set_viewport_size({"width": 1920, "height": 1440})
    # The graph starts with groups collapsed; open `usage` and `reports`.
    expanded = ",".join(f"global@global:{group}" for group in ("usage", "reports"))
    open_ui(page, live_platform, f"/asset-groups?expanded={quote(expanded)}")
    visible_text(page, "Global asset lineage")
    for asset in (*USAGE_ASSETS, *EXPORT_ASSETS):
        visible_text(page, asset)
    page.wait_for_timeout(1000)  # edges are laid out after the nodes
    page.screenshot(path=tmp_path / "lineage.png")

    size = page.viewport_size
    boxes = {asset: page.evaluate(NODE_BOX_JS, asset) for asset in (*USAGE_ASSETS, *EXPORT_ASSETS)}
    for asset, box in boxes.items():  # on screen, not merely in the DOM
        assert box, asset
        assert 0 <= box["left"] < box["right"] <= size["width"], (asset, box)
        assert 0 <= box["top"] < box["bottom"] <= size["height"], (asset, box)

    edges = page.evaluate(EDGE_ENDS_JS)
    for export, sources in FEEDS.items():
        target = boxes[export]
        for name in sources:
            source = boxes[name]
            assert source["right"] < target["left"], (name, export)  # upstream drawn left of downstream
            assert any(joins(e, source, target) for e in edges), f"no edge {name} -> {export} among {edges}"


@pytest.mark.parametrize("export", ["voice_usage_export", "aegis_interaction_export"])
def test_asset_lineage_tab_of_an_export_shows_its_usage_sources(
    page: Any, live_platform: LivePlatform, tmp_path: Path, export: str
) -> None:
    open_ui(page, live_platform, f"/assets/{export}?view=lineage")
    for name in FEEDS[export]:
        visible_text(page, name)
    visible_text(page, "usage")
    visible_text(page, "reports")
    page.wait_for_timeout(1000)
    page.screenshot(path=tmp_path / f"{export}_lineage.png")
    target = page.evaluate(NODE_BOX_JS, export)
    edges = page.evaluate(EDGE_ENDS_JS)
    for name in FEEDS[export]:
        source = page.evaluate(NODE_BOX_JS, name)
        assert source and target, (name, export)
        assert any(joins(e, source, target) for e in edges), f"no edge {name} -> {export} among {edges}"


def test_backfill_page_shows_the_cli_backfill_and_its_partitions(
    page: Any, live_platform: LivePlatform, launched: Launched, tmp_path: Path
) -> None:
    answer = launched.backfill.json()
    backfill_id = answer["backfill_id"]
    report_id = live_platform.report_ids["sms_email"]

    def done() -> bool:
        query = (
            "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"
        )
        status = live_platform.graphql(query, {"id": backfill_id})["partitionBackfillOrError"]["status"]
        return status.startswith("COMPLETED") or status in ("FAILED", "CANCELED")

    wait_until(done, 300, f"backfill {backfill_id} finishes", every=3)
    open_ui(page, live_platform, f"/runs/b/{backfill_id}")
    visible_text(page, "Succeeded")
    visible_text(page, "100% completed")
    visible_text(page, "sms_usage_export")
    for day in answer["dates"]:
        visible_text(page, f"{day}|{report_id}")  # the partition keys: date x report
    page.screenshot(path=tmp_path / "backfill.png", full_page=True)

    open_ui(page, live_platform, "/runs?view=backfills")
    visible_text(page, backfill_id)
    visible_text(page, "report_platform/trigger: backfill")
