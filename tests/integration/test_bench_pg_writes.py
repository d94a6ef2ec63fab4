"""``bench.pg_cpu``'s count of rows written by table, read from PostgreSQL's statistics
(``pg_stat_user_tables``): inserts, updates, those made in place (HOT, no index written),
deletes, and each table's whole and partial indexes. PostgreSQL only: the statistics are its own."""

from __future__ import annotations

from bench.pg_cpu import table_writes, table_writes_between
from sqlalchemy.engine import make_url

from tests.support import postgres

pytestmark = postgres.postgres_only


def test_an_update_of_an_indexed_column_is_not_in_place_and_one_of_another_column_is() -> None:
    url = postgres.create_database()
    try:
        with postgres._connect(make_url(url).database) as conn:
            conn.execute(
                "CREATE TABLE items (id int PRIMARY KEY, status text, note text)"
                " WITH (fillfactor = 50)"  # room on the page, so that an update can stay in place
            )
            conn.execute("CREATE INDEX ix_items_status ON items (status)")
            conn.execute("CREATE INDEX ix_items_open ON items (id) WHERE status = 'OPEN'")
            conn.execute("SELECT pg_stat_force_next_flush()")
            before = table_writes(conn)
            conn.execute("INSERT INTO items SELECT g, 'OPEN', '' FROM generate_series(1, 4) g")
            conn.execute("UPDATE items SET note = 'seen'")  # no indexed column: in place
            conn.execute("UPDATE items SET status = 'DONE' WHERE id <= 2")  # an indexed column
            conn.execute("DELETE FROM items WHERE id = 4")
            conn.execute("SELECT pg_stat_force_next_flush()")
            after = table_writes(conn)
    finally:
        postgres.drop_database(url)
    assert before["public.items"] == (0, 0, 0, 0, 2, 1)  # the primary key and one index; one partial
    writes = table_writes_between(before, after, 2)
    assert list(writes) == ["public.items"]
    assert writes["public.items"] == {
        "inserted": 2.0,
        "updated": 3.0,
        "updated_in_place": 2.0,
        "deleted": 0.5,
        "indexes": 2,
        "partial_indexes": 1,
        "index_entries": 6.0,  # (4 inserts + 2 updates not in place) times 2 whole indexes, per 2
    }
