
import dagster as dg

from report_platform.definitions import defs


def test_the_code_location_loads_with_daily_usage_assets_and_lineage_to_billing():
    graph = defs.resolve_asset_graph()
    usage = ["voice_calls", "sms_messages", "aegis_transactions", "aegis_events"]
    for name in usage + ["billing_line_items"]:
        node = graph.get(dg.AssetKey(name))
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
        assert node.partitions_def.timezone == "UTC"
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("billing_line_items")).parent_keys}
    assert parents == {"voice_calls", "sms_messages", "aegis_transactions"}
    assert dg.AssetKey("aegis_transactions") in graph.get(dg.AssetKey("aegis_events")).parent_keys
    assert graph.get(dg.AssetKey("sms_messages")).group_name == "usage"
    assert "sms" in (graph.get(dg.AssetKey("sms_messages")).description or "").lower()


def test_the_instance_config_is_valid():
    import yaml
    from dagster._config import validate_config
    from dagster._core.instance.config import (
        dagster_instance_config,  # noqa: F401
        dagster_instance_config_schema,
    )

    for path in ["dagster.yaml"]:
        data = yaml.safe_load(open(path))
        result = validate_config(dagster_instance_config_schema(), data)
        assert result.success, [e.message for e in result.errors]
