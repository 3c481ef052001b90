"""Print where the results of a run are and what they hold: the last step of ``make demo``."""

from __future__ import annotations

from product_attrs.settings import get_settings


def main() -> None:
    import duckdb

    s = get_settings()
    print(f"\nData root:  {s.data_dir}")
    print(f"Warehouse:  {s.warehouse_path}   (open it read-only: duckdb -readonly {s.warehouse_path})")
    print(f"MLflow:     {s.mlflow_tracking_uri}   (make mlflow-ui)")
    print(f"Dagster:    {s.dagster_home}   (make ui, then http://localhost:3000)")
    if not s.warehouse_path.exists():
        print("The warehouse has not been written yet.")
        return
    with duckdb.connect(str(s.warehouse_path), read_only=True) as con:
        tables = [
            r[0]
            for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()
        ]
        print("\nTables:")
        for t in tables:
            n = con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0]
            print(f"  {t:32s} {n:>10,d} rows")


if __name__ == "__main__":
    main()
