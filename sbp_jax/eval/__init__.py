"""Benchmark evaluation: task formats (records.py), batched scoring (scorer.py),
metrics per format (tasks.py), dataset converters (convert.py, tfds_source.py),
the eval / eval_table jobs (jobs.py) and the Table 3.2 layout (report.py)."""
