"""Tests of the run report's HTML: what a sparse run shows, escaping, tables."""

import numpy as np

from components.run_report import html_parts, report_page
from components.run_report.report_page import ReportContent


def _content(**changes) -> ReportContent:
    values = {
        "run_id": "2026-01-01T00:00:00",
        "generated_at": "2026-01-01T00:10:00+00:00",
        "class_names": ["ant", "bee"],
        "splits": ["train", "eval"],
        "conversion_report": {"class_names": ["ant", "bee"], "num_images": 3,
                              "counts": {"ant": {"train": 2}, "bee": {"eval": 1}}},
        "conversion_report_path": "/out/examples/1/conversion_report.json",
        **changes,
    }
    return ReportContent(**values)


def test_a_run_without_statistics_curves_or_test_split_says_so():
    page = report_page.build_page(_content(results_split="test"))
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "No image size statistics" in page
    assert "No training curves" in page
    assert "No test photos to evaluate." in page
    assert "Skipped (unreadable, tiny or oversized): none" in page
    assert page.count("<img ") == 1  # the class counts only


def test_text_from_file_names_and_classes_is_escaped():
    report = {"class_names": ["<b>ant</b>", "bee"], "num_images": 1, "counts": {},
              "skipped": [{"file": "ant/<script>x.jpg", "reason": "a & b"}]}
    page = report_page.build_page(_content(class_names=["<b>ant</b>", "bee"],
                                           conversion_report=report))
    assert "<script>" not in page and "ant/&lt;script&gt;x.jpg" in page
    assert "a &amp; b" in page and "&lt;b&gt;ant&lt;/b&gt;" in page


def test_long_file_lists_are_cut_with_a_count():
    skipped = [{"file": f"ant/{index}.jpg", "reason": "bad"} for index in range(60)]
    report = {"class_names": ["ant", "bee"], "counts": {}, "skipped": skipped}
    page = report_page.build_page(_content(conversion_report=report))
    assert "Skipped (unreadable, tiny or oversized): 60" in page
    assert "ant/49.jpg" in page and "ant/50.jpg" not in page
    assert "... and 10 more (see the JSON report)" in page


def test_results_show_accuracy_precision_recall_and_a_perfect_run_has_no_mistakes():
    page = report_page.build_page(_content(
        matrix=np.array([[3, 0], [0, 2]]), results_split="test", results_source="a test"))
    assert "Accuracy 100.0% on 5 test photos (a test)." in page
    assert "<td>ant</td><td class=\"number\">3</td><td class=\"number\">1</td>" in page
    assert "None: the model classified every photo right." in page


def test_table_formats_numbers_and_missing_values():
    html = html_parts.table(["a", "b", "c"], [("x", 3, float("nan")), ("y", 0.12345, 2.0)])
    assert '<td class="number">n/a</td>' in html and '<td class="number">0.123</td>' in html


def test_your_data_says_when_there_are_no_copies_and_no_label_check():
    page = report_page.build_page(_content())
    assert "<h2>Your data</h2>" in page and "Copies of one photo: none" in page
    assert "Suspected label errors: not checked" in page
    clean = report_page.build_page(_content(label_issues={"checked": {"train": 2, "eval": 1},
                                                          "count": 0, "suspects": []}))
    assert "Suspected label errors: 0 of 3 photos" in clean and "doubt no photo" in clean


def test_copies_and_suspects_without_photos_are_still_listed_and_escaped():
    report = {"class_names": ["ant", "bee"], "counts": {}, "near_duplicate_distance": 64,
              "duplicates": [{"files": ["ant/1.jpg", "ant/2.jpg"], "class": "ant",
                              "split": "train", "oldest": "ant/1.jpg"}],
              "near_duplicates": [], "label_conflicts": [
                  {"files": ["ant/<x>.jpg", "bee/y.jpg"], "classes": ["ant", "bee"],
                   "identical": True}]}
    suspects = [{"file": "bee/<z>.jpg", "split": "train", "label": "bee",
                 "label_probability": 0.01, "suggested": "ant", "suggested_probability": 0.9}]
    page = report_page.build_page(_content(
        conversion_report=report, label_issues={"checked": {"train": 3}, "count": 1,
                                                "suspects": suspects,
                                                "excluded_from_training": 1}))
    assert [group["outcome"] for group in report_page.copy_groups(report)] == [
        "left out (label conflict)", "identical, all in train"]
    assert "ant/&lt;x&gt;.jpg, bee/y.jpg" in page and "<td>bee/&lt;z&gt;.jpg</td>" in page
    assert "1 suspected train photos were left out of the final head" in page
    assert page.count("<img ") == 1  # no thumbnails to show: the tables only
