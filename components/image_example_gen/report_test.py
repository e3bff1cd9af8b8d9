import logging

from components.image_example_gen import report


def _group(index: int) -> dict:
    return {"split": "train", "oldest": f"a/{index}_x0.jpg",
            "files": [f"a/{index}_x0.jpg", f"a/{index}_x1.jpg"]}


def test_findings_are_logged_up_to_a_cap_then_counted(caplog):
    caplog.set_level(logging.INFO, logger=report.logger.name)
    near = [_group(index) for index in range(report.MAX_LOGGED + 5)]
    skipped = [{"file": "a/broken\nname.jpg", "reason": "not an image"}]
    report.log_findings(skipped, [], [], near, [])
    lines = [record.getMessage() for record in caplog.records]
    assert sum("near-duplicates kept together" in line for line in lines) == report.MAX_LOGGED
    assert any(f"and 5 more groups of near-duplicates, all listed in {report.REPORT_FILE}"
               in line for line in lines)
    # Under the cap nothing is summarised, and a file name stays on one line.
    assert sum("skipped" in line for line in lines) == 1
    assert all("\n" not in line for line in lines)
