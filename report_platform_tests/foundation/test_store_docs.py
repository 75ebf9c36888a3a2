from pathlib import Path

from report_platform.store.duck import reader
from report_platform.store.schema import TABLES, markdown, sql_type

DOCS = Path(__file__).resolve().parents[2] / "docs" / "store.md"


def test_store_reference_is_current():
    assert DOCS.read_text() == markdown(), "regenerate docs/store.md from report_platform.store.schema.markdown()"


def test_every_view_has_the_documented_columns_and_types_even_when_empty(home):
    con = reader(home.store)
    for table in TABLES:
        described = con.execute(f"describe {table.name}").fetchall()
        assert [(r[0], r[1]) for r in described] == [(c.name, sql_type(c.dtype)) for c in table.columns]
