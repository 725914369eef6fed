"""Historical reports and call detail records, from the system of record (docs/reports.md)."""
