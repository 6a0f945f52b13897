/** The audit's files under a run's output prefix (next to manifest.jsonl and summary.json). */
export const AUDIT_FILE = 'audit.json';
export const METRICS_PARQUET_FILE = 'metrics.parquet';
export const REPORT_FILE = 'report.html';
/** Written under `compare/<run A>/` of run B's output prefix. */
export const COMPARE_FILE = 'compare.json';
export const COMPARE_HTML_FILE = 'compare.html';
