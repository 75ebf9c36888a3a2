from pathlib import Path

import dagster as dg

from report_platform.definitions import defs


def test_the_code_location_loads_with_daily_usage_assets_and_lineage_to_billing():
    graph = defs.resolve_asset_graph()
    usage = ["voice_calls", "sms_messages", "aegis_transactions", "aegis_events", "aegis_interactions"]
    for name in usage + ["billing_line_items"]:
        node = graph.get(dg.AssetKey(name))
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
        assert node.partitions_def.timezone == "UTC"
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("billing_line_items")).parent_keys}
    assert parents == {"voice_calls", "sms_messages", "aegis_transactions"}
    assert dg.AssetKey("aegis_transactions") in graph.get(dg.AssetKey("aegis_events")).parent_keys
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("aegis_interactions")).parent_keys}
    assert parents == {"aegis_transactions", "aegis_events"}
    assert graph.get(dg.AssetKey("sms_messages")).group_name == "usage"
    assert "sms" in (graph.get(dg.AssetKey("sms_messages")).description or "").lower()


def test_the_instance_configs_are_valid():
    import yaml
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config_schema

    root = Path(__file__).resolve().parents[2]
    for path in [root / "dagster.yaml", *sorted((root / "deploy").glob("dagster*.yaml"))]:
        data = yaml.safe_load(path.read_text())
        result = validate_config(dagster_instance_config_schema(), data)
        assert result.success, (path, [e.message for e in result.errors])
