/**
 * CLI registration for `gradcam-audit dashboard`. The implementation (Fastify, bull-board, sharp)
 * is imported only when the command runs.
 */
import { Command } from 'commander';

export async function dashboardCommand(): Promise<Command> {
  return new Command('dashboard')
    .description('serve the web dashboard: live runs, gallery, failures with retry, workers, bull-board at /queues')
    .option('--port <port>', 'TCP port (0 picks a free one)', '3000')
    .option('--host <address>', 'bind address; a non-loopback address requires DASHBOARD_TOKEN or DASHBOARD_USER + DASHBOARD_PASSWORD', '127.0.0.1')
    .option('--token <token>', 'bearer token required from clients (prefer the DASHBOARD_TOKEN variable: flags show up in ps)')
    .action(async (opts: { port: string; host: string; token?: string }) => {
      const { runDashboard } = await import('./main.js');
      await runDashboard(opts);
    });
}
