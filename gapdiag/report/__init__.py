"""The report: the versioned record of a measurement and how it reads.

* :mod:`~gapdiag.report.record`: :class:`Report` (values, provenance, intervals, extras), its JSON schema;
* :mod:`~gapdiag.report.presentation`: one number format, family order, the summary in words;
* :mod:`~gapdiag.report.references`: published values shown beside the headline metrics;
* :mod:`~gapdiag.report.notes`: caveats about the data (captions that repeat);
* :mod:`~gapdiag.report.html` and :mod:`~gapdiag.report.diagnostics`: the self-contained HTML page;
* :mod:`~gapdiag.report.export`: vectors, 2-D map and item metadata as one Parquet table.

``from gapdiag.report import Report`` is the record's public path.
"""

from gapdiag.report.record import (
    METRIC_DEFINITIONS_VERSION,
    SCHEMA_VERSION,
    Report,
    split_metric_name,
    write_json,
)

__all__ = ["METRIC_DEFINITIONS_VERSION", "SCHEMA_VERSION", "Report", "split_metric_name", "write_json"]
