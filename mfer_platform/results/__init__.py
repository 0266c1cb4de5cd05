"""From trial folders to comparisons: trial_files (what Ray left, read only), store (the Parquet tables;
``ingest`` is the one writer), checkpoints (a trial's selected model), stats (seeds, CIs, tests), cells
(numbers as text), summary (a whole sweep, read without writing)."""
