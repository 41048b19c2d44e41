"""The per-day stages as Spark jobs: executors compute and write Parquet files into the Delta
tables' folders, the driver commits only their file actions (one atomic commit per table).

Nothing here collects a day's rows or vectors to the driver: what comes back are file actions
(path, size, stats), counters and a five-row preview.
"""
