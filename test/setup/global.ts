// Filled in by the test harness: starts/attaches Redis and S3 once per test run.
export default function setup(): void {}
