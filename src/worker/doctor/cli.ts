/** The doctor as a process: options from flags and environment, the report on stdout, exit 1 on failure. */
import { loadConfig } from '../../shared/config.js';
import { DEMO_LABELS, DEMO_MODEL } from '../../demo/options.js';
import { configuredModelLoader } from '../model/configured-loader.js';
import { renderReport } from './report.js';
import { parseDoctorFlags, runDoctor, type RawDoctorFlags } from './run.js';

export async function runDoctorCli(flags: RawDoctorFlags): Promise<number> {
  const options = parseDoctorFlags(flags, DEMO_MODEL);
  if (options.weights === DEMO_MODEL && options.labels === undefined) options.labels = DEMO_LABELS;
  const config = loadConfig();
  const report = await runDoctor(options, { config, loadSpec: configuredModelLoader(config.s3) });
  process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report, Math.max(80, Math.min(process.stdout.columns ?? 100, 140))));
  return report.ok ? 0 : 1;
}
