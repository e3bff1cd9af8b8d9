"""The one typed configuration object of a tfx-poets pipeline.

`PipelineConfig` holds every setting. It is filled from flags or the environment by
`pipeline.cli`, and read only by `create_pipeline` (which hands each component the part it
needs, e.g. `TrainingConfig` as the Trainer's `custom_config`). Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import os
import re

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
DEFAULT_PREPROCESSING_FN = "components.transform_module.preprocessing_fn"
DEFAULT_RUN_FN = "components.trainer_module.run_fn"
DEFAULT_FINE_TUNE_FN = "components.trainer_module.fine_tune_fn"

# Feature names of the tf.Examples written by ImageExampleGen.
IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
LABEL_NAME_KEY = "image/class/text"
FILENAME_KEY = "image/filename"
# The Trainer's report of its head's cross-validation, in its ModelRun folder.
HEAD_REPORT_FILE = "head.json"
# The Trainer's suspected label errors, in the Model artifact's folder (beside Format-Serving).
LABEL_ISSUES_FILE = "label_issues.json"
# ImageExampleGen's near-duplicates: at most this many bits of the 256-bit perceptual hash
# apart. Chosen on the shared photos and generated copies (BENCHMARKS.md, "Near-duplicates"):
# resized, recompressed and re-toned copies are within 32 bits, 98 % of copies cropped by 3 %
# a side within 64; other framings of one scene, and the nearest different photos of the
# shared set, are 70 and more apart. Over half the bits, unrelated photos would match.
DEFAULT_NEAR_DUPLICATE_DISTANCE = 64
MAX_NEAR_DUPLICATE_DISTANCE = 128
# Feature names after Transform.
TRANSFORMED_IMAGE_KEY = "image_jpeg"
TRANSFORMED_LABEL_KEY = "label"


# The size the network sees by default, whatever the module's nominal one (BENCHMARKS.md,
# "Recipes": chosen by cross-validation).
DEFAULT_IMAGE_SIZE = 288
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024
# The Transform's resize modes (components/transform_module.py) and the views of a photo
# (components/views.py): as resized, mirrored, or squashed to N x N (e.g. squash224).
RESIZE_MODES = ("short-side", "squash")
PLAIN_VIEW, MIRROR_VIEW = "plain", "mirror"
SQUASH_VIEW_PATTERN = r"squash(\d+)"
# The head's regularisation C tried by cross-validation when --head-c is 0 (BENCHMARKS.md).
HEAD_C_GRID = (1.0, 3.0, 10.0, 30.0)
# Settings of the final head alone: changing them reruns the Trainer, never the FineTuner.
FINAL_HEAD_SETTINGS = ("head_c", "average_views", "exclude_suspected_label_errors")
# MobileNet V1 has 13 depthwise-separable blocks after its first convolution.
MOBILENET_BLOCKS = 13
CLASS_WEIGHT_MODES = ("auto", "balanced", "none")
CLASS_WEIGHT_AUTO_RATIO = 1.5
LR_SCHEDULES = ("cosine", "constant")


class ConfigError(ValueError):
    """A setting is invalid; the message says which flag to fix."""


def views_are_valid(views) -> bool:
    def known(view):
        match = re.fullmatch(SQUASH_VIEW_PATTERN, view)
        return view == MIRROR_VIEW or bool(
            match and MIN_IMAGE_SIZE <= int(match.group(1)) <= MAX_IMAGE_SIZE)

    views = tuple(views)
    return bool(views) and views[0] == PLAIN_VIEW and len(set(views)) == len(views) and all(
        known(view) for view in views[1:])


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
class TrainingConfig:
    """Everything the Trainer's run_fn needs; passed to it as `custom_config`."""

    model_handle: str
    # The size the network sees: the short side (resize "short-side") or the square's side.
    image_size: int = DEFAULT_IMAGE_SIZE
    # "short-side": the aspect ratio kept; "squash": a square, as retrain.py did.
    resize: str = "short-side"
    class_names: tuple[str, ...] = ()
    # The views of each photo the head is trained on (components/views.py), and whether
    # serving scores a photo by the mean over them (else by the plain view alone).
    views: tuple[str, ...] = ("plain", "squash224")
    average_views: bool = True
    # The head: logistic regression on L2-normalised features with this C (more is less
    # regularisation); 0 chooses it by cross-validation over the train photos.
    head_c: float = 0.0
    # Leave the train photos whose folder label the cross-validation doubts (cleanlab's
    # find_label_issues, components/label_issues.py) out of the final head's training. Off:
    # it did not pay on the shared photos (BENCHMARKS.md, "Suspected label errors").
    exclude_suspected_label_errors: bool = False
    # Optional: fine-tune MobileNet blocks >= fine_tune_from_block (1..13; 0: the whole
    # network) from that head, on distorted images, with a small learning rate.
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 1e-4
    fine_tune_from_block: int = 12
    # retrain.py's distortions (percentages), applied while fine-tuning only.
    flip_left_right: bool = True
    random_crop: int = 10
    random_scale: int = 10
    random_brightness: int = 10
    # Of fine-tuning's cross-entropy.
    label_smoothing: float = 0.1
    # "auto": weight classes by inverse frequency when the largest train class has more than
    # CLASS_WEIGHT_AUTO_RATIO times the photos of the smallest; "balanced"; "none".
    class_weights: str = "auto"
    # "cosine": fine-tuning decays its learning rate to 0 over its epochs; "constant".
    lr_schedule: str = "cosine"
    train_batch_size: int = 32
    early_stopping_patience: int = 3
    seed: int = 42
    # Where features are cached across runs ("" keeps them for this run only).
    bottleneck_dir: str = ""
    # Where any-size copies of fixed-size modules are kept ("": a temporary folder).
    backbone_dir: str = ""

    def __post_init__(self):
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"--image-size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], "
                              f"got {self.image_size}")
        if self.train_batch_size <= 0:
            raise ConfigError(f"--train-batch-size must be positive, got {self.train_batch_size}")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"--resize must be one of {', '.join(RESIZE_MODES)}, "
                              f"got {self.resize!r}")
        if not views_are_valid(self.views):
            raise ConfigError(
                f"--views must be {PLAIN_VIEW}, then any of {MIRROR_VIEW} and squash<N> "
                f"(N in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}]), each once; got "
                f"{','.join(self.views)}"
            )
        if self.head_c < 0:
            raise ConfigError(f"--head-c must be >= 0 (0: chosen by cross-validation), "
                              f"got {self.head_c}")
        if self.fine_tune_epochs < 0:
            raise ConfigError(f"--fine-tune-epochs must be >= 0, got {self.fine_tune_epochs}")
        if self.fine_tune_learning_rate < 0:
            raise ConfigError("--fine-tune-learning-rate must be >= 0")
        if not 0 <= self.fine_tune_from_block <= MOBILENET_BLOCKS:
            raise ConfigError(
                f"--fine-tune-from-block must be in [0, {MOBILENET_BLOCKS}], "
                f"got {self.fine_tune_from_block}"
            )
        for flag, value in (
            ("--random-crop", self.random_crop),
            ("--random-scale", self.random_scale),
            ("--random-brightness", self.random_brightness),
        ):
            if not 0 <= value < 100:
                raise ConfigError(f"{flag} is a percentage in [0, 100), got {value}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.class_weights not in CLASS_WEIGHT_MODES:
            raise ConfigError(
                f"--class-weights must be one of {', '.join(CLASS_WEIGHT_MODES)}, "
                f"got {self.class_weights!r}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )

    def for_fine_tuning(self) -> TrainingConfig:
        """The FineTuner's settings: the head it starts from always has the default head
        settings, so that changing the final head's (--head-c, --no-average-views) never
        reruns fine-tuning."""
        defaults = {field.name: field.default for field in dataclasses.fields(self)}
        return dataclasses.replace(
            self, **{name: defaults[name] for name in FINAL_HEAD_SETTINGS}
        )

    def to_custom_config(self) -> dict:
        """A JSON-serialisable dict, as TFX stores custom_config in ML Metadata."""
        as_dict = dataclasses.asdict(self)
        as_dict["class_names"] = list(self.class_names)
        as_dict["views"] = list(self.views)
        return as_dict

    @classmethod
    def from_custom_config(cls, custom_config: dict) -> TrainingConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in custom_config.items() if key in known}
        values["class_names"] = tuple(values.get("class_names", ()))
        if "views" in values:
            values["views"] = tuple(values["views"])
        return cls(**values)


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
    pipeline_root: str = "tfx_poets_output"
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
