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
    .option(
      '--allowed-host <name>',
      'another host name (or name:port) the dashboard answers to, e.g. its public name behind a reverse proxy or its Kubernetes Service name; repeatable (env DASHBOARD_ALLOWED_HOSTS, comma-separated)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--trust-proxy <proxies>', 'believe X-Forwarded-For/-Proto/-Host from these proxy addresses or CIDRs (or loopback, linklocal, uniquelocal), or from this many hops (env DASHBOARD_TRUST_PROXY; default: trust no proxy)')
    .option('--queue-admin', "enable bull-board's job adding/editing and queue actions (default: read-only; env DASHBOARD_QUEUE_ADMIN=true)")
    .action(async (opts: { port: string; host: string; token?: string; allowedHost?: string[]; trustProxy?: string; queueAdmin?: boolean }) => {
      const { runDashboard } = await import('./main.js');
      await runDashboard(opts);
    });
}
