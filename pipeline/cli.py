"""The retrain command line: flags (or TFX_POETS_* environment variables) -> PipelineConfig.

Shared by every runner; a runner file only binds the orchestrator (see runner_local.py).
Preflight checks run before any component, so bad input ends in one line, not a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence

from models import features, training_config
from pipeline import config as config_lib
from pipeline import logs, preflight, tfx_package
from pipeline.env_flags import ENV_PREFIX, EnvFlag, FlagGroup, environment_defaults
from pipeline.preflight import CliError, choose_image_size, choose_views

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMAS_DIR = REPO_ROOT / "schemas"
FLOWER_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "tfx_poets")


def build_parser(prog: str = "runner_local.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Train, evaluate and push a MobileNet image classifier from a folder of labelled "
            "photos (one subfolder per class) with a TFX pipeline. Every flag can also be set "
            f"with an environment variable {ENV_PREFIX}<FLAG>, e.g. {ENV_PREFIX}DATA_DIR."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    table: list[EnvFlag] = []

    def group(title: str) -> FlagGroup:
        return FlagGroup(parser.add_argument_group(title), table)

    data_default = config_lib.defaults_of(config_lib.DataConfig)
    data = group("data")
    data.add_argument("--data-dir", default="",
                      help="folder with one subfolder of images per class; empty downloads the "
                      "TensorFlow flower_photos archive into --cache-dir")
    data.add_argument("--testing-percentage", type=int,
                      default=data_default["testing_percentage"],
                      help="percentage of photos held out for the final test split")
    data.add_argument("--validation-percentage", type=int,
                      default=data_default["validation_percentage"],
                      help="percentage of photos used to validate and select models")
    data.add_argument("--max-class-imbalance", type=float,
                      default=data_default["max_class_imbalance"],
                      help="warn when the largest class has more than this many times the "
                      "photos of the smallest")
    data.add_argument("--near-duplicate-distance", type=int,
                      default=data_default["near_duplicate_distance"],
                      help="photos whose perceptual hashes differ by at most this many of 256 "
                      "bits are copies of one photo (resized, recompressed, re-toned, slightly "
                      "cropped): kept in one split, left out when in two classes; 0 groups "
                      "byte-identical files only")
    data.add_argument("--class-names", default="",
                      help="comma-separated class folder names; empty lists --data-dir's "
                      "subfolders")
    data.add_argument("--schema", default="auto",
                      help="curated schema.pbtxt to validate against; 'auto' uses "
                      "schemas/flowers for the five flower classes, else schemas/generic")
    model = group("model")
    model.add_argument("--architecture", default=config_lib.DEFAULT_ARCHITECTURE,
                       help="mobilenet_<1.0|0.75|0.50|0.25>_<224|192|160|128>: picks the TF Hub "
                       "module and the input resolution")
    model.add_argument("--model-handle", default="",
                       help="TF Hub handle or local SavedModel of an image feature vector; "
                       "empty uses the TF Hub handle of --architecture")
    default = config_lib.defaults_of(config_lib.TrainingConfig)
    model.add_argument("--image-size", type=int, default=0,
                       help="the size the network sees: the short side with --resize "
                       f"short-side, the square's side with squash; 0: {default['image_size']}, "
                       "or the module's own size for a fixed-size module other than MobileNet "
                       "V1 (MobileNet V1 modules are rebuilt to take any size)")
    model.add_argument("--resize", choices=features.RESIZE_MODES, default=None,
                       help="short-side keeps each photo's aspect ratio; squash makes it square "
                       f"as retrain.py did (default {default['resize']}, or squash for a "
                       "fixed-size module that cannot be rebuilt)")
    training = group("training")
    training.add_argument("--views", default=None,
                          help="comma-separated views of each photo the head is trained on: "
                          f"{features.PLAIN_VIEW} (as resized, first), {features.MIRROR_VIEW}"
                          ", squash<N> (squashed to NxN, a second scale); default "
                          f"{','.join(default['views'])} (plain alone for a fixed-size module "
                          "that cannot be rebuilt)")
    training.add_argument("--average-views", action=argparse.BooleanOptionalAction,
                          default=default["average_views"],
                          help="score a photo by the mean over its views when serving (one "
                          "forward pass per view, in one batch), else by the plain view")
    training.add_argument("--head", choices=training_config.HEAD_KINDS, default=default["head"],
                          help="the head on the L2-normalised features: logistic regression, "
                          "or one-vs-rest RBF support vector machines (BENCHMARKS.md, \"The "
                          "RBF head\"); default %(default)s")
    training.add_argument("--head-c", type=float, default=default["head_c"],
                          help="regularisation C of the head (more is "
                          "less regularised); 0 chooses it from "
                          f"{', '.join(f'{c:g}' for c in training_config.HEAD_C_GRID)} by 5-fold "
                          "cross-validation over the train photos")
    training.add_argument("--exclude-suspected-label-errors", action=argparse.BooleanOptionalAction,
                          default=default["exclude_suspected_label_errors"],
                          help="leave the train photos whose folder label the head's "
                          "cross-validation doubts (listed in the run report) out of the final "
                          "head's training")
    training.add_argument("--fine-tune-epochs", type=int, default=default["fine_tune_epochs"],
                          help="epochs fine-tuning MobileNet on distorted images from the "
                          "fitted head (the FineTuner); 0 skips it")
    training.add_argument("--fine-tune-learning-rate", type=float,
                          default=default["fine_tune_learning_rate"],
                          help="learning rate of fine-tuning")
    training.add_argument("--fine-tune-from-block", type=int,
                          default=default["fine_tune_from_block"],
                          help="fine-tune MobileNet V1 blocks from this one up (1..13); 0 "
                          "fine-tunes the whole network (slower, more memory)")
    training.add_argument("--flip-left-right", action=argparse.BooleanOptionalAction,
                          default=default["flip_left_right"],
                          help="mirror half of the training images while fine-tuning")
    training.add_argument("--random-crop", type=int, default=default["random_crop"],
                          help="percentage of margin randomly cropped off training images "
                          "while fine-tuning")
    training.add_argument("--random-scale", type=int, default=default["random_scale"],
                          help="percentage by which training images are randomly scaled up "
                          "while fine-tuning")
    training.add_argument("--random-brightness", type=int, default=default["random_brightness"],
                          help="percentage by which training pixels are randomly multiplied "
                          "up or down while fine-tuning")
    training.add_argument("--label-smoothing", type=float, default=default["label_smoothing"],
                          help="label smoothing of fine-tuning's cross-entropy loss")
    training.add_argument("--class-weights", choices=training_config.CLASS_WEIGHT_MODES,
                          default=default["class_weights"],
                          help="weight the loss by inverse class frequency; auto does so when "
                          "the largest train class has over "
                          f"{training_config.CLASS_WEIGHT_AUTO_RATIO}x the photos of the smallest")
    training.add_argument("--lr-schedule", choices=training_config.LR_SCHEDULES,
                          default=default["lr_schedule"],
                          help="cosine decays fine-tuning's learning rate to 0 over its epochs")
    training.add_argument("--train-batch-size", type=int, default=default["train_batch_size"],
                          help="images per fine-tuning batch")
    training.add_argument("--early-stopping-patience", type=int,
                          default=default["early_stopping_patience"],
                          help="epochs without a better validation loss before fine-tuning stops")
    training.add_argument("--seed", type=int, default=default["seed"],
                          help="random seed of training and of the head's folds")
    evaluation = group("evaluation and push")
    evaluation.add_argument("--min-accuracy", type=float,
                            default=config_lib.defaults_of(config_lib.EvaluationConfig)["min_accuracy"],
                            help="push only models above this eval-split accuracy (and never "
                            "worse than the last pushed one)")
    evaluation.add_argument("--no-test-evaluation", action="store_true",
                            help="skip the Evaluator run on the held-out test split")
    pipeline_default = config_lib.defaults_of(config_lib.PipelineConfig)
    run = group("pipeline")
    run.add_argument("--pipeline-name", default=pipeline_default["pipeline_name"],
                     help="name in ML Metadata")
    run.add_argument("--pipeline-root", default=pipeline_default["pipeline_root"],
                     help="artifacts, metadata.db and serving_model/ are written here")
    run.add_argument("--no-cache", action="store_true",
                     help="rerun every component even when its inputs did not change")
    run.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR,
                     help="where downloaded photos and TF Hub modules are kept")
    run.add_argument("--verbose", action="store_true",
                     help="show every log line of TFX, Beam and TensorFlow, not only progress")
    run.add_argument("--beam-runner", default="DirectRunner",
                     help="Beam runner of the Beam steps (ImageExampleGen, StatisticsGen, "
                     "Transform, Evaluator): DirectRunner, portable-local (Beam's portable "
                     "runner with a job service and worker pool started here for the run), "
                     "PortableRunner, FlinkRunner, SparkRunner or DataflowRunner; give its "
                     "options with --beam-arg (docs/orchestrators.md)")
    run.add_argument("--beam-arg", action="append", default=[],
                     help="extra Beam pipeline argument, repeatable, e.g. "
                     "--beam-arg=--direct_num_workers=2")
    plugins = group("plug-ins")
    plugins.add_argument("--preprocessing-fn", default=pipeline_default["preprocessing_fn"],
                         help="dotted name of Transform's preprocessing_fn")
    plugins.add_argument("--run-fn", default=pipeline_default["run_fn"],
                         help="dotted name of Trainer's run_fn")
    plugins.add_argument("--fine-tune-fn", default=pipeline_default["fine_tune_fn"],
                         help="dotted name of the FineTuner's run_fn")
    plugins.add_argument("--extra-component", action="append", default=[],
                         help="dotted name of factory(config, components) -> [components] "
                         "whose components are added to the pipeline; repeatable")
    parser.set_defaults(**environment_defaults(table, os.environ))
    return parser


def code_fingerprint(repo_root: pathlib.Path = REPO_ROOT) -> str:
    """Hash of the code the components run, so TFX's cache misses after it changes.

    Tests and the command line itself are left out: editing them must not retrain.
    """
    digest = hashlib.sha256()
    # The module code and the custom components import nothing of pipeline/ (tests/test_layers.py).
    sources = [path for folder in ("models", "components")
               for path in sorted(repo_root.glob(f"{folder}/**/*.py"))]
    for path in sources:
        if not path.name.endswith("_test.py"):
            digest.update(str(path.relative_to(repo_root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def choose_schema(schema_flag: str, class_names: Sequence[str]) -> str:
    if schema_flag != "auto":
        if "://" in schema_flag:
            return schema_flag  # read where the pipeline runs
        if not os.path.isfile(schema_flag):
            raise CliError(f"--schema {schema_flag}: no such file")
        return os.path.abspath(schema_flag)
    name = "flowers" if tuple(class_names) == FLOWER_CLASSES else "generic"
    return str(SCHEMAS_DIR / name / "schema.pbtxt")


def beam_pipeline_args(runner: str, extra_args: Sequence[str]) -> tuple[str, ...]:
    """Beam arguments of every Beam step; extra arguments come last, so they win."""
    runner_args = [f"--runner={runner}"]
    if runner == "DirectRunner":
        # In memory with one worker measured fastest on 2 cores (BENCHMARKS.md).
        runner_args.append("--direct_num_workers=1")
    return (*runner_args, *extra_args)


def _local_path(path: str) -> str:
    """Absolute for local paths; URIs such as gs://bucket/root are kept as they are."""
    return path if "://" in path else os.path.abspath(path)


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if "://" in root else os.path.join(root, name)


def config_from_args(args: argparse.Namespace, local: bool = True) -> config_lib.PipelineConfig:
    """Validates the flags and returns the pipeline's config.

    `local`: the pipeline runs on this machine, so the photos and the TF Hub module are
    downloaded if needed and checked here. A remote orchestrator (Kubeflow) reads them where it
    runs: then the data folder and the handle are taken as given, and the classes come from
    --class-names when the folder is not readable from here.
    """
    from components.image_example_gen import images, scan

    config_lib.parse_architecture(args.architecture)  # checks the name
    handle = args.model_handle or config_lib.architecture_to_hub_handle(args.architecture)
    if local:
        data_dir = args.data_dir or preflight.download_flower_photos(args.cache_dir)
        model_path = preflight.resolve_model_handle(handle, args.cache_dir)
        module_size = preflight.module_image_size(model_path)
        resizable = module_size is None or preflight.module_is_mobilenet_v1(model_path)
    else:
        if not args.data_dir:
            raise CliError("--data-dir is required: the folder (or gs:// URI) the pipeline reads")
        # Read where the pipeline runs; TF Hub's MobileNet V1 modules can be rebuilt.
        data_dir, model_path, module_size, resizable = args.data_dir, handle, None, True
    image_size, resize = choose_image_size(
        args.image_size, args.resize, module_size, resizable, model_path
    )
    views = choose_views(args.views, resizable, model_path)
    if args.class_names:
        class_names = tuple(sorted(name.strip() for name in args.class_names.split(",")))
        if local:
            missing = sorted(set(class_names) - set(scan.discover_classes(data_dir)))
            if missing:
                raise CliError(f"--class-names: no image folder {missing[0]!r} in {data_dir}")
    else:
        try:
            class_names = scan.discover_classes(data_dir)
        except images.DataDirError as error:
            raise CliError(str(error)) from None
    beam_args = beam_pipeline_args(args.beam_runner, args.beam_arg)
    if local:  # a remote orchestrator's containers have TFX's package of their own
        beam_args = tfx_package.with_tfx_package(beam_args, args.cache_dir)
    return config_lib.PipelineConfig(
        data=config_lib.DataConfig(
            data_dir=_local_path(data_dir),
            class_names=class_names,
            testing_percentage=args.testing_percentage,
            validation_percentage=args.validation_percentage,
            max_class_imbalance=args.max_class_imbalance,
            near_duplicate_distance=args.near_duplicate_distance,
        ),
        training=config_lib.TrainingConfig(
            model_handle=model_path,
            image_size=image_size,
            resize=resize,
            class_names=class_names,
            views=views,
            average_views=args.average_views,
            head=args.head,
            head_c=args.head_c,
            exclude_suspected_label_errors=args.exclude_suspected_label_errors,
            fine_tune_epochs=args.fine_tune_epochs,
            fine_tune_learning_rate=args.fine_tune_learning_rate,
            fine_tune_from_block=args.fine_tune_from_block,
            flip_left_right=args.flip_left_right,
            random_crop=args.random_crop,
            random_scale=args.random_scale,
            random_brightness=args.random_brightness,
            label_smoothing=args.label_smoothing,
            class_weights=args.class_weights,
            lr_schedule=args.lr_schedule,
            train_batch_size=args.train_batch_size,
            early_stopping_patience=args.early_stopping_patience,
            seed=args.seed,
            # Beside the artifacts, outside any run: features outlive the runs that made them.
            bottleneck_dir=_join(_local_path(args.pipeline_root), "bottlenecks"),
            backbone_dir=_join(_local_path(args.pipeline_root), "backbones"),
        ),
        evaluation=config_lib.EvaluationConfig(
            min_accuracy=args.min_accuracy,
            # An empty test split would give TFMA nothing to evaluate.
            evaluate_test_split=not args.no_test_evaluation and args.testing_percentage > 0,
        ),
        pipeline_name=args.pipeline_name,
        pipeline_root=_local_path(args.pipeline_root),
        schema_path=choose_schema(args.schema, class_names),
        enable_cache=not args.no_cache,
        beam_pipeline_args=beam_args,
        preprocessing_fn=args.preprocessing_fn,
        run_fn=args.run_fn,
        fine_tune_fn=args.fine_tune_fn,
        extra_components=tuple(args.extra_component),
        code_fingerprint=code_fingerprint(),
    )


def main(
    argv: Sequence[str] | None,
    run_pipeline: Callable[[config_lib.PipelineConfig, argparse.Namespace], None],
    prog: str = "runner_local.py",
    add_runner_flags: Callable[[argparse.ArgumentParser], None] | None = None,
    local: bool = True,
) -> int:
    """Parses flags, runs `run_pipeline(config, args)`, and turns known failures into one line.

    A runner adds its own flags with `add_runner_flags`; `local` is config_from_args's.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    logs.quiet_environment()
    try:
        parser = build_parser(prog)
    except CliError as error:  # a TFX_POETS_* variable that does not parse
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if add_runner_flags:
        add_runner_flags(parser.add_argument_group("orchestrator"))
    args = parser.parse_args(argv)
    logs.configure_progress_logging(verbose=args.verbose)
    from components.image_example_gen import images
    from pipeline import run_lock

    started = time.time()
    try:
        config = config_from_args(args, local=local)
        run_pipeline(config, args)
    except (
        CliError, config_lib.ConfigError, images.DataDirError, run_lock.RunLockedError
    ) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"{prog}: interrupted; run the same command again to resume (finished steps are "
            "cached)",
            file=sys.stderr,
        )
        return 130
    print(f"{prog}: done in {time.time() - started:.0f} s")
    return 0
