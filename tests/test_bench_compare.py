"""Fast unit tests of bench.compare and its parts: no TensorFlow, no pipeline run."""

import io
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bench import common, compare, compare_report, compare_runs, photos, replica, run_facts

REPO = pathlib.Path(__file__).resolve().parent.parent

START, END = compare_report.markers(compare_report.DEFAULT_MODE)


# --- markers -----------------------------------------------------------------------------------


def test_replace_section_between_present_markers_keeps_everything_else():
    text = (
        f"# Benchmarks\n\nintro\n\n## bench/compare.py\n\n{START}\nold table\n{END}\n\n"
        "## later\ntail\n"
    )
    updated = compare_report.replace_section(text, compare_report.DEFAULT_MODE, "new table\n")
    assert updated == (
        f"# Benchmarks\n\nintro\n\n## bench/compare.py\n\n{START}\nnew table\n{END}\n\n"
        "## later\ntail\n"
    )
    # Idempotent: a second write replaces, never appends.
    assert compare_report.replace_section(
        updated, compare_report.DEFAULT_MODE, "new table") == updated


def test_replace_section_appends_heading_and_markers_when_absent():
    text = "# Benchmarks\n\nsome section\n| a | b |\n"
    updated = compare_report.replace_section(text, compare_report.DEFAULT_MODE, "body")
    assert updated.startswith(text)
    assert updated[len(text):] == f"\n## bench/compare.py\n\n{START}\nbody\n{END}\n"
    # No trailing newline in the original: still a blank line before the new heading.
    assert compare_report.replace_section(
        "x", compare_report.DEFAULT_MODE, "b").startswith("x\n\n## ")


def test_replace_section_modes_do_not_touch_each_other():
    text = compare_report.replace_section("# B\n", compare_report.DEFAULT_MODE, "default body")
    text = compare_report.replace_section(text, compare_report.REPLICATE_MODE, "replicate body")
    text = compare_report.replace_section(text, compare_report.DEFAULT_MODE, "default 2")
    assert "default 2" in text and "default body" not in text
    assert "replicate body" in text
    assert text.count("## bench/compare.py --replicate") == 1
    assert text.startswith("# B\n")


def test_replace_section_refuses_unbalanced_markers():
    with pytest.raises(ValueError, match="unbalanced"):
        compare_report.replace_section(f"a\n{START}\nno end\n", compare_report.DEFAULT_MODE, "b")
    with pytest.raises(ValueError):
        compare_report.replace_section(f"a\n{END}\n{START}\n", compare_report.DEFAULT_MODE, "b")


def test_write_section_creates_and_updates_file(tmp_path):
    path = tmp_path / "BENCH.md"
    compare_report.write_section(str(path), compare_report.DEFAULT_MODE, "first")
    path.write_text(path.read_text() + "\n## after\nkeep me\n")
    compare_report.write_section(str(path), compare_report.DEFAULT_MODE, "second")
    text = path.read_text()
    assert "second" in text and "first" not in text and "keep me" in text
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


# --- tables ------------------------------------------------------------------------------------


def _measurement(label, wall, rss, root, accuracy, times=(), at="Trainer"):
    return compare_runs.Measurement(
        label=label, wall_s=wall, peak_rss_mb=rss, peak_offset_s=12.0, component_at_peak=at,
        root_mb=root, test_accuracy=accuracy, component_times=list(times),
    )


def _context():
    return compare_report.RunContext(
        date_utc="2026-12-01 10:00 UTC", commit="abc1234", machine="2 cores (nproc)",
        command="python -m bench.compare --data-dir D", load_before=0.5, load_after=1.5,
        work_dir="/tmp/w",
    )


def test_default_section_has_rows_ratios_and_component_times():
    cold = _measurement("cold", 500, 5000, 300, 0.889,
                        [("ImageExampleGen", "COMPLETE", 16.4), ("Trainer", "COMPLETE", 326.0)])
    rerun = _measurement("rerun", 250, 4000, 450, 0.9,
                         [("ImageExampleGen", "CACHED", 0.2), ("Trainer", "COMPLETE", 300.0)])
    reference = _measurement("reference", 1000, 2500, None, 0.885, at="-")
    section = compare_report.default_section(_context(), [cold], [rerun], [reference], 3.0,
                                      ["--fine-tune-epochs", "5"])
    lines = section.splitlines()
    assert lines[0] == "### 2026-12-01 10:00 UTC, commit abc1234, 2 cores (nproc)"
    assert "`python -m bench.compare --data-dir D`" in section
    assert "| cold | 500 | 5,000 | Trainer (at 12 s) | 300 | 88.9 % |" in lines
    assert "| rerun | 250 | 4,000 | Trainer (at 12 s) | 450 | 90.0 % |" in lines
    assert "| reference | 1,000 | 2,500 | - (at 12 s) | - | 88.5 % |" in lines
    assert "cold / reference wall **0.50x**, peak RSS **2.00x**" in section
    assert "rerun / cold wall **0.50x**" in section
    assert "| ImageExampleGen | 16.4 | 0.2 | CACHED |" in lines
    assert "| Trainer | 326.0 | 300.0 | COMPLETE |" in lines
    assert "`--head-c 3`" in section and "`--fine-tune-epochs 5`" in section


def test_default_section_with_repeats_quotes_every_run_and_the_medians():
    def round_(cold_s, rerun_s, reference_s, accuracy):
        return (
            _measurement(f"cold-{cold_s}", cold_s, 2400, 260, accuracy,
                         [("Trainer", "COMPLETE", cold_s / 10)]),
            _measurement(f"rerun-{cold_s}", rerun_s, 2000, 290, accuracy,
                         [("Trainer", "COMPLETE", rerun_s / 10), ("Transform", "CACHED", 0.1)]),
            _measurement(f"reference-{cold_s}", reference_s, 3500, None, 0.885, at="-"),
        )

    rounds = [round_(500, 90, 400, 0.91), round_(460, 100, 500, 0.92),
              round_(480, 95, 480, 0.93)]
    colds, reruns, references = (list(kind) for kind in zip(*rounds, strict=True))
    section = compare_report.default_section(_context(), colds, reruns, references, 3.0, [])
    lines = section.splitlines()
    assert "3 rounds of cold, rerun, reference, interleaved" in section
    # Every run in run order, then the medians.
    labels = [line.split(" | ")[0][2:] for line in lines if line.startswith("| ")]
    assert labels[1:10] == ["cold-500", "rerun-500", "reference-500", "cold-460", "rerun-460",
                          "reference-460", "cold-480", "rerun-480", "reference-480"]
    assert "| cold, median | 480 | 2,400 | - | 260 | 92.0 % |" in lines
    assert "| rerun, median | 95 | 2,000 | - | 290 | 92.0 % |" in lines
    assert "| reference, median | 480 | 3,500 | - | - | 88.5 % |" in lines
    assert "1.25x / 0.18x, 0.92x / 0.22x, 1.00x / 0.20x" in section
    assert "Ratios (of the medians): cold / reference wall **1.00x**" in section
    assert "rerun / cold wall **0.20x**" in section
    assert "| Trainer | 48.0 | 9.5 | COMPLETE |" in lines
    assert "| Transform | - | 0.1 | CACHED |" in lines


def test_median_measurement_ignores_missing_values():
    runs = [_measurement("a", 10, 100, None, None), _measurement("b", 30, 300, 5, 0.5)]
    median = compare_runs.median_measurement("m", runs)
    assert (median.wall_s, median.peak_rss_mb, median.root_mb, median.test_accuracy) == (
        20, 200, 5, 0.5)


def test_replicate_section_ratios_and_missing_values():
    one = _measurement("1x", 400, 3000, 200, 0.88, [("Transform", "COMPLETE", 20.0)])
    many = _measurement("3x", 1000, 4500, 600, None, [("Transform", "COMPLETE", 50.0)])
    one.photos, many.photos = 10, 30
    stats = replica.ReplicaStats(photos=10, written=30, copied_as_is=1)
    section = compare_report.replicate_section(_context(), one, many, 3, "/tmp/w/d_x3", stats, [])
    assert "| 3x | 30 | 1,000 | 4,500 | Trainer (at 12 s) | 600 | n/a |" in section
    assert "wall **2.50x**, peak RSS **1.50x**, pipeline root **3.00x**" in section
    assert "| Transform | 20.0 | 50.0 | 2.50x |" in section
    assert compare_report.ratio(5, 0) == "n/a" and compare_report.ratio(None, 2) == "n/a"


def test_parse_reference_row_and_summary_accuracy():
    log = (
        "Epoch 1/5\n| not | a table |\nwall time 913 s\n\n"
        "| wall s | head phase s | fine-tune phase s | fine-tune photos/s | test acc, head "
        "| test acc, fine-tuned | peak RSS MB |\n"
        "|---|---|---|---|---|---|---|\n"
        "| 913 | 396 | 478 | 8.5 | 86.4 % | 88.5 % | 4143 |\n"
    )
    row = run_facts.parse_markdown_row(log, compare_runs.REFERENCE_ACCURACY_COLUMN)
    assert row["peak RSS MB"] == "4143"
    assert run_facts.parse_percent(
        row[compare_runs.REFERENCE_ACCURACY_COLUMN]) == pytest.approx(0.885)
    assert run_facts.parse_percent("nan %") is None
    assert run_facts.parse_markdown_row("no table", compare_runs.REFERENCE_ACCURACY_COLUMN) == {}
    summary = "Run 1:\n  eval accuracy  92.0%  (min 70.0%)\n  test accuracy  88.9%\n"
    assert run_facts.summary_test_accuracy(summary) == pytest.approx(0.889)
    assert run_facts.summary_test_accuracy("  test accuracy  n/a\n") is None


def test_rerun_head_c_differs_from_the_cold_runs_cross_validated_choice():
    from models.training_config import TrainingConfig

    assert TrainingConfig(model_handle="m").head_c == 0  # the cold run chooses C itself
    assert compare.RERUN_HEAD_C > 0


def test_split_extra_flags_and_flag_value():
    own, extra = compare.split_extra_flags(["--data-dir", "d", "--", "--epochs", "1"])
    assert own == ["--data-dir", "d"] and extra == ["--epochs", "1"]
    assert compare.split_extra_flags(["--data-dir", "d"]) == (["--data-dir", "d"], [])
    assert compare._flag_value(["--learning-rate", "0.1", "--learning-rate=0.2"],
                               "--learning-rate") == "0.2"


# --- attribution -------------------------------------------------------------------------------


def test_component_at_picks_the_interval_holding_the_moment():
    intervals = [("Trainer", 30.0, 80.0), ("ImageExampleGen", 10.0, 20.0),
                 ("Transform", 20.5, 29.0)]
    assert run_facts.component_at(50.0, intervals) == "Trainer"
    assert run_facts.component_at(10.0, intervals) == "ImageExampleGen"
    assert run_facts.component_at(20.2, intervals) == "between ImageExampleGen and Transform"
    assert run_facts.component_at(5.0, intervals) == "before ImageExampleGen"
    assert run_facts.component_at(99.0, intervals) == "after Trainer"
    assert run_facts.component_at(None, intervals) == "n/a"
    # Overlapping executions: the one started last.
    assert run_facts.component_at(40.0, [*intervals, ("Evaluator", 35.0, 45.0)]) == "Evaluator"


# --- RSS sampling ------------------------------------------------------------------------------

ALLOCATE = "import time; block = b'x' * (200 * 1024 * 1024); time.sleep(1)"


def test_sampler_sees_a_200_mb_child():
    process = subprocess.Popen([sys.executable, "-c", ALLOCATE])
    with common.TreeRssSampler(process.pid, interval_s=0.05) as sampler:
        process.wait()
    assert sampler.peak_bytes > 150 * 2**20
    assert sampler.peak_time is not None and len(sampler.samples) >= 5
    assert max(rss for _, rss in sampler.samples) == sampler.peak_bytes


def test_sampler_sums_the_whole_process_tree():
    # The measured process only waits; the 200 MB live in its grandchild.
    waiter = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {ALLOCATE!r}])"
    process = subprocess.Popen([sys.executable, "-c", waiter])
    with common.TreeRssSampler(process.pid, interval_s=0.05) as sampler:
        process.wait()
    assert sampler.peak_bytes > 150 * 2**20


def test_measure_process_names_the_log_of_a_failed_run(tmp_path):
    with pytest.raises(compare_runs.RunFailed, match=r"exit status 3.*failing\.log"):
        compare_runs.measure_process(
            "failing", [sys.executable, "-c", "import sys; print('oops'); sys.exit(3)"],
            str(tmp_path),
        )
    assert "oops" in (tmp_path / "failing.log").read_text()


def test_main_exits_1_with_one_line_when_a_run_fails(tmp_path, monkeypatch, capsys):
    def failing(label, *args, **kwargs):
        raise compare_runs.RunFailed(f"the {label} run failed (exit status 1); see /x/{label}.log")

    monkeypatch.setattr(compare, "measure_pipeline", failing)
    benchmarks = tmp_path / "B.md"
    code = compare.main(["--data-dir", str(tmp_path), "--model-handle", "m",
                         "--work-dir", str(tmp_path / "w"), "--benchmarks", str(benchmarks)])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "compare.py: the cold run failed (exit status 1); see /x/cold.log"
    ]
    assert not benchmarks.exists()


def test_main_writes_the_default_section(tmp_path, monkeypatch):
    calls = []

    def fake_pipeline(label, root, data_dir, model_handle, extra_flags, work_dir):
        calls.append((label, root, extra_flags))
        return _measurement(label, 100 if label == "cold" else 40, 3000, 300, 0.9,
                            [("Trainer", "COMPLETE" if label == "cold" else "CACHED", 50.0)])

    monkeypatch.setattr(compare, "measure_pipeline", fake_pipeline)
    monkeypatch.setattr(compare, "measure_reference",
                        lambda *args: _measurement("reference", 200, 1500, None, 0.88, at="-"))
    monkeypatch.setattr(compare, "fill_test_accuracies", lambda measurements: None)
    benchmarks = tmp_path / "B.md"
    benchmarks.write_text("# Benchmarks\n\nkeep\n")
    code = compare.main(["--data-dir", str(tmp_path), "--model-handle", "m",
                         "--work-dir", str(tmp_path / "w"), "--benchmarks", str(benchmarks),
                         "--", "--epochs", "1"])
    assert code == 0
    assert [call[0] for call in calls] == ["cold", "rerun"]
    assert calls[0][1] == calls[1][1]  # the same pipeline root
    assert calls[1][2] == ["--epochs", "1", "--head-c", "10"]
    text = benchmarks.read_text()
    assert text.startswith("# Benchmarks\n\nkeep\n")
    assert "cold / reference wall **0.50x**, peak RSS **2.00x**" in text
    assert "| Trainer | 50.0 | 50.0 | CACHED |" in text


def test_main_with_repeats_interleaves_rounds_on_fresh_roots(tmp_path, monkeypatch):
    calls = []

    def fake_pipeline(label, root, data_dir, model_handle, extra_flags, work_dir):
        calls.append((label, root))
        return _measurement(label, 100 if label.startswith("cold") else 20, 3000, 300, 0.9,
                            [("Trainer", "COMPLETE", 50.0)])

    def fake_reference(data_dir, model_handle, work_dir, label):
        calls.append((label, None))
        return _measurement(label, 200, 1500, None, 0.88, at="-")

    monkeypatch.setattr(compare, "measure_pipeline", fake_pipeline)
    monkeypatch.setattr(compare, "measure_reference", fake_reference)
    monkeypatch.setattr(compare, "fill_test_accuracies", lambda measurements: None)
    benchmarks = tmp_path / "B.md"
    code = compare.main(["--data-dir", str(tmp_path), "--model-handle", "m", "--repeats", "2",
                         "--work-dir", str(tmp_path / "w"), "--benchmarks", str(benchmarks)])
    assert code == 0
    assert [label for label, _ in calls] == [
        "cold-1", "rerun-1", "reference-1", "cold-2", "rerun-2", "reference-2"]
    assert calls[0][1] == calls[1][1] != calls[3][1] == calls[4][1]
    assert "Ratios (of the medians): cold / reference wall **0.50x**" in benchmarks.read_text()


def test_repeats_out_of_range_or_with_replicate_is_a_usage_error(tmp_path, capsys):
    for extra in (["--repeats", "0"], ["--repeats", "2", "--replicate", "2"]):
        with pytest.raises(SystemExit) as exit_info:
            compare.parse_args(["--data-dir", str(tmp_path), "--model-handle", "m", *extra])
        assert exit_info.value.code == 2
    assert "--repeats" in capsys.readouterr().err


# --- replica -----------------------------------------------------------------------------------


def _photo(path, width=64, height=48, shift=0):
    """A JPEG with a strong left-right gradient, so a mirror image is easy to tell apart."""
    x = np.linspace(0, 255, width)[None, :, None]
    pixels = np.broadcast_to(x, (height, width, 3)).copy()
    pixels[..., 1] = (pixels[..., 1] + shift) % 256
    pixels[: height // 3, ..., 2] = 255  # a bright top band: upside-down would show too
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path, format="JPEG", quality=95)


def _pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def test_build_replica_writes_distinct_variants(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    _photo(data / "daisy" / "a.jpg")
    _photo(data / "daisy" / "b.jpg", shift=40)
    _photo(data / "roses" / "nested" / "c.jpg", width=80, height=60, shift=90)
    (data / "roses" / "broken.jpg").write_bytes(b"not a jpeg")
    (data / "roses" / "notes.txt").write_text("hello")
    copies = 4

    stats = replica.build_replica(str(data), str(out), copies, progress=False)

    assert (stats.photos, stats.written, stats.copied_as_is) == (3, 12, 2)
    for relative in ("daisy/a.jpg", "daisy/b.jpg", "roses/nested/c.jpg"):
        stem = relative[:-4]
        variants = [out / f"{stem}_nohash_x{k}.jpg" for k in range(copies)]
        contents = [variant.read_bytes() for variant in variants]
        assert len(set(contents)) == copies, relative  # distinct bytes
        original = (data / relative).read_bytes()
        assert contents[0] == original  # k=0 is the original file
        for content in contents[1:]:
            with Image.open(io.BytesIO(content)) as image:
                assert image.format == "JPEG"
        source = _pixels(data / relative)
        mirrored = _pixels(variants[1])
        assert mirrored.shape == source.shape
        assert np.abs(mirrored - source[:, ::-1]).mean() < 4  # JPEG noise only
        assert np.abs(mirrored - source).mean() > 40  # and really not the original
        height, width = source.shape[:2]
        cropped = _pixels(variants[2])
        assert cropped.shape[:2] == (round(height * 0.9), round(width * 0.9))
        assert _pixels(variants[3]).shape == cropped.shape
    # Unreadable and non-image files: once, as they were.
    assert (out / "roses" / "broken.jpg").read_bytes() == b"not a jpeg"
    assert (out / "roses" / "notes.txt").read_text() == "hello"
    files = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    assert len(files) == 3 * copies + 2
    # The pipeline's own listing sees N times the photos (and the broken one).
    assert photos.count_photos(str(out)) == 3 * copies + 1
    assert photos.count_photos(str(data)) == 4


def test_variants_are_all_different_and_cycle_crops():
    variants = [replica.variant_for(k) for k in range(replica.MAX_REPLICATE)]
    assert len(set(variants)) == replica.MAX_REPLICATE
    assert variants[0] == replica.Variant(mirror=False, crop=1.0, quality=0)
    assert variants[1].mirror and variants[1].crop == 1.0
    assert (variants[2].mirror, variants[2].crop) == (False, 0.90)
    assert (variants[3].mirror, variants[3].crop) == (True, 0.90)
    assert (variants[4].crop, variants[6].crop) == (0.85, 0.80)
    with pytest.raises(ValueError):
        replica.variant_for(replica.MAX_REPLICATE)
    assert replica.replica_name("img_01", 3) == "img_01_nohash_x3.jpg"
    assert replica._replica_stems(["a.jpg", "a.png", "b.jpg"]) == {
        "a.jpg": "a_jpg", "a.png": "a_png", "b.jpg": "b"
    }
    assert replica.center_crop_box(100, 50, 0.9) == (5, 2, 95, 47)


def test_disk_usage_counts_hard_links_once(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 2**20)
    os.link(tmp_path / "a", tmp_path / "b")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c").write_bytes(b"y" * 2**19)
    assert compare_runs.disk_usage_mb(str(tmp_path)) == pytest.approx(1.5)


def test_help_and_no_tensorflow_in_the_parent():
    completed = subprocess.run(
        [sys.executable, "-c",
         "import runpy, sys; sys.argv = ['compare.py', '-h']\n"
         "try:\n    runpy.run_module('bench.compare', run_name='__main__', alter_sys=True)\n"
         "except SystemExit:\n    pass\n"
         "print('TF loaded' if 'tensorflow' in sys.modules else 'TF not loaded')"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert "--replicate N" in completed.stdout
    assert completed.stdout.strip().endswith("TF not loaded")


# --- ML Metadata -------------------------------------------------------------------------------


def test_read_run_facts_from_a_small_metadata_store(tmp_path):
    import time

    from ml_metadata.proto import metadata_store_pb2 as pb

    from pipeline import metadata_queries, results

    store = metadata_queries.open_store(str(tmp_path / "metadata.db"))
    run_type = store.put_context_type(pb.ContextType(name="pipeline_run"))
    node_type = store.put_context_type(pb.ContextType(name="node"))
    execution_type = store.put_execution_type(pb.ExecutionType(name="Component"))
    evaluation_type = store.put_artifact_type(pb.ArtifactType(name="ModelEvaluation"))

    def context(type_id, name):
        made = pb.Context(type_id=type_id, name=name)
        [made.id] = store.put_contexts([made])
        return made

    def execute(run, node, state, outputs=()):
        execution = pb.Execution(type_id=execution_type, last_known_state=state)
        store.put_execution(
            execution,
            [(pb.Artifact(type_id=evaluation_type, uri=uri), pb.Event(type=pb.Event.OUTPUT))
             for uri in outputs],
            [run, context(node_type, f"tfx-poets.{node}") if isinstance(node, str) else node],
        )

    old_run = context(run_type, "run-old")
    execute(old_run, "OldComponent", pb.Execution.COMPLETE, ["/old/eval"])
    time.sleep(0.01)
    new_run = context(run_type, "run-new")
    before = time.time()
    execute(new_run, "Trainer", pb.Execution.CACHED)
    execute(new_run, "Evaluator", pb.Execution.COMPLETE, ["/new/eval_split"])
    execute(new_run, results.TEST_EVALUATOR_ID, pb.Execution.COMPLETE, ["/new/test_split"])

    facts = run_facts.read_run_facts(str(tmp_path))

    assert [(node, state) for node, state, _ in facts.component_times] == [
        ("Trainer", "CACHED"), ("Evaluator", "COMPLETE"), (results.TEST_EVALUATOR_ID, "COMPLETE")
    ]
    assert facts.evaluation_uri == "/new/test_split"
    assert [name for name, _, _ in facts.intervals] == [
        "Trainer", "Evaluator", results.TEST_EVALUATOR_ID
    ]
    assert all(before - 1 <= start <= end <= time.time() + 1 for _, start, end in facts.intervals)
    assert run_facts.read_run_facts(str(tmp_path / "missing")) == run_facts.RunFacts()
