/**
 * `gradcam-audit dashboard`: wire real Redis, S3 and the BullMQ queue into the server, listen, and
 * shut down cleanly on SIGINT/SIGTERM (close streams, the queue and connections, then exit).
 */
import { loadConfig, redact, type AppConfig } from '../shared/config.js';
import { ConfigError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { S3ObjectStore } from '../shared/storage/s3-store.js';
import { connectDashboard } from './connections.js';
import { resolveDashboardOptions, type DashboardFlags } from './options.js';
import { createDashboard } from './server.js';

export async function runDashboard(flags: DashboardFlags, config: AppConfig = loadConfig()): Promise<void> {
  // Validate the binding before opening any connection: a refused start must not leave sockets behind.
  const options = resolveDashboardOptions(flags);
  const logger = createLogger({ level: config.logLevel, base: { component: 'dashboard' } });
  const store = S3ObjectStore.fromConfig(config.s3);
  let connections: Awaited<ReturnType<typeof connectDashboard>>;
  try {
    connections = await connectDashboard(config, store, logger, options);
  } catch (err) {
    store.destroy();
    throw err;
  }
  const closeConnections = async (): Promise<void> => {
    await connections.close();
    store.destroy();
  };
  let app: Awaited<ReturnType<typeof createDashboard>>;
  let address: string;
  try {
    app = await createDashboard(connections.deps, options);
    address = await app.listen({ port: options.port, host: options.host });
  } catch (err) {
    // A port in use must not leave the process hanging on open Redis connections.
    await closeConnections();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new ConfigError('--port', `port ${options.port} on ${options.host} is already in use; pick another with --port`, { cause: err });
    throw err;
  }
  logger.info(
    { address, auth: options.auth.kind, redis: redact(config.redisUrl), queue: config.queueName },
    `dashboard listening on ${address}${options.auth.kind === 'none' ? ' (no auth: loopback only)' : ` (${options.auth.kind} auth)`}`,
  );
  process.stderr.write(`gradcam-audit dashboard: ${address}\n`);

  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      logger.info({ signal }, 'dashboard shutting down');
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await app.close();
  await closeConnections();
  logger.flush();
}
