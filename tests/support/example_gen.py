"""ImageExampleGen as the pipeline builds it, for the tests that run its driver or executor."""

from __future__ import annotations


def image_example_gen(data_dir, class_names, **settings):
    """pipeline.pipeline.image_example_gen of a DataConfig with `settings` (e.g.
    testing_percentage=20), its defaults for the others; no code fingerprint."""
    from pipeline import config as config_lib
    from pipeline.pipeline import image_example_gen as pipeline_example_gen

    data = config_lib.DataConfig(str(data_dir), tuple(class_names), **settings)
    return pipeline_example_gen(data, code_fingerprint="")
