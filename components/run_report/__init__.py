"""RunReport: one self-contained HTML page per pipeline run (data, training, test results)."""
