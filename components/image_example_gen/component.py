"""ImageExampleGen: a folder of labelled images (one subfolder per class) to tf.Examples.

A file-based ExampleGen whose driver (driver.py) fingerprints the photos it converts: when no photo
was added, removed or touched, the step is a cache hit and is skipped. The Examples it writes are
the TFRecords of tf.Example that ImportExampleGen would read, produced in one Beam pass.
"""

from __future__ import annotations

import json

from tfx import types
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.image_example_gen import driver, executor, images

# Our driver walks the class folders instead; Kubeflow V2, which runs TFX's own ExampleGen
# driver in a container, still fingerprints what this matches.
IMAGE_FILE_PATTERN = "*/*"


class ImageExampleGenSpec(types.ComponentSpec):
    """FileBasedExampleGen's parameters plus the classes and retrain.py's split percentages."""

    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        # JSON list of class folder names; a class's label is its index in this list.
        "class_names": ExecutionParameter(type=str),
        "testing_percentage": ExecutionParameter(type=int),
        "validation_percentage": ExecutionParameter(type=int),
        # Largest / smallest class count above which the run warns of class imbalance.
        "max_class_imbalance": ExecutionParameter(type=float),
        # Photos whose perceptual hashes differ by at most this many bits (of 256) are copies,
        # kept in one split; 0 groups byte-identical files only.
        "near_duplicate_distance": ExecutionParameter(type=int),
        # Changes with the converter's code, so that TFX's cache misses after an edit.
        "code_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        standard_component_specs.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)
    }


class ImageExampleGen(FileBasedExampleGen):
    """Converts `data_dir/<class>/<image>` to train / eval / test tf.Example splits.

    Every setting is required: their defaults live in one place, pipeline/config.py's
    DataConfig, and create_pipeline passes its values. A FileBasedExampleGen, so that Kubeflow V2
    compiles it as one (TFX's driver in a container), but its __init__ is skipped:
    FileBasedExampleGen.__init__ builds a FileBasedExampleGenSpec of its own, which has no
    place for this spec's parameters.
    """

    SPEC_CLASS = ImageExampleGenSpec
    DRIVER_CLASS = driver.Driver
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        data_dir: str,
        class_names: tuple[str, ...] | list[str],
        testing_percentage: int,
        validation_percentage: int,
        max_class_imbalance: float,
        near_duplicate_distance: int,
        code_fingerprint: str,
    ):
        input_config = example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="images", pattern=IMAGE_FILE_PATTERN)]
        )
        # The executor assigns splits itself (retrain.py's hash); these name the outputs.
        output_config = example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[
                    example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=1)
                    for name in (images.TRAIN, images.EVAL, images.TEST)
                ]
            )
        )
        spec = ImageExampleGenSpec(
            input_base=data_dir,
            input_config=input_config,
            output_config=output_config,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            class_names=json.dumps(list(class_names)),
            testing_percentage=testing_percentage,
            validation_percentage=validation_percentage,
            max_class_imbalance=max_class_imbalance,
            near_duplicate_distance=near_duplicate_distance,
            code_fingerprint=code_fingerprint,
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        # Not FileBasedExampleGen.__init__: see the class's docstring.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
