"""The Trainer's settings: `TrainingConfig`, handed to its run_fn as `custom_config`.

Part of the pipeline's one typed config (pipeline/config.py's PipelineConfig holds it); it lives
with the module code because the Trainer and the FineTuner parse their custom_config back into
it. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import re

from models.features import MIRROR_VIEW, PLAIN_VIEW, RESIZE_MODES, SQUASH_VIEW_PATTERN

# The size the network sees by default, whatever the module's nominal one (BENCHMARKS.md,
# "Recipes": chosen by cross-validation).
DEFAULT_IMAGE_SIZE = 288
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024
# The head's regularisation C tried by cross-validation when --head-c is 0 (BENCHMARKS.md).
HEAD_C_GRID = (1.0, 3.0, 10.0, 30.0)
# Settings of the final head alone: changing them reruns the Trainer, never the FineTuner.
FINAL_HEAD_SETTINGS = ("head", "head_c", "average_views", "exclude_suspected_label_errors")
# "logistic": logistic regression (models/linear_head.py); "svm-rbf": one-vs-rest RBF support
# vector machines (models/kernel_head.py).
HEAD_KINDS = ("logistic", "svm-rbf")
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


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Everything the Trainer's run_fn needs; passed to it as `custom_config`."""

    model_handle: str
    # The size the network sees: the short side (resize "short-side") or the square's side.
    image_size: int = DEFAULT_IMAGE_SIZE
    # "short-side": the aspect ratio kept; "squash": a square, as retrain.py did.
    resize: str = "short-side"
    class_names: tuple[str, ...] = ()
    # The views of each photo the head is trained on (models/views.py), and whether
    # serving scores a photo by the mean over them (else by the plain view alone).
    views: tuple[str, ...] = ("plain", "squash224")
    average_views: bool = True
    # The head on L2-normalised features (HEAD_KINDS), and its C (more is less
    # regularisation); 0 chooses C by cross-validation over the train photos. The RBF head
    # cross-validated 1.7 points above the logistic one (BENCHMARKS.md, "The RBF head").
    head: str = "svm-rbf"
    head_c: float = 0.0
    # Leave the train photos whose folder label the cross-validation doubts (cleanlab's
    # find_label_issues, models/label_issues.py) out of the final head's training. Off:
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
        if self.head not in HEAD_KINDS:
            raise ConfigError(f"--head must be one of {', '.join(HEAD_KINDS)}, got {self.head!r}")
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
        settings, so that changing the final head's (--head, --head-c, --no-average-views)
        never reruns fine-tuning; and it is the logistic head, the one fine-tuning was
        measured under (the RBF head's support vectors are features of the frozen backbone)."""
        defaults = {field.name: field.default for field in dataclasses.fields(self)}
        return dataclasses.replace(
            self, **{**{name: defaults[name] for name in FINAL_HEAD_SETTINGS}, "head": "logistic"}
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
