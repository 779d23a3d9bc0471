"""Reports: report rows, the terminal table, JSON and Markdown renderers (atomic writes)."""
