import logging

from pipeline import logs


def _record(name: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "message", None, None)


def test_every_package_of_the_project_shows_its_progress_and_libraries_do_not():
    progress = logs._ProgressFilter()
    for package in ("components", "models", "pipeline", "tools"):
        assert progress.filter(_record(f"{package}.module", logging.INFO)), package
        assert not progress.filter(_record(f"{package}.module", logging.DEBUG)), package
    assert not progress.filter(_record("tensorflow", logging.INFO))
    assert progress.filter(_record("tensorflow", logging.ERROR))
