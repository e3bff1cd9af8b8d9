"""The one typed configuration object of a tfx-poets pipeline.

`PipelineConfig` holds every setting. It is filled from flags or the environment by
`pipeline.cli`, and read only by `create_pipeline` (which hands each component the part it
needs, e.g. `TrainingConfig` as the Trainer's `custom_config`). Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import os
import re

# The Trainer's part of the config lives with the module code that parses it back.
from models.training_config import ConfigError, TrainingConfig  # noqa: F401

# The codelab's --architecture names: mobilenet_<width>_<resolution>.
ARCHITECTURE_PATTERN = re.compile(r"^mobilenet_(1\.0|0\.75|0\.50|0\.25)_(224|192|160|128)$")
DEFAULT_ARCHITECTURE = "mobilenet_0.50_224"
TFHUB_HANDLE_TEMPLATE = (
    "https://tfhub.dev/google/imagenet/mobilenet_v1_{width}_{resolution}/feature_vector/5"
)
# Kubeflow's rule for pipeline names; applied everywhere so a pipeline ports unchanged.
PIPELINE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
FLOWER_PHOTOS_URL = "https://download.tensorflow.org/example_images/flower_photos.tgz"

# Where the Transform and Trainer find their user code; overridable to plug in other modules.
DEFAULT_PREPROCESSING_FN = "models.transform_module.preprocessing_fn"
DEFAULT_RUN_FN = "models.trainer_module.run_fn"
DEFAULT_FINE_TUNE_FN = "models.trainer_module.fine_tune_fn"

# ImageExampleGen's near-duplicates: at most this many bits of the 256-bit perceptual hash
# apart. Chosen on the shared photos and generated copies (BENCHMARKS.md, "Near-duplicates"):
# resized, recompressed and re-toned copies are within 32 bits, 98 % of copies cropped by 3 %
# a side within 64; other framings of one scene, and the nearest different photos of the
# shared set, are 70 and more apart. Over half the bits, unrelated photos would match.
DEFAULT_NEAR_DUPLICATE_DISTANCE = 64
MAX_NEAR_DUPLICATE_DISTANCE = 128
# Where a pipeline writes its artifacts, metadata.db and serving_model/ unless told otherwise;
# also where tools/ look first.
DEFAULT_PIPELINE_ROOT = "tfx_poets_output"


def defaults_of(config_class) -> dict:
    """The defaults of a config dataclass's fields: the one place each setting's default is
    written (the command line's flags show and use these)."""
    return {
        field.name: field.default
        for field in dataclasses.fields(config_class)
        if field.default is not dataclasses.MISSING
    }


def parse_architecture(architecture: str) -> tuple[str, int]:
    """Returns (width multiplier, resolution) of a codelab architecture name."""
    match = ARCHITECTURE_PATTERN.match(architecture)
    if not match:
        raise ConfigError(
            f"--architecture {architecture!r} is not one of mobilenet_<1.0|0.75|0.50|0.25>_"
            "<224|192|160|128>, e.g. mobilenet_0.50_224"
        )
    return match.group(1), int(match.group(2))


def architecture_to_hub_handle(architecture: str) -> str:
    """Maps e.g. mobilenet_0.50_224 to the TF Hub MobileNet V1 feature-vector handle."""
    width, resolution = parse_architecture(architecture)
    width_code = {"1.0": "100", "0.75": "075", "0.50": "050", "0.25": "025"}[width]
    return TFHUB_HANDLE_TEMPLATE.format(width=width_code, resolution=resolution)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which photos, which classes, and how they are split (retrain.py's stable hash split)."""

    data_dir: str
    class_names: tuple[str, ...]
    testing_percentage: int = 10
    validation_percentage: int = 10
    # Largest / smallest class above which the run warns (and training weights the classes).
    max_class_imbalance: float = 3.0
    # Photos whose perceptual hashes (256 bits) differ by at most this many bits are copies of
    # one photo, kept in one split (BENCHMARKS.md, "Near-duplicates"); 0: byte-identical only.
    near_duplicate_distance: int = DEFAULT_NEAR_DUPLICATE_DISTANCE

    def __post_init__(self):
        if not 0 <= self.near_duplicate_distance <= MAX_NEAR_DUPLICATE_DISTANCE:
            raise ConfigError(
                f"--near-duplicate-distance must be in [0, {MAX_NEAR_DUPLICATE_DISTANCE}] bits "
                f"(0: identical files only), got {self.near_duplicate_distance}"
            )
        if self.max_class_imbalance < 1:
            raise ConfigError(
                f"--max-class-imbalance must be at least 1, got {self.max_class_imbalance}"
            )
        if len(self.class_names) < 2:
            raise ConfigError(f"need at least two classes, got {list(self.class_names)}")
        for flag, value in (
            ("--testing-percentage", self.testing_percentage),
            ("--validation-percentage", self.validation_percentage),
        ):
            if not 0 <= value < 100:
                raise ConfigError(f"{flag} must be in [0, 100), got {value}")
        if self.testing_percentage + self.validation_percentage >= 100:
            raise ConfigError("--testing-percentage plus --validation-percentage must be below 100")
        if self.validation_percentage == 0:
            raise ConfigError("--validation-percentage must be above 0: eval picks the model")


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """When a model is good enough to push."""

    # Bless only above this eval-split accuracy (and never worse than the last blessed model).
    min_accuracy: float = 0.7
    # Also evaluate the held-out test split (no thresholds) so every run records test accuracy.
    evaluate_test_split: bool = True

    def __post_init__(self):
        if not 0 <= self.min_accuracy <= 1:
            raise ConfigError(f"--min-accuracy must be in [0, 1], got {self.min_accuracy}")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Every setting of one pipeline; `create_pipeline(config)` turns it into a TFX pipeline."""

    data: DataConfig
    training: TrainingConfig
    evaluation: EvaluationConfig = EvaluationConfig()
    pipeline_name: str = "tfx-poets"
    pipeline_root: str = DEFAULT_PIPELINE_ROOT
    # The curated schema (a schema.pbtxt) that ExampleValidator and Transform use.
    schema_path: str = ""
    enable_cache: bool = True
    beam_pipeline_args: tuple[str, ...] = ("--runner=DirectRunner", "--direct_num_workers=1")
    # Plug-ins: dotted names of the user functions, and of extra-component factories
    # `factory(config, components) -> list[BaseNode]` appended to the pipeline.
    preprocessing_fn: str = DEFAULT_PREPROCESSING_FN
    run_fn: str = DEFAULT_RUN_FN
    fine_tune_fn: str = DEFAULT_FINE_TUNE_FN
    extra_components: tuple[str, ...] = ()
    # A fingerprint of the user code, so that TFX's cache misses when that code changes.
    code_fingerprint: str = ""

    def __post_init__(self):
        if not PIPELINE_NAME_PATTERN.match(self.pipeline_name):
            raise ConfigError(
                f"--pipeline-name {self.pipeline_name!r}: use lower-case letters, digits and "
                "'-' (Kubeflow's rule), e.g. tfx-poets"
            )
        if self.training.class_names != self.data.class_names:
            raise ConfigError(
                f"the Trainer's classes {list(self.training.class_names)} differ from the "
                f"data's {list(self.data.class_names)}"
            )

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.pipeline_root, "metadata.db")

    @property
    def serving_model_dir(self) -> str:
        return os.path.join(self.pipeline_root, "serving_model")

    @property
    def artifacts_root(self) -> str:
        return os.path.join(self.pipeline_root, "artifacts")
