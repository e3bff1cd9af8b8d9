"""The run report as one self-contained HTML page: `build_page(content)`.

Every figure is a PNG embedded as a base64 data URI and the style sheet is inline, so the file
can be mailed, attached to a ticket or opened from any folder; it loads nothing else.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence

import numpy as np

from components.run_report import plots, report_data
from components.run_report.html_parts import cell, escape, img, paragraph, percent, section, table
from components.run_report.report_data import Mistake, NumericSummary
from models import confusion

# Rows shown per list of files (skipped, ignored, ...); the JSON report has them all.
MAX_FILE_ROWS = 50
# Groups of copies and suspected label errors shown as photos; the JSON files list them all.
MAX_GROUPS_SHOWN = 20
MAX_SUSPECTS_SHOWN = 24
THUMBNAIL_PIXELS = 160
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       background: #fff; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
.note { color: #666; } code { background: #f4f4f4; padding: 0 .2em; }
"""


@dataclasses.dataclass
class ReportContent:
    """Everything the page shows, gathered by the executor from the pipeline's artifacts."""

    run_id: str
    generated_at: str
    class_names: list[str]
    splits: list[str]
    conversion_report: Mapping
    conversion_report_path: str
    model_uri: str = ""
    # {split: {"image/height": summary, "image/width": summary}}, from StatisticsGen.
    size_summaries: Mapping[str, Mapping[str, NumericSummary]] = dataclasses.field(
        default_factory=dict
    )
    curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]] = dataclasses.field(
        default_factory=dict
    )
    phase_starts: Sequence[int] = ()
    tensorboard_command: str = ""
    # The held-out results: which split, where the matrix came from, the [C, C] matrix.
    results_split: str = "test"
    results_source: str = ""
    matrix: np.ndarray | None = None
    mistakes: Sequence[Mistake] = ()
    total_mistakes: int = 0
    notes: Sequence[str] = ()
    # "Your data": thumbnails of the grouped photos (ImageExampleGen's), the Trainer's
    # label_issues.json and the encoded photos of the suspects shown, by file name.
    group_photos: Mapping[str, bytes] = dataclasses.field(default_factory=dict)
    label_issues: Mapping | None = None
    label_issues_path: str = ""
    suspect_photos: Mapping[str, bytes] = dataclasses.field(default_factory=dict)


def _overview(content: ReportContent) -> str:
    report = content.conversion_report
    rows = [
        ("run", content.run_id),
        ("classes", f"{len(content.class_names)}: {', '.join(content.class_names)}"),
        ("photos converted", report.get("num_images", "n/a")),
        ("files not converted", len(report.get("skipped", []))),
    ]
    balance = report.get("class_balance")
    if isinstance(balance, Mapping) and "ratio" in balance:
        largest, smallest = balance.get("largest", {}), balance.get("smallest", {})
        rows.append(("class balance",
                     f"{balance['ratio']:g}x (largest {largest.get('class')} "
                     f"{largest.get('images')}, smallest {smallest.get('class')} "
                     f"{smallest.get('images')})"))
    groups = copy_groups(report)
    if groups:
        conflicts = len(report.get("label_conflicts", []))
        rows.append(("copies of one photo",
                     f"{len(groups) - conflicts} groups kept in one split, {conflicts} label "
                     "conflicts left out"))
    if content.label_issues is not None:
        rows.append(("suspected label errors",
                     f"{content.label_issues.get('count', 0)} of "
                     f"{sum(content.label_issues.get('checked', {}).values())} photos"))
    if content.matrix is not None:
        rows.append((f"{content.results_split} accuracy",
                     percent(confusion.accuracy(content.matrix))))
    if content.model_uri:
        rows.append(("model", content.model_uri))
    rows.append(("generated", content.generated_at))
    body = "".join(f"<tr><th>{escape(name)}</th>{cell(value)}</tr>" for name, value in rows)
    notes = "".join(paragraph(note, "note") for note in content.notes)
    return f"<table><tbody>{body}</tbody></table>{notes}"


def _file_list(title: str, rows: list[tuple], headers: Sequence[str]) -> str:
    if not rows:
        return f"<h3>{escape(title)}: none</h3>"
    shown = table(headers, rows[:MAX_FILE_ROWS])
    more = (paragraph(f"... and {len(rows) - MAX_FILE_ROWS} more (see the JSON report)", "note")
            if len(rows) > MAX_FILE_ROWS else "")
    return f"<h3>{escape(title)}: {len(rows)}</h3>{shown}{more}"


def _data_section(content: ReportContent) -> str:
    report = content.conversion_report
    count_rows = report_data.class_counts_table(report, content.splits)
    parts = [
        "<h3>Photos per class and split</h3>",
        table(["class", *content.splits, "total"],
              [(name, *per_split, total) for name, per_split, total in count_rows]),
        img(plots.class_counts_figure(
            {name: dict(zip(content.splits, per_split, strict=True))
             for name, per_split, _ in count_rows}, content.splits),
            "bar chart: photos per class and split"),
    ]
    if content.size_summaries:
        size_rows = [
            (split, feature.split("/")[-1], summary.count, summary.minimum, summary.median,
             summary.maximum, summary.mean)
            for split, by_feature in content.size_summaries.items()
            for feature, summary in by_feature.items()
        ]
        features = sorted({feature for by_feature in content.size_summaries.values()
                           for feature in by_feature})
        histograms = {
            feature.split("/")[-1]: report_data.merge_buckets(
                by_feature[feature].buckets for by_feature in content.size_summaries.values()
                if feature in by_feature)
            for feature in features
        }
        parts += [
            "<h3>Image size (pixels, as converted; from StatisticsGen)</h3>",
            table(["split", "feature", "photos", "min", "median", "max", "mean"], size_rows),
            img(plots.histograms_figure(histograms),
                "histograms of image height and width over all splits"),
        ]
    else:
        parts.append(paragraph("No image size statistics (image/height, image/width).", "note"))
    parts += [
        paragraph(f"Files left out, from {content.conversion_report_path}:"),
        _file_list("Skipped (unreadable, tiny or oversized)",
                   [(item["file"], item.get("reason", "")) for item in report.get("skipped", [])],
                   ["file", "reason"]),
        _file_list("Ignored (hidden, not an image)",
                   [(item["file"], item.get("reason", "")) for item in report.get("ignored", [])],
                   ["file", "reason"]),
    ]
    if copy_groups(report):
        parts.append(paragraph("Copies of one photo and label conflicts: see Your data.",
                                "note"))
    return section("Data", parts, "data")


def copy_groups(report: Mapping) -> list[dict]:
    """Every group of copies in conversion_report.json, label conflicts first (their photos
    were left out), then near-duplicates, then identical files; each with what became of it."""
    groups = [{**item, "outcome": "left out (label conflict)", "classes": item["classes"]}
              for item in report.get("label_conflicts", [])]
    for kind, items in (("near-duplicates", report.get("near_duplicates", [])),
                        ("identical", report.get("duplicates", []))):
        groups += [{**item, "outcome": f"{kind}, all in {item['split']}",
                    "classes": [item["class"]]} for item in items]
    return groups


def _short_name(path: str, limit: int = 28) -> str:
    """A caption of a photo: its path, cut at the front so that its class and file show."""
    return path if len(path) <= limit else "..." + path[-(limit - 3):]


def _copies_part(content: ReportContent) -> list[str]:
    report = content.conversion_report
    distance = report.get("near_duplicate_distance")
    groups = copy_groups(report)
    how = (f"perceptual hashes within {distance} of 256 bits (--near-duplicate-distance)"
           if distance else "identical bytes only (--near-duplicate-distance 0)")
    if not groups:
        return ["<h3>Copies of one photo: none</h3>",
                paragraph(f"No two photos are copies of each other by {how}.", "note")]
    shown = groups[:MAX_GROUPS_SHOWN]
    parts = [
        f"<h3>Copies of one photo: {len(groups)} groups</h3>",
        paragraph(
            f"Photos that are copies of each other (resized, recompressed, re-toned or slightly "
            f"cropped; {how}). Each group is kept in one split, that of its oldest photo, so "
            "that no copy is trained on and tested on too; a group in two class folders is a "
            "label conflict and left out. Delete the copies you do not want; move a conflict's "
            "photo into its right folder only."),
    ]
    rows = [[(thumbnail(content.group_photos[name]), _short_name(name))
             for name in group["files"] if name in content.group_photos] for group in shown]
    if any(rows):
        titles = [f"{', '.join(group['classes'])}\n{group['outcome']}" for group in shown]
        parts.append(img(plots.photo_rows_figure(rows, titles),
                         "rows of thumbnails: each row one group of copies"))
    parts.append(table(
        ["files", "class folders", "outcome", "largest distance (bits)"],
        [(", ".join(group["files"]), ", ".join(group["classes"]), group["outcome"],
          group.get("distance", 0 if group.get("identical", True) else "n/a"))
         for group in shown]))
    if len(groups) > len(shown):
        parts.append(paragraph(f"... and {len(groups) - len(shown)} more groups in "
                                f"{content.conversion_report_path}", "note"))
    return parts


def suspect_caption(suspect: Mapping) -> str:
    return (f"{_short_name(suspect['file'], 24)}\n"
            f"folder: {suspect['label']} ({suspect['label_probability']:.0%})\n"
            f"looks: {suspect['suggested']} ({suspect['suggested_probability']:.0%})")


def _suspects_part(content: ReportContent) -> list[str]:
    issues = content.label_issues
    if issues is None:
        return ["<h3>Suspected label errors: not checked</h3>",
                paragraph("The Trainer wrote no label_issues.json (another run_fn).", "note")]
    checked = sum(issues.get("checked", {}).values())
    suspects = list(issues.get("suspects", []))
    title = f"<h3>Suspected label errors: {len(suspects)} of {checked} photos</h3>"
    if not suspects:
        return [title, paragraph(
            "The head's out-of-sample probabilities doubt no photo's class folder.", "note")]
    shown = suspects[:MAX_SUSPECTS_SHOWN]
    parts = [title, paragraph(
        f"Train and eval photos whose class folder the head doubts (cleanlab's "
        f"find_label_issues on out-of-fold probabilities), most suspicious first: the share "
        f"is the head's probability of the folder's class and of the class it suggests. "
        f"Look at each: move a photo that is in the wrong folder (or delete it), keep one "
        f"that is right (the head finds it hard). All {len(suspects)} are in "
        f"{content.label_issues_path or 'label_issues.json'}.")]
    excluded = issues.get("excluded_from_training", 0)
    if excluded:
        parts.append(paragraph(f"{excluded} suspected train photos were left out of the final "
                                "head's training (--exclude-suspected-label-errors).", "note"))
    with_photo = [suspect for suspect in shown if suspect["file"] in content.suspect_photos]
    if with_photo:
        parts.append(img(plots.contact_sheet_figure(
            [thumbnail(content.suspect_photos[suspect["file"]]) for suspect in with_photo],
            [suspect_caption(suspect) for suspect in with_photo]),
            "contact sheet of suspected label errors with folder and suggested labels"))
    parts.append(table(
        ["file", "split", "folder label", "its probability", "suggested label",
         "its probability"],
        [(suspect["file"], suspect["split"], suspect["label"], suspect["label_probability"],
          suspect["suggested"], suspect["suggested_probability"]) for suspect in shown]))
    if len(suspects) > len(shown):
        parts.append(paragraph(f"... and {len(suspects) - len(shown)} more in the JSON file",
                                "note"))
    return parts


def _your_data_section(content: ReportContent) -> str:
    """Near-duplicates and suspected label errors: the photos a user should look at."""
    return section("Your data", [*_copies_part(content), *_suspects_part(content)],
                    "your-data")


def _curve_rows(curves) -> list[tuple]:
    rows = []
    for metric, runs in curves.items():
        for run, points in runs.items():
            if points:
                best_epoch, best = (min if metric == "loss" else max)(points, key=lambda p: p[1])
                rows.append((metric, run, len(points), points[-1][1], best, best_epoch + 1))
    return rows


def _training_section(content: ReportContent) -> str:
    if not content.curves:
        parts = [paragraph("No training curves: the Trainer wrote no epoch scalars.", "note")]
    else:
        parts = [
            img(plots.training_curves_figure(content.curves, content.phase_starts),
                "training curves: loss and accuracy per epoch, train and validation"),
            paragraph("A dashed line marks where fine-tuning began."
                       if content.phase_starts else "Head training only (no fine-tuning)."),
            table(["metric", "run", "epochs", "last", "best", "best epoch"],
                  _curve_rows(content.curves)),
        ]
    if content.tensorboard_command:
        parts.append(f"<p>More (sample images, the confusion matrix per epoch): "
                     f"<code>{escape(content.tensorboard_command)}</code></p>")
    return section("Training", parts, "training")


def _results_section(content: ReportContent) -> str:
    split = content.results_split
    if content.matrix is None:
        return section(f"Results on the {split} split",
                        [paragraph(f"No {split} photos to evaluate.", "note")], "results")
    precision, recall = report_data.precision_and_recall(content.matrix)
    support = content.matrix.sum(axis=1)
    parts = [
        paragraph(f"Accuracy {percent(confusion.accuracy(content.matrix))} on "
                   f"{int(content.matrix.sum())} {split} photos ({content.results_source})."),
        table(["class", "photos", "precision", "recall"],
              [(name, int(count), p, r) for name, count, p, r
               in zip(content.class_names, support, precision, recall, strict=True)]),
        img(plots.precision_recall_figure(
            content.class_names, np.nan_to_num(precision), np.nan_to_num(recall)),
            "bar chart: precision and recall per class"),
        img(confusion.confusion_matrix_figure(content.matrix, content.class_names,
                                          f"{split} split: rows true, columns predicted"),
            "confusion matrix"),
    ]
    return section(f"Results on the {split} split", parts, "results")


def thumbnail(encoded: bytes, pixels: int = THUMBNAIL_PIXELS) -> np.ndarray:
    """An encoded photo as a small uint8 RGB array (aspect ratio kept)."""
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        small = image.convert("RGB")
        small.thumbnail((pixels, pixels))
        return np.asarray(small)


def _mistakes_section(content: ReportContent) -> str:
    split = content.results_split
    title = f"Misclassified {split} photos"
    if content.matrix is None:
        return section(title, [paragraph("Not evaluated.", "note")], "mistakes")
    if not content.mistakes:
        return section(title, [paragraph(
            "None: the model classified every photo right.")], "mistakes")
    shown = len(content.mistakes)
    parts = [
        paragraph(f"{content.total_mistakes} of {int(content.matrix.sum())} photos are "
                   f"misclassified; the {shown} the model was surest of are shown, surest first."),
        img(plots.contact_sheet_figure(
            [thumbnail(mistake.encoded) for mistake in content.mistakes],
            [report_data.mistake_caption(mistake, content.class_names)
             for mistake in content.mistakes]),
            "contact sheet of misclassified photos with true and predicted labels"),
        table(["file", "true", "predicted", "score"],
              [(mistake.filename, content.class_names[mistake.true_label],
                content.class_names[mistake.predicted_label], mistake.score)
               for mistake in content.mistakes]),
    ]
    return section(title, parts, "mistakes")


def build_page(content: ReportContent) -> str:
    """The whole report: overview, data, your data (copies, suspected label errors),
    training, held-out results, misclassified photos."""
    title = f"tfx-poets run report: {content.run_id}"
    sections = [
        section("Overview", [_overview(content)], "overview"),
        _data_section(content),
        _your_data_section(content),
        _training_section(content),
        _results_section(content),
        _mistakes_section(content),
    ]
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{''.join(sections)}</body></html>\n"
    )
