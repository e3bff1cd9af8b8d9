"""Tests of the retrain command line: flags, environment, preflight errors."""

import os
import shutil
from unittest import mock

import pytest

from models import training_config
from pipeline import cli, preflight
from pipeline import config as config_lib
from tests.support import make_image_folder


def _run_main(argv, calls):
    return cli.main(argv, run_pipeline=lambda config, args: calls.append(config), prog="retrain")


@pytest.fixture
def hub_dir(tmp_path):
    path = tmp_path / "hub"
    path.mkdir()
    (path / "saved_model.pb").write_bytes(b"")
    return path


def test_help_documents_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["-h"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data-dir", "--model-handle", "--architecture", "--image-size", "--resize",
                 "--views", "--average-views", "--head", "--head-c", "--train-batch-size",
                 "--fine-tune-epochs", "--min-accuracy", "--testing-percentage",
                 "--validation-percentage", "--pipeline-root"):
        assert flag in text
    assert "mobilenet_0.50_224" in text and "(default: 0.0001)" in text
    assert "plain,squash224" in text and "1, 3, 10, 30" in text


def test_flags_become_the_typed_config(tmp_path, hub_dir):
    photos = make_image_folder(tmp_path / "photos", {"b": 2, "a": 2})
    calls = []
    code = _run_main(
        [f"--data-dir={photos}", f"--model-handle={hub_dir}", "--architecture=mobilenet_0.25_160",
         "--head-c=0.05", "--head=svm-rbf", f"--pipeline-root={tmp_path / 'root'}", "--no-cache",
         "--image-size=320", "--resize=squash", "--views=plain,mirror", "--no-average-views",
         "--no-flip-left-right", "--random-crop=5", "--random-scale=7", "--random-brightness=9",
         "--fine-tune-from-block=10", "--label-smoothing=0.05", "--class-weights=balanced",
         "--lr-schedule=constant", "--near-duplicate-distance=12",
         "--exclude-suspected-label-errors"],
        calls,
    )
    assert code == 0
    (config,) = calls
    assert config.data.class_names == ("a", "b")
    assert config.data.near_duplicate_distance == 12
    assert config.training.exclude_suspected_label_errors
    assert config.training.class_names == ("a", "b")
    # The size the network sees, not the architecture's 160.
    assert (config.training.image_size, config.training.resize) == (320, "squash")
    assert config.training.views == ("plain", "mirror") and not config.training.average_views
    assert config.training.head_c == 0.05 and config.training.head == "svm-rbf"
    assert config.training.model_handle == str(hub_dir)
    assert config.enable_cache is False
    training = config.training
    assert (training.flip_left_right, training.random_crop, training.random_scale,
            training.random_brightness) == (False, 5, 7, 9)
    assert (training.fine_tune_from_block, training.label_smoothing, training.class_weights,
            training.lr_schedule) == (10, 0.05, "balanced", "constant")
    assert training.bottleneck_dir == str(tmp_path / "root" / "bottlenecks")
    assert training.backbone_dir == str(tmp_path / "root" / "backbones")
    assert config.schema_path.endswith("schemas/generic/schema.pbtxt")
    assert len(config.code_fingerprint) == 16


def test_beam_runner_and_arguments_reach_the_config(tmp_path, hub_dir):
    photos = make_image_folder(tmp_path / "photos", {"a": 1, "b": 1})
    calls = []
    flags = [f"--data-dir={photos}", f"--model-handle={hub_dir}", "--beam-runner=FlinkRunner",
             "--beam-arg=--flink_master=localhost:8081", "--beam-arg=--parallelism=4"]
    assert _run_main(flags, calls) == 0
    runner_args, package = calls[0].beam_pipeline_args[:-1], calls[0].beam_pipeline_args[-1]
    assert runner_args == (
        "--runner=FlinkRunner", "--flink_master=localhost:8081", "--parallelism=4"
    )
    # TFX's own package for the workers, built once (pipeline/tfx_package.py).
    assert package.startswith("--extra_package=") and os.path.isfile(package.split("=", 1)[1])
    calls.clear()
    assert _run_main(flags[:2], calls) == 0
    assert calls[0].beam_pipeline_args == ("--runner=DirectRunner", "--direct_num_workers=1",
                                           package)


def test_flower_classes_use_the_flowers_schema(tmp_path, hub_dir):
    photos = make_image_folder(tmp_path / "p", dict.fromkeys(cli.FLOWER_CLASSES, 1))
    calls = []
    assert _run_main([f"--data-dir={photos}", f"--model-handle={hub_dir}"], calls) == 0
    assert calls[0].schema_path.endswith("schemas/flowers/schema.pbtxt")
    defaults = calls[0].training
    assert (defaults.image_size, defaults.resize, defaults.views) == (
        training_config.DEFAULT_IMAGE_SIZE, "short-side", ("plain", "squash224"))


def test_environment_variables_set_defaults(tmp_path, hub_dir, monkeypatch):
    photos = make_image_folder(tmp_path / "photos", {"x": 1, "y": 1})
    monkeypatch.setenv("TFX_POETS_DATA_DIR", str(photos))
    monkeypatch.setenv("TFX_POETS_HEAD_C", "7")
    monkeypatch.setenv("TFX_POETS_NO_CACHE", "true")
    calls = []
    assert _run_main([f"--model-handle={hub_dir}"], calls) == 0
    assert calls[0].training.head_c == 7 and calls[0].enable_cache is False


@pytest.mark.parametrize("raw,expected", [("false", False), ("0", False), ("no", False),
                                          ("True", True), ("1", True), ("yes", True)])
def test_environment_booleans_parse_as_booleans(tmp_path, hub_dir, monkeypatch, raw, expected):
    photos = make_image_folder(tmp_path / "photos", {"x": 1, "y": 1})
    monkeypatch.setenv("TFX_POETS_FLIP_LEFT_RIGHT", raw)
    monkeypatch.setenv("TFX_POETS_NO_CACHE", raw)
    calls = []
    assert _run_main([f"--data-dir={photos}", f"--model-handle={hub_dir}"], calls) == 0
    assert calls[0].training.flip_left_right is expected
    assert calls[0].enable_cache is (not expected)


def test_a_boolean_environment_variable_that_is_no_boolean_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TFX_POETS_FLIP_LEFT_RIGHT", "maybe")
    with pytest.raises(cli.CliError, match="TFX_POETS_FLIP_LEFT_RIGHT='maybe': use one of"):
        cli.build_parser()


def test_a_boolean_environment_variable_that_is_no_boolean_exits_2_in_one_line(
        tmp_path, hub_dir, monkeypatch, capsys):
    photos = make_image_folder(tmp_path / "photos", {"x": 1, "y": 1})
    monkeypatch.setenv("TFX_POETS_NO_CACHE", "sometimes")
    calls = []
    assert _run_main([f"--data-dir={photos}", f"--model-handle={hub_dir}"], calls) == 2
    assert calls == []
    (line,) = capsys.readouterr().err.splitlines()
    assert line == ("retrain: error: TFX_POETS_NO_CACHE='sometimes': use one of 1, true, yes, "
                    "on, 0, false, no, off")


def test_numbers_and_repeatable_flags_from_the_environment(tmp_path, hub_dir, monkeypatch):
    photos = make_image_folder(tmp_path / "photos", {"x": 1, "y": 1})
    monkeypatch.setenv("TFX_POETS_TESTING_PERCENTAGE", "20")
    monkeypatch.setenv("TFX_POETS_FINE_TUNE_EPOCHS", "3")
    monkeypatch.setenv("TFX_POETS_MIN_ACCURACY", "0.8")
    monkeypatch.setenv("TFX_POETS_BEAM_ARG", "--parallelism=4 --flink_master=localhost:8081")
    calls = []
    assert _run_main([f"--data-dir={photos}", f"--model-handle={hub_dir}"], calls) == 0
    (config,) = calls
    assert config.data.testing_percentage == 20 and config.training.fine_tune_epochs == 3
    assert config.evaluation.min_accuracy == 0.8
    assert config.beam_pipeline_args[-3:-1] == ("--parallelism=4",
                                                 "--flink_master=localhost:8081")
    # A flag still wins over its variable.
    calls.clear()
    assert _run_main([f"--data-dir={photos}", f"--model-handle={hub_dir}",
                      "--testing-percentage=5"], calls) == 0
    assert calls[0].data.testing_percentage == 5


def test_a_number_environment_variable_that_is_no_number_exits_2_in_one_line(
        tmp_path, hub_dir, monkeypatch, capsys):
    monkeypatch.setenv("TFX_POETS_TESTING_PERCENTAGE", "ten")
    assert _run_main([f"--model-handle={hub_dir}"], []) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == "retrain: error: TFX_POETS_TESTING_PERCENTAGE='ten': use an integer"


def test_flag_defaults_are_the_configs_defaults():
    args = cli.build_parser().parse_args([])
    data = config_lib.defaults_of(config_lib.DataConfig)
    for name in ("testing_percentage", "validation_percentage", "max_class_imbalance",
                 "near_duplicate_distance"):
        assert getattr(args, name) == data[name]
    assert args.min_accuracy == config_lib.defaults_of(config_lib.EvaluationConfig)["min_accuracy"]
    pipeline = config_lib.defaults_of(config_lib.PipelineConfig)
    assert (args.pipeline_name, args.pipeline_root) == (pipeline["pipeline_name"],
                                                       config_lib.DEFAULT_PIPELINE_ROOT)
    assert args.no_cache is (not pipeline["enable_cache"])
    training = config_lib.defaults_of(config_lib.TrainingConfig)
    for name in ("head_c", "fine_tune_epochs", "flip_left_right", "seed", "train_batch_size"):
        assert getattr(args, name) == training[name]


@pytest.mark.parametrize(
    "make_args,message",
    [
        (lambda tmp, hub: [f"--data-dir={tmp / 'missing'}", f"--model-handle={hub}"],
         "does not exist"),
        (lambda tmp, hub: [f"--data-dir={make_image_folder(tmp / 'one', {'a': 2})}",
                           f"--model-handle={hub}"], "at least two"),
        (lambda tmp, hub: [f"--data-dir={make_image_folder(tmp / 'p', {'a': 1, 'b': 1})}",
                           f"--model-handle={tmp / 'nohub'}"], "no saved_model.pb"),
        (lambda tmp, hub: [f"--data-dir={make_image_folder(tmp / 'p', {'a': 1, 'b': 1})}",
                           f"--model-handle={hub}", "--architecture=resnet"], "--architecture"),
        (lambda tmp, hub: [f"--data-dir={make_image_folder(tmp / 'p', {'a': 1, 'b': 1})}",
                           f"--model-handle={hub}", "--head-c=-1"], "--head-c"),
        (lambda tmp, hub: [f"--data-dir={make_image_folder(tmp / 'p', {'a': 1, 'b': 1})}",
                           f"--model-handle={hub}", "--views=mirror"], "--views"),
    ],
)
def test_bad_input_ends_in_one_line(tmp_path, hub_dir, capsys, make_args, message):
    calls = []
    assert _run_main(make_args(tmp_path, hub_dir), calls) == 2
    assert calls == []
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_offline_downloads_fail_in_one_line_naming_the_flags(tmp_path, hub_dir, capsys,
                                                             monkeypatch):
    # No network here; an unroutable URL stands in for it on machines that have one.
    monkeypatch.setattr(cli.config_lib, "FLOWER_PHOTOS_URL", "http://127.0.0.1:9/flowers.tgz")
    assert _run_main([f"--cache-dir={tmp_path / 'cache'}", f"--model-handle={hub_dir}"], []) == 2
    err = capsys.readouterr().err.strip()
    assert "--data-dir" in err and len(err.splitlines()) == 1
    photos = make_image_folder(tmp_path / "photos", {"x": 1, "y": 1})
    assert _run_main([f"--cache-dir={tmp_path / 'cache'}", f"--data-dir={photos}",
                      "--model-handle=http://127.0.0.1:9/module/1"], []) == 2
    err = capsys.readouterr().err.strip()
    assert "--model-handle" in err and len(err.splitlines()) == 1


def test_interrupt_says_how_to_resume(tmp_path, hub_dir, capsys):
    photos = make_image_folder(tmp_path / "photos", {"x": 1, "y": 1})

    def interrupted(config, args):
        raise KeyboardInterrupt

    code = cli.main([f"--data-dir={photos}", f"--model-handle={hub_dir}"], interrupted, "retrain")
    assert code == 130
    assert "run the same command again" in capsys.readouterr().err


def test_code_fingerprint_changes_with_component_code_only(tmp_path):
    for relative in ("models/trainer_module.py", "models/trainer_module_test.py",
                     "pipeline/config.py"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cli.REPO_ROOT / relative, tmp_path / relative)
    before = cli.code_fingerprint(tmp_path)
    with open(tmp_path / "models/trainer_module_test.py", "a") as test_file:
        test_file.write("# a test edit\n")
    assert cli.code_fingerprint(tmp_path) == before
    with open(tmp_path / "models/trainer_module.py", "a") as module:
        module.write("# a code edit\n")
    assert cli.code_fingerprint(tmp_path) != before


def test_class_names_flag_selects_folders_and_rejects_unknown_ones(tmp_path, hub_dir, capsys):
    photos = make_image_folder(tmp_path / "photos", {"a": 1, "b": 1, "c": 1})
    calls = []
    assert _run_main([f"--data-dir={photos}", f"--model-handle={hub_dir}",
                      "--class-names=c,a"], calls) == 0
    assert calls[0].data.class_names == ("a", "c")
    assert _run_main([f"--data-dir={photos}", f"--model-handle={hub_dir}",
                      "--class-names=a,zebra"], []) == 2
    assert "no image folder 'zebra'" in capsys.readouterr().err


def test_remote_runners_take_data_and_handle_as_given(tmp_path):
    calls = []
    code = cli.main(
        ["--data-dir=gs://bucket/photos", "--class-names=x,y", "--pipeline-root=gs://bucket/r"],
        run_pipeline=lambda config, args: calls.append(config), prog="remote", local=False,
    )
    assert code == 0
    config = calls[0]
    assert config.data.data_dir == "gs://bucket/photos"
    assert config.pipeline_root == "gs://bucket/r"
    assert config.training.model_handle.startswith("https://tfhub.dev/")


def test_a_mobilenet_v1_module_takes_any_size(tmp_path):
    from tests.support import make_random_hub_mobilenet

    photos = make_image_folder(tmp_path / "photos", {"a": 2, "b": 2})
    module = make_random_hub_mobilenet(tmp_path / "hub128", alpha=0.25, resolution=128)
    assert preflight.module_image_size(str(module)) == 128
    assert preflight.module_is_mobilenet_v1(str(module))
    calls = []
    assert _run_main([f"--data-dir={photos}", f"--model-handle={module}", "--image-size=224"],
                     calls) == 0
    assert (calls[0].training.image_size, calls[0].training.resize) == (224, "short-side")


def test_a_fixed_module_that_cannot_be_rebuilt_takes_its_size_and_a_mismatch_is_one_line(
        tmp_path, capsys):
    from tests.support import make_random_hub_mobilenet

    photos = make_image_folder(tmp_path / "photos", {"a": 2, "b": 2})
    module = make_random_hub_mobilenet(tmp_path / "hub128", alpha=0.25, resolution=128)
    calls = []
    # As a module of another architecture: no MobileNet V1 variable names.
    with mock.patch.object(preflight, "module_is_mobilenet_v1", return_value=False):
        assert _run_main([f"--data-dir={photos}", f"--model-handle={module}"], calls) == 0
        assert _run_main([f"--data-dir={photos}", f"--model-handle={module}",
                          "--image-size=224"], calls) == 2
    training = calls[0].training
    assert (training.image_size, training.resize, training.views) == (128, "squash", ("plain",))
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"retrain: error: --image-size 224: the module {module} takes only 128x128 "
                    "images and is not a MobileNet V1 that can be rebuilt at another size; pass "
                    "--image-size 128 --resize squash, or leave both out")


def test_the_shared_module_takes_224_and_a_corrupt_one_is_one_line(tmp_path, shared_mobilenet,
                                                                  capsys):
    assert preflight.module_image_size(shared_mobilenet) == 224
    assert preflight.module_is_mobilenet_v1(shared_mobilenet)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "saved_model.pb").write_bytes(b"\x0bnot a protocol buffer")
    photos = make_image_folder(tmp_path / "photos", {"a": 2, "b": 2})
    assert _run_main([f"--data-dir={photos}", f"--model-handle={tmp_path / 'bad'}"], []) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "saved_model.pb is not a SavedModel" in line
