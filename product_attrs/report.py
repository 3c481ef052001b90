"""Print where the results of a run are and what they hold: the last step of ``make demo``."""

from __future__ import annotations

from product_attrs.settings import get_settings


def main() -> None:
    from product_attrs.warehouse.lake import LAKE, Lake, exists, reading

    s = get_settings()
    lake = Lake.from_settings(s)
    print(f"\nData root:  {s.data_dir}")
    print(f"Warehouse:  the DuckLake {lake.describe()}, data in {lake.data_path}")
    print("            (make sql: a SQL session with the lake attached read-only)")
    print(f"MLflow:     {s.mlflow_tracking_uri}   (make mlflow-ui)")
    print(f"Dagster:    {s.dagster_home}   (make ui, then http://localhost:3000)")
    if not exists(lake):
        print("The warehouse has not been written yet.")
        return
    with reading(lake) as con:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? ORDER BY 1", [LAKE]
            ).fetchall()
        ]
        print("\nTables:")
        for t in tables:
            n = con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0]
            print(f"  {t:32s} {n:>10,d} rows")
        snapshot = con.execute(f"SELECT max(snapshot_id) FROM {LAKE}.snapshots()").fetchall()[0][0]
        print(
            f"\nSnapshot {snapshot}: SELECT * FROM {LAKE}.snapshots() lists each with the run that wrote it."
        )


if __name__ == "__main__":
    main()
