"""``bench.pg_cpu``'s count of rows written by table, read from PostgreSQL's statistics
(``pg_stat_user_tables``): inserts, updates, those made in place (HOT, no index written),
deletes, and each table's whole and partial indexes. PostgreSQL only: the statistics are its own."""

from __future__ import annotations

from bench.pg_cpu import table_writes, table_writes_between, wait_for_stats
from sqlalchemy.engine import make_url

from tests.support import postgres

pytestmark = postgres.postgres_only


def test_an_update_of_an_indexed_column_is_not_in_place_and_one_of_another_column_is() -> None:
    url = postgres.create_database()
    try:
        with postgres.connect(make_url(url).database) as conn:
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


def test_a_reading_after_the_wait_counts_what_a_backend_wrote_just_before_going_idle() -> None:
    """A backend that flushed its counts less than a second before it went idle keeps the rest
    for 10 s (PostgreSQL 15): the benchmark's readings wait that long. A reading 1.2 s after the
    last write, as the benchmark took before, found one insert of the two here."""
    url = postgres.create_database()
    try:
        name = make_url(url).database
        with postgres.connect(name) as writer, postgres.connect(name) as reader:
            writer.execute("CREATE TABLE items (id int PRIMARY KEY)")
            writer.execute("INSERT INTO items VALUES (1)")
            writer.execute("SELECT pg_stat_force_next_flush()")  # flushed as the backend goes idle
            writer.execute("INSERT INTO items VALUES (2)")  # within the second after that flush
            wait_for_stats()
            inserted = table_writes(reader)["public.items"][0]
    finally:
        postgres.drop_database(url)
    assert inserted == 2
